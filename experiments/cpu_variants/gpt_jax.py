"""Standalone plain-JAX GPT (nanoGPT shakespeare_char CPU config) with formulation switches.

Exploratory: used to find which formulations XLA:CPU runs fastest (see
BENCHMARKS.md); the project's model is lm/models/transformer.py, which adopted the winners.

All variants compute the same model: fp32, bias=True, LayerNorm eps 1e-5, tied head,
AdamW(b1=0.9, b2=0.99, wd=0.1 on >=2D params only), global-norm clip 1.0,
warmup(100)+cosine lr 1e-3 -> 1e-4 over 2000 iters.
"""
import math
import numpy as np
import jax
import jax.numpy as jnp
import optax

B, T, L, H, D, V = 12, 64, 4, 4, 128, 65
LR, MIN_LR, WARMUP, DECAY = 1e-3, 1e-4, 100, 2000


def init_params(key):
  ks = iter(jax.random.split(key, 64))
  n = lambda shape, std=0.02: std * jax.random.normal(next(ks), shape, jnp.float32)
  pstd = 0.02 / math.sqrt(2 * L)
  p = {"wte": n((V, D)), "wpe": n((T, D)),
       "lnf_g": jnp.ones(D), "lnf_b": jnp.zeros(D), "layers": []}
  for _ in range(L):
    p["layers"].append({
        "ln1_g": jnp.ones(D), "ln1_b": jnp.zeros(D),
        "attn_w": n((D, 3 * D)), "attn_b": jnp.zeros(3 * D),
        "proj_w": n((D, D), pstd), "proj_b": jnp.zeros(D),
        "ln2_g": jnp.ones(D), "ln2_b": jnp.zeros(D),
        "fc_w": n((D, 4 * D)), "fc_b": jnp.zeros(4 * D),
        "fc2_w": n((4 * D, D), pstd), "fc2_b": jnp.zeros(D),
    })
  return p


def layernorm(x, g, b, eps=1e-5):
  m = x.mean(-1, keepdims=True)
  v = ((x - m) ** 2).mean(-1, keepdims=True)
  return (x - m) * jax.lax.rsqrt(v + eps) * g + b


def layernorm_onepass(x, g, b, eps=1e-5):
  m = x.mean(-1, keepdims=True)
  v = (x * x).mean(-1, keepdims=True) - m * m
  return (x - m) * jax.lax.rsqrt(v + eps) * g + b


@jax.custom_vjp
def grad_barrier(x):
  """Identity; in the backward pass the cotangent goes through lax.optimization_barrier, so XLA
    materialises the residual-stream gradient once instead of re-fusing (recomputing) the whole
    chain of later layers' LayerNorm-backward elementwise ops into every consumer."""
  return x


grad_barrier.defvjp(lambda x: (x, None), lambda _, g: (jax.lax.optimization_barrier(g),))


@jax.custom_vjp
def _dense2d(x, w):
  return x @ w


def _dense2d_fwd(x, w):
  return x @ w, (x, w)


def _dense2d_bwd(res, dy):
  x, w = res
  wt = jax.lax.optimization_barrier(jnp.transpose(w) + 0.0)
  xt = jax.lax.optimization_barrier(jnp.transpose(x) + 0.0)
  return dy @ wt, xt @ dy


_dense2d.defvjp(_dense2d_fwd, _dense2d_bwd)


