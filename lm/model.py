"""GPT: a decoder-only Transformer as Flax NNX modules.

GPT-2 layout: token and learned position embeddings, pre-LayerNorm blocks of
causal multi-head self-attention and a GELU MLP, a final LayerNorm and an
output head tied to the token embedding. Every parameter is declared with
logical axis names; `lm.sharding` maps them onto mesh axes.

Tensor names carry their shapes:
  B batch, L query length, M key length (the KV cache's length when decoding),
  D model width, H heads, K head width, F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lm import sharding

# Parameters are created abstractly and placed by explicit shardings, never
# eagerly sharded on creation.
nnx.use_eager_sharding(False)

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16,
          'float16': jnp.float16}


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  vocab_size: int
  num_layers: int
  num_heads: int
  embed_dim: int
  mlp_dim: int
  max_len: int
  dropout: float = 0.0
  use_bias: bool = True
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  @classmethod
  def from_config(cls, m) -> 'GPTConfig':
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads


def _param(rngs, init, shape, names, dtype):
  return nnx.Param(init(rngs.params(), shape, DTYPES[dtype]),
                   out_sharding=names)


class Dense(nnx.Module):
  """x @ kernel (+ bias), contracting the trailing `len(in_shape)` axes."""

  def __init__(self, in_shape, out_shape, names, cfg: GPTConfig, *, rngs,
               std=0.02):
    self.n_in = len(in_shape)
    self.dtype = DTYPES[cfg.dtype]
    self.kernel = _param(rngs, nnx.initializers.normal(std),
                         (*in_shape, *out_shape), names, cfg.param_dtype)
    self.bias = (_param(rngs, nnx.initializers.zeros, out_shape,
                        names[self.n_in:], cfg.param_dtype)
                 if cfg.use_bias else None)

  def __call__(self, x):
    k = self.kernel[...].astype(self.dtype)
    lead, out_shape = x.shape[:-self.n_in], k.shape[self.n_in:]
    n_in = math.prod(k.shape[:self.n_in])
    # One plain 2-D GEMM, (N, prod(in)) @ (prod(in), prod(out)): with a
    # multi-axis dot_general XLA:CPU computes the weight gradient transposed,
    # with copies around it. The reshapes are bitcasts, and they merge axes
    # whose most major one is the sharded one, so layouts carry over.
    y = x.astype(self.dtype).reshape(-1, n_in) @ k.reshape(n_in, -1)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype).reshape(-1)
    return y.reshape(*lead, *out_shape)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, statistics in float32."""

  def __init__(self, cfg: GPTConfig, *, rngs, eps=1e-5):
    del rngs
    self.eps = eps
    self.dtype = DTYPES[cfg.dtype]
    self.scale = nnx.Param(jnp.ones((cfg.embed_dim,), DTYPES[cfg.param_dtype]),
                           out_sharding=('embed',))
    self.bias = (nnx.Param(jnp.zeros((cfg.embed_dim,),
                                     DTYPES[cfg.param_dtype]),
                           out_sharding=('embed',))
                 if cfg.use_bias else None)

  def __call__(self, x_BxLxD):
    x = x_BxLxD.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    # Both moments in one pass over x (E[x^2] - E[x]^2, in float32, clamped):
    # one fewer reduction for XLA:CPU; measured as fast or up to 5% faster.
    var = jnp.maximum(jnp.square(x).mean(-1, keepdims=True) - mean**2, 0.0)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...]
    if self.bias is not None:
      y = y + self.bias[...]
    return y.astype(self.dtype)