def make_forward(attn="bhtk", mask="where", gelu="exact", mm="3d", ln="twopass", qkv="fused", head=None, resid="3d", gb="0"):
  gbar = grad_barrier if gb == "1" else (lambda x: x)
  head = head or ("2d" if mm in ("2d", "2dvjp") else "3d")
  lnf = layernorm if ln == "twopass" else layernorm_onepass
  causal = np.tril(np.ones((T, T), bool))
  neg_bias = np.where(causal, 0.0, -1e30).astype(np.float32)

  def dense(x, w, b):
    if mm == "2dvjp":  # 2-D matmul with custom VJP: dX uses a materialised W^T (plain NN GEMM)
      sh = x.shape
      return (_dense2d(x.reshape(-1, sh[-1]), w) + b).reshape(*sh[:-1], w.shape[-1])
    if mm == "2d":  # explicit (B*T, Din) @ (Din, Dout)
      sh = x.shape
      return (x.reshape(-1, sh[-1]) @ w + b).reshape(*sh[:-1], w.shape[-1])
    return x @ w + b

  def act(x):
    if gelu == "erf":  # exact GELU via erf instead of jax.nn.gelu's erfc formulation
      return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))
    return jax.nn.gelu(x, approximate=(gelu == "tanh"))

  def attention(x, lp):
    Bx, Tx, _ = x.shape
    hd = D // H
    if qkv == "fused":
      qkv_ = dense(x, lp["attn_w"], lp["attn_b"])
      q, k, v = jnp.split(qkv_, 3, axis=-1)
    else:  # three separate matmuls (slicing weights)
      w, bb = lp["attn_w"], lp["attn_b"]
      q = dense(x, w[:, :D], bb[:D]); k = dense(x, w[:, D:2 * D], bb[D:2 * D]); v = dense(x, w[:, 2 * D:], bb[2 * D:])
    q = q.reshape(Bx, Tx, H, hd); k = k.reshape(Bx, Tx, H, hd); v = v.reshape(Bx, Tx, H, hd)
    scale = 1.0 / math.sqrt(hd)
    if attn == "dpa":
      y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
    else:
      if attn == "bhtk":  # explicit transposes, like torch
        q = q.transpose(0, 2, 1, 3); k = k.transpose(0, 2, 1, 3); v = v.transpose(0, 2, 1, 3)
        s = jnp.einsum("bhqd,bhkd->bhqk", q, k) * scale
      else:  # "bthk": einsum directly on BTHK layout
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
      if mask == "where":
        s = jnp.where(causal, s, -jnp.inf)
      else:
        s = s + neg_bias
      p = jax.nn.softmax(s, axis=-1)
      if attn == "bhtk":
        y = jnp.einsum("bhqk,bhkd->bhqd", p, v).transpose(0, 2, 1, 3)
      else:
        y = jnp.einsum("bhqk,bkhd->bqhd", p, v)
    y = y.reshape(Bx, Tx, D)
    return dense(y, lp["proj_w"], lp["proj_b"])

  def forward(p, idx):
    if resid == "2d":  # whole residual stream kept as (B*T, D); only attention sees 4-D views
      Bx, Tx = idx.shape
      x = (p["wte"][idx] + p["wpe"][:Tx]).reshape(Bx * Tx, D)
      for lp in p["layers"]:
        x = gbar(x)
        h = lnf(x, lp["ln1_g"], lp["ln1_b"])
        x = gbar(x + attention(h.reshape(Bx, Tx, D), lp).reshape(Bx * Tx, D))
        h = act(lnf(x, lp["ln2_g"], lp["ln2_b"]) @ lp["fc_w"] + lp["fc_b"])
        x = x + (h @ lp["fc2_w"] + lp["fc2_b"])
      x = gbar(x)
      x = lnf(x, p["lnf_g"], p["lnf_b"])
      return (x @ p["wte"].T).reshape(Bx, Tx, V)
    x = p["wte"][idx] + p["wpe"][: idx.shape[1]]
    for lp in p["layers"]:
      x = gbar(x)
      x = gbar(x + attention(lnf(x, lp["ln1_g"], lp["ln1_b"]), lp))
      h = act(dense(lnf(x, lp["ln2_g"], lp["ln2_b"]), lp["fc_w"], lp["fc_b"]))
      x = x + dense(h, lp["fc2_w"], lp["fc2_b"])
    x = gbar(x)
    x = lnf(x, p["lnf_g"], p["lnf_b"])
    if head == "2d":
      return (x.reshape(-1, D) @ p["wte"].T).reshape(x.shape[0], x.shape[1], V)
    return x @ p["wte"].T

  def loss_fn(p, x, y):
    logits = forward(p, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return loss_fn


def lr_schedule(it):
  it = jnp.asarray(it, jnp.float32)
  warm = LR * (it + 1) / (WARMUP + 1)
  ratio = jnp.clip((it - WARMUP) / (DECAY - WARMUP), 0.0, 1.0)
  cos = MIN_LR + 0.5 * (1.0 + jnp.cos(jnp.pi * ratio)) * (LR - MIN_LR)
  return jnp.where(it < WARMUP, warm, cos)


def wd_mask(params):
  return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optax(params):
  return optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(lr_schedule, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1, mask=wd_mask(params)),
  )


# ---------------- hand-written fused AdamW ----------------
def adam_init(params):
  z = jax.tree.map(jnp.zeros_like, params)
  return {"m": z, "v": jax.tree.map(jnp.zeros_like, params), "t": jnp.zeros((), jnp.int32)}