class Attention(nnx.Module):
  """Causal multi-head self-attention, optionally over a KV cache."""

  def __init__(self, cfg: GPTConfig, *, rngs):
    H, K, D = cfg.num_heads, cfg.head_dim, cfg.embed_dim
    # Separate projections keep 'heads' the major axis of each kernel's
    # output, so tensor parallelism splits whole heads.
    self.q, self.k, self.v = (
        Dense((D,), (H, K), ('embed', 'heads', 'kv'), cfg, rngs=rngs)
        for _ in range(3))
    # Residual projections get GPT-2's depth-scaled init.
    self.out = Dense((H, K), (D,), ('heads', 'kv', 'embed'), cfg, rngs=rngs,
                     std=0.02 / math.sqrt(2 * cfg.num_layers))
    self.dropout = nnx.Dropout(cfg.dropout)
    self.dtype = DTYPES[cfg.dtype]

  def __call__(self, x_BxLxD, *, positions_BxL, segment_ids_BxL=None,
               cache=None, deterministic=True, rngs=None):
    q_BxLxHxK = self.q(x_BxLxD)
    k_BxLxHxK, v_BxLxHxK = self.k(x_BxLxD), self.v(x_BxLxD)
    q_BxLxHxK = sharding.constrain(q_BxLxHxK, ('batch', None, 'heads', None))
    if cache is None:
      k_BxMxHxK, v_BxMxHxK = k_BxLxHxK, v_BxLxHxK
      key_positions_BxM = positions_BxL
    else:
      # Write this call's keys and values at their positions; attend over the
      # whole cache, masking the slots not yet written (positions > query).
      start = positions_BxL[0, 0]
      cache = {'k': jax.lax.dynamic_update_slice_in_dim(
                   cache['k'], k_BxLxHxK.astype(cache['k'].dtype), start, 1),
               'v': jax.lax.dynamic_update_slice_in_dim(
                   cache['v'], v_BxLxHxK.astype(cache['v'].dtype), start, 1)}
      k_BxMxHxK, v_BxMxHxK = cache['k'], cache['v']
      key_positions_BxM = jnp.arange(k_BxMxHxK.shape[1])[None]
    scale = 1.0 / math.sqrt(q_BxLxHxK.shape[-1])
    logits_BxHxLxM = jnp.einsum('BLHK,BMHK->BHLM', q_BxLxHxK * scale,
                                k_BxMxHxK.astype(self.dtype)
                                ).astype(jnp.float32)
    # Positions restart in each packed segment, so position order is causal
    # order within a segment; the segment test stops attention across them.
    mask_BxLxM = key_positions_BxM[:, None, :] <= positions_BxL[:, :, None]
    if segment_ids_BxL is not None:
      mask_BxLxM &= segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    logits_BxHxLxM = jnp.where(mask_BxLxM[:, None], logits_BxHxLxM,
                               jnp.finfo(jnp.float32).min)
    probs_BxHxLxM = jax.nn.softmax(logits_BxHxLxM, axis=-1).astype(self.dtype)
    probs_BxHxLxM = self.dropout(probs_BxHxLxM, deterministic=deterministic,
                                 rngs=rngs)
    y_BxLxHxK = jnp.einsum('BHLM,BMHK->BLHK', probs_BxHxLxM,
                           v_BxMxHxK.astype(self.dtype))
    return self.out(y_BxLxHxK), cache


class MLP(nnx.Module):
  """Two dense layers with a GELU (exact, as GPT-2 and nanoGPT use) between."""

  def __init__(self, cfg: GPTConfig, *, rngs):
    D, F = cfg.embed_dim, cfg.mlp_dim
    self.up = Dense((D,), (F,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.down = Dense((F,), (D,), ('mlp', 'embed'), cfg, rngs=rngs,
                      std=0.02 / math.sqrt(2 * cfg.num_layers))

  def __call__(self, x_BxLxD):
    h_BxLxF = self.up(x_BxLxD)
    # Exact GELU written with erf: XLA:CPU's erf is cheaper than the erfc
    # formulation inside jax.nn.gelu(approximate=False).
    h_BxLxF = 0.5 * h_BxLxF * (1.0 + jax.lax.erf(h_BxLxF / math.sqrt(2.0)))
    h_BxLxF = sharding.constrain(h_BxLxF, ('batch', None, 'mlp'))
    return self.down(h_BxLxF)


class Block(nnx.Module):
  """x + attn(ln(x)), then x + mlp(ln(x)), with dropout on each branch."""

  def __init__(self, cfg: GPTConfig, *, rngs):
    self.ln1 = LayerNorm(cfg, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.ln2 = LayerNorm(cfg, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout)

  def __call__(self, x_BxLxD, *, positions_BxL, segment_ids_BxL=None,
               cache=None, deterministic=True, rngs=None):
    y_BxLxD, cache = self.attn(self.ln1(x_BxLxD), positions_BxL=positions_BxL,
                               segment_ids_BxL=segment_ids_BxL, cache=cache,
                               deterministic=deterministic, rngs=rngs)
    x_BxLxD = x_BxLxD + self.dropout(y_BxLxD, deterministic=deterministic,
                                     rngs=rngs)
    y_BxLxD = self.mlp(self.ln2(x_BxLxD))
    x_BxLxD = x_BxLxD + self.dropout(y_BxLxD, deterministic=deterministic,
                                     rngs=rngs)
    return sharding.constrain(x_BxLxD, ('batch', None, 'embed')), cache


class GPT(nnx.Module):
  """Token ids in, next-token logits out."""

  def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    init = nnx.initializers.normal(0.02)
    self.wte = _param(rngs, init, (cfg.vocab_size, cfg.embed_dim),
                      ('vocab', 'embed'), cfg.param_dtype)
    self.wpe = _param(rngs, init, (cfg.max_len, cfg.embed_dim),
                      (None, 'embed'), cfg.param_dtype)
    self.dropout = nnx.Dropout(cfg.dropout)
    self.blocks = nnx.List([Block(cfg, rngs=rngs)
                            for _ in range(cfg.num_layers)])
    self.ln_f = LayerNorm(cfg, rngs=rngs)

  def __call__(self, tokens_BxL, *, positions=None, segment_ids_BxL=None,
               cache=None, deterministic=True, rngs=None):
    """Logits [B, L, V] in float32, and the updated cache (None if not given).

    `positions` ([L] or [B, L]; default 0..L-1) index the position table.
    Packed rows pass `segment_ids_BxL` and positions restarting at 0 in each
    segment; a token then attends only to earlier tokens of its segment.
    With a cache (from `init_cache`), tokens sit at `positions` ([L], which
    must be consecutive); keys and values are written there and attention
    reads the cache, so decoding one token at a time equals one full call.
    """
    dtype = DTYPES[self.cfg.dtype]
    L = tokens_BxL.shape[1]
    if positions is None:
      positions = jnp.arange(L)
    positions_BxL = positions if positions.ndim == 2 else positions[None]
    # Gather from tables whose embed axis is whole: gathering from an
    # fsdp-sharded table makes XLA's partitioner rematerialise it anyway.
    wte_VxD = sharding.constrain(self.wte[...], ('vocab', None))
    wpe_LxD = sharding.constrain(self.wpe[...], (None, None))
    x_BxLxD = (jnp.take(wte_VxD, tokens_BxL, axis=0) +
               jnp.take(wpe_LxD, positions_BxL, axis=0)).astype(dtype)
    x_BxLxD = sharding.constrain(x_BxLxD, ('batch', None, 'embed'))
    x_BxLxD = self.dropout(x_BxLxD, deterministic=deterministic, rngs=rngs)
    new_cache = [] if cache is not None else None
    for i, block in enumerate(self.blocks):
      x_BxLxD, layer_cache = block(
          x_BxLxD, positions_BxL=positions_BxL, segment_ids_BxL=segment_ids_BxL,
          cache=None if cache is None else cache[i],
          deterministic=deterministic, rngs=rngs)
      if cache is not None:
        new_cache.append(layer_cache)
    x_BxLxD = self.ln_f(x_BxLxD)
    B, L, D = x_BxLxD.shape
    logits_BLxV = jnp.einsum('ND,VD->NV', x_BxLxD.reshape(B * L, D),
                             self.wte[...].astype(dtype))
    return logits_BLxV.reshape(B, L, -1).astype(jnp.float32), new_cache

  def init_cache(self, batch_size: int) -> list[dict[str, jax.Array]]:
    """An empty KV cache spanning the whole context, one entry per layer."""
    c = self.cfg
    shape = (batch_size, c.max_len, c.num_heads, c.head_dim)
    return [{'k': jnp.zeros(shape, DTYPES[c.dtype]),
             'v': jnp.zeros(shape, DTYPES[c.dtype])}
            for _ in range(c.num_layers)]


def abstract(cfg: GPTConfig):
  """(graphdef, parameter State of shapes): the model without allocating it."""
  return nnx.split(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))),
                   nnx.Param)


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