def adam_update(params, grads, st, b1=0.9, b2=0.99, eps=1e-8, wd=0.1):
  t = st["t"] + 1
  lr = lr_schedule(st["t"])
  gl = jax.tree.leaves(grads)
  gn = jnp.sqrt(sum(jnp.sum(g * g) for g in gl))
  sc = jnp.minimum(1.0, 1.0 / (gn + 1e-6))
  bc1 = 1 - b1 ** t.astype(jnp.float32)
  bc2 = 1 - b2 ** t.astype(jnp.float32)

  def upd(p, g, m, v):
    g = g * sc
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = (m / bc1) / (jnp.sqrt(v / bc2) + eps)
    if p.ndim >= 2:
      step = step + wd * p
    return p - lr * step, m, v

  out = jax.tree.map(upd, params, grads, st["m"], st["v"])
  istuple = lambda x: isinstance(x, tuple)
  newp = jax.tree.map(lambda o: o[0], out, is_leaf=istuple)
  newm = jax.tree.map(lambda o: o[1], out, is_leaf=istuple)
  newv = jax.tree.map(lambda o: o[2], out, is_leaf=istuple)
  return newp, {"m": newm, "v": newv, "t": t}


def make_step(opt="optax", donate=True, **fwd_kw):
  """Returns (init_state_fn, step_fn). step(state, x, y) -> (state, loss)."""
  loss_fn = make_forward(**fwd_kw)
  vg = jax.value_and_grad(loss_fn)

  if opt == "optax":
    def init(params):
      tx = make_optax(params)
      return (params, tx.init(params))

    tx_holder = {}

    def step(state, x, y):
      params, ost = state
      tx = make_optax(params)
      loss, g = vg(params, x, y)
      upd, ost = tx.update(g, ost, params)
      return (optax.apply_updates(params, upd), ost), loss
  elif opt == "fused":
    def init(params):
      return (params, adam_init(params))

    def step(state, x, y):
      params, ost = state
      loss, g = vg(params, x, y)
      params, ost = adam_update(params, g, ost)
      return (params, ost), loss
  elif opt == "flat":
    # all params in one flat vector; unravel inside the step; adam on the single vector
    def init(params):
      flat, _ = jax.flatten_util.ravel_pytree(params)
      _, unravel = jax.flatten_util.ravel_pytree(params)
      dmask, _ = jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: jnp.full(x.shape, float(x.ndim >= 2)), params))
      init.unravel = unravel
      init.dmask = np.asarray(dmask)
      return (flat, {"m": jnp.zeros_like(flat), "v": jnp.zeros_like(flat), "t": jnp.zeros((), jnp.int32)})

    def step(state, x, y):
      flat, st = state
      unravel = init.unravel
      loss, g = jax.value_and_grad(lambda f: loss_fn(unravel(f), x, y))(flat)
      b1, b2, eps, wd = 0.9, 0.99, 1e-8, 0.1
      t = st["t"] + 1
      lr = lr_schedule(st["t"])
      gn = jnp.sqrt(jnp.sum(g * g))
      g = g * jnp.minimum(1.0, 1.0 / (gn + 1e-6))
      m = b1 * st["m"] + (1 - b1) * g
      v = b2 * st["v"] + (1 - b2) * g * g
      stp = (m / (1 - b1 ** t.astype(jnp.float32))) / (jnp.sqrt(v / (1 - b2 ** t.astype(jnp.float32))) + eps)
      stp = stp + wd * init.dmask * flat
      return (flat - lr * stp, {"m": m, "v": v, "t": t}), loss
  else:
    raise ValueError(opt)

  jstep = jax.jit(step, donate_argnums=(0,) if donate else ())
  return init, jstep


import jax.flatten_util  # noqa: E402


class Data:
  """nanoGPT-style random windows of the embedded Tiny Shakespeare train split."""

  def __init__(self, seed=0):
    from lm import config as lm_config, data as lm_data
    corpus = lm_data.load_corpus(lm_config.default().data, T)
    self.d = corpus.train
    self.rng = np.random.default_rng(seed)

  def batch(self):
    ix = self.rng.integers(0, len(self.d) - T, B)
    x = np.stack([self.d[i:i + T] for i in ix]).astype(np.int32)
    y = np.stack([self.d[i + 1:i + 1 + T] for i in ix]).astype(np.int32)
    return x, y
