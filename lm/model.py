"""GPT: a decoder-only Transformer as Flax NNX modules.

The default is GPT-2's layout: token and learned position embeddings,
pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP, a
final LayerNorm and an output head tied to the token embedding. Config
switches choose the variants on the same code: positions (none, learned,
sinusoidal, RoPE, ALiBi, T5's relative buckets), grouped-query and
multi-query attention (`num_kv_heads`), LayerNorm or RMSNorm, pre- or
post-norm blocks (and BERT's norm on the embeddings), GELU (exact or
GPT-2's tanh form), ReLU, squared ReLU or SwiGLU, tied or untied output
head, biases, dropout sites and depth-scaled init. Every parameter is
declared with logical axis names; `lm.sharding` maps them onto mesh axes.

Tensor names carry their shapes:
  B batch, L query length, M key length (the KV cache's length when decoding),
  D model width, H heads, G key/value heads, K head width, F MLP width,
  V vocabulary, N relative-position buckets.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lm import positions as positions_lib
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
  position: str = 'learned'  # none | learned | sinusoidal | rope | alibi | t5
  rope_base: float = 10000.0
  relative_buckets: int = 32  # t5: buckets of the learned per-head bias,
  relative_max_distance: int = 128  # and the distance the last one starts.
  num_kv_heads: int = 0  # 0: num_heads (MHA); 1: MQA; else GQA.
  norm: str = 'layernorm'  # layernorm | rmsnorm
  norm_position: str = 'pre'  # pre | post
  activation: str = 'gelu'  # gelu | relu | relu2 | swiglu
  tie_embeddings: bool = True
  causal: bool = True  # False: bidirectional (segments still separate).
  attention_window: int = 0  # > 0: attend to the last W positions only.
  qk_norm: bool = False  # RMSNorm on each head's queries and keys.
  attention_impl: str = 'reference'  # reference | xla | cudnn | splash
  scan_layers: bool = False  # One traced block, scanned over stacked layers.
  remat: str = 'none'  # none | full | dots: recompute activations in backward.
  # Where `dropout` applies: token(+position) embeddings, attention
  # probabilities, each residual branch's output, the MLP's hidden layer.
  dropout_sites: str = 'embed,attention,residual'
  scaled_init: bool = True  # Residual projections: std 0.02 / sqrt(2 layers).
  type_vocab_size: int = 0  # > 0: token-type (segment A/B) embeddings, BERT.
  norm_eps: float = 1e-5  # Every LayerNorm's epsilon (BERT: 1e-12).
  embed_norm: bool = False  # A LayerNorm on the summed embeddings (BERT).
  pooling: str = 'cls'  # Classifier input: cls | mean (of real tokens).
  # replaced_token (ELECTRA): the generator's share of the heads and width.
  generator_fraction: float = 0.25

  @classmethod
  def from_config(cls, m) -> 'GPTConfig':
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  def dropout_at(self, site: str) -> float:
    """The dropout rate at `site` (0 where it is not switched on)."""
    return self.dropout if site in self.dropout_sites.split(',') else 0.0

  @property
  def residual_std(self) -> float:
    """GPT-2's init of the projections into the residual stream."""
    return 0.02 / math.sqrt(2 * self.num_layers) if self.scaled_init else 0.02


def param(rngs, init, shape, names, dtype):
  return nnx.Param(init(rngs.params(), shape, DTYPES[dtype]),
                   out_sharding=names)


class Dense(nnx.Module):
  """x @ kernel (+ bias), contracting the trailing `len(in_shape)` axes."""

  def __init__(self, in_shape, out_shape, names, cfg: GPTConfig, *, rngs,
               std=0.02):
    self.n_in = len(in_shape)
    self.dtype = DTYPES[cfg.dtype]
    self.kernel = param(rngs, nnx.initializers.normal(std),
                         (*in_shape, *out_shape), names, cfg.param_dtype)
    self.bias = (param(rngs, nnx.initializers.zeros, out_shape,
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
  """LayerNorm (or, with cfg.norm='rmsnorm', RMSNorm: no centring, no bias)
  over the last axis, statistics in float32."""

  def __init__(self, cfg: GPTConfig, *, rngs, dim=None, rms=None):
    del rngs
    dim = dim or cfg.embed_dim
    self.eps = cfg.norm_eps
    self.rms = cfg.norm == 'rmsnorm' if rms is None else rms
    self.dtype = DTYPES[cfg.dtype]
    names = ('embed',) if dim == cfg.embed_dim else (None,)
    self.scale = nnx.Param(jnp.ones((dim,), DTYPES[cfg.param_dtype]),
                           out_sharding=names)
    self.bias = (nnx.Param(jnp.zeros((dim,), DTYPES[cfg.param_dtype]),
                           out_sharding=names)
                 if cfg.use_bias and not self.rms else None)

  def __call__(self, x_BxLxD):
    x = x_BxLxD.astype(jnp.float32)
    if self.rms:
      ms = jnp.square(x).mean(-1, keepdims=True)
      return (x * jax.lax.rsqrt(ms + self.eps) * self.scale[...]
              ).astype(self.dtype)
    mean = x.mean(-1, keepdims=True)
    # Both moments in one pass over x (E[x^2] - E[x]^2, in float32, clamped):
    # one fewer reduction for XLA:CPU; measured as fast or up to 5% faster.
    var = jnp.maximum(jnp.square(x).mean(-1, keepdims=True) - mean**2, 0.0)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...]
    if self.bias is not None:
      y = y + self.bias[...]
    return y.astype(self.dtype)


def attention_mask(q_positions_BxL, k_positions_BxM, segment_ids_BxL=None,
                   causal=True, window=0):
  """[B, L, M] True where a query may attend to a key.

  Positions restart in each packed segment, so position order is causal
  order within a segment; the segment test stops attention across them.
  """
  q, k = q_positions_BxL[:, :, None], k_positions_BxM[:, None, :]
  mask_BxLxM = k <= q if causal else jnp.ones_like(k <= q)
  if window:
    mask_BxLxM &= jnp.abs(q - k) < window
  if segment_ids_BxL is not None:
    mask_BxLxM &= segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
  return mask_BxLxM


def reference_attention(q_BxLxHxK, k_BxMxGxK, v_BxMxGxK, mask_BxLxM,
                        bias_BxHxLxM=None, dropout=None):
  """softmax(q.k / sqrt(K) + bias, masked) . v, spelled out in einsums;
  softmax in float32. `dropout` (if given) applies to the probabilities."""
  B, L, H, K = q_BxLxHxK.shape
  G, M = k_BxMxGxK.shape[2], k_BxMxGxK.shape[1]
  q_BxLxHxK = q_BxLxHxK * (1.0 / math.sqrt(K))
  if G == H:
    logits_BxHxLxM = jnp.einsum('BLHK,BMHK->BHLM', q_BxLxHxK, k_BxMxGxK)
  else:  # Query heads g*R .. g*R + R-1 read key/value head g.
    logits_BxHxLxM = jnp.einsum(
        'BLGRK,BMGK->BGRLM', q_BxLxHxK.reshape(B, L, G, H // G, K),
        k_BxMxGxK).reshape(B, H, L, M)
  logits_BxHxLxM = logits_BxHxLxM.astype(jnp.float32)
  if bias_BxHxLxM is not None:
    logits_BxHxLxM += bias_BxHxLxM
  logits_BxHxLxM = jnp.where(mask_BxLxM[:, None], logits_BxHxLxM,
                             jnp.finfo(jnp.float32).min)
  probs_BxHxLxM = jax.nn.softmax(logits_BxHxLxM, axis=-1).astype(
      q_BxLxHxK.dtype)
  if dropout is not None:
    probs_BxHxLxM = dropout(probs_BxHxLxM)
  if G == H:
    return jnp.einsum('BHLM,BMHK->BLHK', probs_BxHxLxM, v_BxMxGxK)
  return jnp.einsum(
      'BGRLM,BMGK->BLGRK', probs_BxHxLxM.reshape(B, G, H // G, L, M),
      v_BxMxGxK).reshape(B, L, H, K)


def splash_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL=None,
                     causal=True, window=0):
  """Pallas splash (flash) attention, the fused TPU kernel: no L x L score
  matrix in memory. Self-attention over rows of length L (a multiple of the
  128-wide block); masks: causal or full, optional sliding window, packed
  segments. Off TPU it runs in the Pallas interpreter (slowly: for tests).
  """
  # pylint: disable=g-import-not-at-top
  from jax.experimental.pallas.ops.tpu.splash_attention import (
      splash_attention_kernel as splash, splash_attention_mask as masks)
  B, L, H, K = q_BxLxHxK.shape
  G = k_BxLxGxK.shape[2]
  R = H // G
  if window:
    mask = masks.LocalMask((L, L), (window - 1, 0 if causal else window - 1),
                           offset=0)
  else:
    mask = masks.CausalMask((L, L)) if causal else masks.FullMask((L, L))
  block = min(512, L)
  sizes = splash.BlockSizes(
      block_q=block, block_kv_compute=block, block_kv=block,
      block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
      block_q_dq=block, block_kv_dq=block)
  kw = dict(block_sizes=sizes, interpret=jax.default_backend() != 'tpu')
  if segment_ids_BxL is None:
    segment_ids_BxL = jnp.ones((B, L), jnp.int32)
  # Heads first; the kernel does not scale the scores.
  q_BxGxRxLxK = (q_BxLxHxK * (1.0 / math.sqrt(K))).reshape(
      B, L, G, R, K).transpose(0, 2, 3, 1, 4)
  k_BxGxLxK = k_BxLxGxK.transpose(0, 2, 1, 3)
  v_BxGxLxK = v_BxLxGxK.transpose(0, 2, 1, 3)
  if R == 1:  # Multi-head: one kernel over all heads.
    kernel = splash.make_splash_mha(masks.MultiHeadMask([mask] * H),
                                    head_shards=1, q_seq_shards=1, **kw)
    def one_row(q, k, v, seg):
      return kernel(q[:, 0], k, v, segment_ids=splash.SegmentIds(seg, seg)
                    )[:, None]
  else:  # Grouped or multi-query: each group's R heads share one K/V head.
    kernel = splash.make_splash_mqa_single_device(
        masks.MultiHeadMask([mask] * R), **kw)
    def one_row(q, k, v, seg):
      ids = splash.SegmentIds(seg, seg)
      return jax.vmap(lambda qg, kg, vg: kernel(qg, kg, vg, segment_ids=ids)
                      )(q, k, v)
  y_BxGxRxLxK = jax.vmap(one_row)(q_BxGxRxLxK, k_BxGxLxK, v_BxGxLxK,
                                  segment_ids_BxL)
  return y_BxGxRxLxK.transpose(0, 3, 1, 2, 4).reshape(B, L, H, K)


class Attention(nnx.Module):
  """Self-attention (causal unless cfg.causal is False), optionally over a KV
  cache.

  H query heads share G = cfg.kv_heads key/value heads (G = H: multi-head,
  G = 1: multi-query, else grouped-query); the cache holds G heads.
  `cfg.attention_impl` 'reference' is `reference_attention` (attention
  dropout applies here only); 'xla' and 'cudnn' call
  `jax.nn.dot_product_attention` with that implementation (cuDNN's fused
  kernel on NVIDIA GPUs); 'splash' is the TPU kernel (`splash_attention`;
  decoding through the cache uses the reference).
  """

  def __init__(self, cfg: GPTConfig, *, rngs):
    H, G, K, D = cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.embed_dim
    self.cfg = cfg
    # Separate projections keep 'heads' the major axis of each kernel's
    # output, so tensor parallelism splits whole heads.
    self.q = Dense((D,), (H, K), ('embed', 'heads', 'kv'), cfg, rngs=rngs)
    self.k, self.v = (
        Dense((D,), (G, K), ('embed', 'heads', 'kv'), cfg, rngs=rngs)
        for _ in range(2))
    # Residual projections get GPT-2's depth-scaled init.
    self.out = Dense((H, K), (D,), ('heads', 'kv', 'embed'), cfg, rngs=rngs,
                     std=cfg.residual_std)
    self.dropout = nnx.Dropout(cfg.dropout_at('attention'))
    self.dtype = DTYPES[cfg.dtype]
    self.q_norm, self.k_norm = (
        (LayerNorm(cfg, rngs=rngs, dim=K, rms=True) for _ in range(2))
        if cfg.qk_norm else (None, None))

  def __call__(self, x_BxLxD, *, positions_BxL, segment_ids_BxL=None,
               cache=None, relative_NxH=None, deterministic=True, rngs=None):
    """`relative_NxH`: T5's bias table (shared by all layers, so the model
    passes it in) when cfg.position is 't5'."""
    cfg = self.cfg
    q_BxLxHxK = self.q(x_BxLxD)
    k_BxLxGxK, v_BxLxGxK = self.k(x_BxLxD), self.v(x_BxLxD)
    q_BxLxHxK = sharding.constrain(q_BxLxHxK, ('batch', None, 'heads', None))
    if cfg.qk_norm:
      q_BxLxHxK, k_BxLxGxK = self.q_norm(q_BxLxHxK), self.k_norm(k_BxLxGxK)
    if cfg.position == 'rope':  # Keys are rotated before they are cached.
      q_BxLxHxK = positions_lib.rope(q_BxLxHxK, positions_BxL, cfg.rope_base)
      k_BxLxGxK = positions_lib.rope(k_BxLxGxK, positions_BxL, cfg.rope_base)
    if cache is None:
      k_BxMxGxK, v_BxMxGxK = k_BxLxGxK, v_BxLxGxK
      key_positions_BxM = positions_BxL
    else:
      # Write this call's keys and values at their positions; attend over the
      # whole cache, masking the slots not yet written (positions > query).
      start = positions_BxL[0, 0]
      cache = {'k': jax.lax.dynamic_update_slice_in_dim(
                   cache['k'], k_BxLxGxK.astype(cache['k'].dtype), start, 1),
               'v': jax.lax.dynamic_update_slice_in_dim(
                   cache['v'], v_BxLxGxK.astype(cache['v'].dtype), start, 1)}
      k_BxMxGxK, v_BxMxGxK = cache['k'], cache['v']
      key_positions_BxM = jnp.arange(k_BxMxGxK.shape[1])[None]
    H = q_BxLxHxK.shape[2]
    k_BxMxGxK = k_BxMxGxK.astype(self.dtype)
    v_BxMxGxK = v_BxMxGxK.astype(self.dtype)
    mask_BxLxM = attention_mask(positions_BxL, key_positions_BxM,
                                segment_ids_BxL, cfg.causal,
                                cfg.attention_window)
    bias_BxHxLxM = None
    if cfg.position == 'alibi':
      bias_BxHxLxM = positions_lib.alibi_bias(
          positions_lib.alibi_slopes(H), positions_BxL, key_positions_BxM)
    elif cfg.position == 't5':
      bias_BxHxLxM = positions_lib.relative_bias(
          relative_NxH, positions_BxL, key_positions_BxM,
          cfg.relative_max_distance, bidirectional=not cfg.causal)
    if cfg.attention_impl == 'splash' and cache is None:
      y_BxLxHxK = splash_attention(q_BxLxHxK, k_BxMxGxK, v_BxMxGxK,
                                   segment_ids_BxL, cfg.causal,
                                   cfg.attention_window)
    elif cfg.attention_impl in ('reference', 'splash'):
      y_BxLxHxK = reference_attention(
          q_BxLxHxK, k_BxMxGxK, v_BxMxGxK, mask_BxLxM, bias_BxHxLxM,
          lambda p: self.dropout(p, deterministic=deterministic, rngs=rngs))
    else:
      y_BxLxHxK = jax.nn.dot_product_attention(
          q_BxLxHxK, k_BxMxGxK, v_BxMxGxK,
          bias=None if bias_BxHxLxM is None else bias_BxHxLxM.astype(
              self.dtype),
          mask=mask_BxLxM[:, None], implementation=cfg.attention_impl)
    return self.out(y_BxLxHxK), cache


def gelu(x):
  # Exact GELU written with erf (as GPT-2 and nanoGPT): XLA:CPU's erf is
  # cheaper than the erfc formulation inside jax.nn.gelu(approximate=False).
  return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {'gelu': gelu, 'relu': jax.nn.relu,
               # GPT-2's "gelu_new": the tanh approximation.
               'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),
               'relu2': lambda x: jnp.square(jax.nn.relu(x)),  # Primer.
               'swiglu': jax.nn.silu}  # SwiGLU: silu(x W) * (x V).


class MLP(nnx.Module):
  """Two dense layers with an activation between; SwiGLU adds a gate."""

  def __init__(self, cfg: GPTConfig, *, rngs):
    D, F = cfg.embed_dim, cfg.mlp_dim
    self.act = ACTIVATIONS[cfg.activation]
    self.up = Dense((D,), (F,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.gate = (Dense((D,), (F,), ('embed', 'mlp'), cfg, rngs=rngs)
                 if cfg.activation == 'swiglu' else None)
    self.down = Dense((F,), (D,), ('mlp', 'embed'), cfg, rngs=rngs,
                      std=cfg.residual_std)
    self.dropout = nnx.Dropout(cfg.dropout_at('mlp'))

  def __call__(self, x_BxLxD, deterministic=True, rngs=None):
    h_BxLxF = self.act(self.up(x_BxLxD))
    if self.gate is not None:
      h_BxLxF = h_BxLxF * self.gate(x_BxLxD)
    h_BxLxF = sharding.constrain(h_BxLxF, ('batch', None, 'mlp'))
    h_BxLxF = self.dropout(h_BxLxF, deterministic=deterministic, rngs=rngs)
    return self.down(h_BxLxF)


class Block(nnx.Module):
  """Pre-norm: x + attn(ln(x)), then x + mlp(ln(x)); post-norm (the original
  Transformer): ln(x + attn(x)), then ln(x + mlp(x)). Dropout on each
  branch's output (site 'residual').
  """

  def __init__(self, cfg: GPTConfig, *, rngs):
    self.ln1 = LayerNorm(cfg, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.ln2 = LayerNorm(cfg, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout_at('residual'))
    self.pre = cfg.norm_position == 'pre'

  def __call__(self, x_BxLxD, *, positions_BxL, segment_ids_BxL=None,
               cache=None, relative_NxH=None, deterministic=True, rngs=None):
    pre, post = ((self.ln1, self.ln2), (None, None)) if self.pre else (
        (None, None), (self.ln1, self.ln2))
    y_BxLxD, cache = self.attn(pre[0](x_BxLxD) if self.pre else x_BxLxD,
                               positions_BxL=positions_BxL,
                               segment_ids_BxL=segment_ids_BxL, cache=cache,
                               relative_NxH=relative_NxH,
                               deterministic=deterministic, rngs=rngs)
    x_BxLxD = x_BxLxD + self.dropout(y_BxLxD, deterministic=deterministic,
                                     rngs=rngs)
    if not self.pre:
      x_BxLxD = post[0](x_BxLxD)
    y_BxLxD = self.mlp(pre[1](x_BxLxD) if self.pre else x_BxLxD,
                       deterministic=deterministic, rngs=rngs)
    x_BxLxD = x_BxLxD + self.dropout(y_BxLxD, deterministic=deterministic,
                                     rngs=rngs)
    if not self.pre:
      x_BxLxD = post[1](x_BxLxD)
    return sharding.constrain(x_BxLxD, ('batch', None, 'embed')), cache


class GPT(nnx.Module):
  """Token ids in, next-token logits out."""

  def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    init = nnx.initializers.normal(0.02)
    self.wte = param(rngs, init, (cfg.vocab_size, cfg.embed_dim),
                      ('vocab', 'embed'), cfg.param_dtype)
    self.wpe = (param(rngs, init, (cfg.max_len, cfg.embed_dim),
                       (None, 'embed'), cfg.param_dtype)
                if cfg.position == 'learned' else None)
    # T5 shares one bias table [buckets, heads] across the layers.
    self.wtt = (param(rngs, init, (cfg.type_vocab_size, cfg.embed_dim),
                       (None, 'embed'), cfg.param_dtype)
                if cfg.type_vocab_size else None)
    self.relative = (param(rngs, init, (cfg.relative_buckets, cfg.num_heads),
                            (None, 'heads'), cfg.param_dtype)
                     if cfg.position == 't5' else None)
    self.ln_e = LayerNorm(cfg, rngs=rngs) if cfg.embed_norm else None
    self.dropout = nnx.Dropout(cfg.dropout_at('embed'))
    if cfg.scan_layers:
      # One Block whose parameters carry a leading layer axis: the stack is
      # one array per parameter, scanned over (compile time flat in depth).
      @nnx.split_rngs(splits=cfg.num_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0,
                transform_metadata={nnx.PARTITION_NAME: None})
      def stacked(rngs):
        return Block(cfg, rngs=rngs)
      self.blocks = stacked(rngs)
    else:
      self.blocks = nnx.List([Block(cfg, rngs=rngs)
                              for _ in range(cfg.num_layers)])
    # Post-norm blocks already end in a norm.
    self.ln_f = (LayerNorm(cfg, rngs=rngs) if cfg.norm_position == 'pre'
                 else None)
    self.head = (None if cfg.tie_embeddings else
                 param(rngs, init, (cfg.vocab_size, cfg.embed_dim),
                        ('vocab', 'embed'), cfg.param_dtype))

  def __call__(self, tokens_BxL, *, positions=None, segment_ids_BxL=None,
               cache=None, deterministic=True, rngs=None,
               token_types_BxL=None):
    """Logits [B, L, V] in float32, and the updated cache (None if not given).
    (`hidden` gives the final hidden states instead, for other heads.)

    `positions` ([L] or [B, L]; default 0..L-1) are the tokens' positions
    (a learned table's rows; sinusoidal, RoPE, ALiBi and T5 compute from
    them).
    Packed rows pass `segment_ids_BxL` and positions restarting at 0 in each
    segment; a token then attends only to earlier tokens of its segment.
    With a cache (from `init_cache`), tokens sit at `positions` ([L], which
    must be consecutive); keys and values are written there and attention
    reads the cache, so decoding one token at a time equals one full call.
    """
    x_BxLxD, new_cache = self.hidden(
        tokens_BxL, positions=positions, segment_ids_BxL=segment_ids_BxL,
        cache=cache, deterministic=deterministic, rngs=rngs,
        token_types_BxL=token_types_BxL)
    B, L, D = x_BxLxD.shape
    head_VxD = self.wte[...] if self.head is None else self.head[...]
    logits_BLxV = jnp.einsum('ND,VD->NV', x_BxLxD.reshape(B * L, D),
                             head_VxD.astype(x_BxLxD.dtype))
    return logits_BLxV.reshape(B, L, -1).astype(jnp.float32), new_cache

  def hidden(self, tokens_BxL, *, positions=None, segment_ids_BxL=None,
             cache=None, deterministic=True, rngs=None, token_types_BxL=None):
    """The final (normed) hidden states [B, L, D] and the updated cache.
    Encoders pass `segment_ids_BxL` 1 on real tokens and 0 on padding (no
    token then attends across the two) and, with `type_vocab_size`,
    `token_types_BxL` (BERT's sentence A/B)."""
    dtype = DTYPES[self.cfg.dtype]
    L = tokens_BxL.shape[1]
    if positions is None:
      positions = jnp.arange(L)
    positions_BxL = positions if positions.ndim == 2 else positions[None]
    # Gather from tables whose embed axis is whole: gathering from an
    # fsdp-sharded table makes XLA's partitioner rematerialise it anyway.
    wte_VxD = sharding.constrain(self.wte[...], ('vocab', None))
    x_BxLxD = jnp.take(wte_VxD, tokens_BxL, axis=0)
    if self.cfg.position == 'learned':
      wpe_LxD = sharding.constrain(self.wpe[...], (None, None))
      x_BxLxD = x_BxLxD + jnp.take(wpe_LxD, positions_BxL, axis=0)
    elif self.cfg.position == 'sinusoidal':
      x_BxLxD = x_BxLxD + positions_lib.sinusoidal(positions_BxL,
                                                   self.cfg.embed_dim)
    if self.wtt is not None:
      types_BxL = (jnp.zeros_like(tokens_BxL) if token_types_BxL is None
                   else token_types_BxL)
      x_BxLxD = x_BxLxD + jnp.take(self.wtt[...], types_BxL, axis=0)
    if self.ln_e is not None:
      x_BxLxD = self.ln_e(x_BxLxD)
    x_BxLxD = x_BxLxD.astype(dtype)
    x_BxLxD = sharding.constrain(x_BxLxD, ('batch', None, 'embed'))
    x_BxLxD = self.dropout(x_BxLxD, deterministic=deterministic, rngs=rngs)
    relative_NxH = None if self.relative is None else self.relative[...]
    x_BxLxD, new_cache = self._blocks(x_BxLxD, positions_BxL, segment_ids_BxL,
                                      relative_NxH, cache, deterministic, rngs)
    if self.ln_f is not None:
      x_BxLxD = self.ln_f(x_BxLxD)
    return x_BxLxD, new_cache

  def _blocks(self, x_BxLxD, positions_BxL, segment_ids_BxL, relative_NxH,
              cache, deterministic, rngs):
    """The blocks in order: a Python loop over the layers, or (scan_layers)
    one `jax.lax.scan` over the stacked layers; with `remat`, each block is
    recomputed in the backward pass. Dropout keys are drawn per layer from
    one key. Returns the output and the updated cache (None if not given)."""
    cfg = self.cfg
    if not cfg.scan_layers and cfg.remat == 'none':  # The plain stack.
      new_cache = None if cache is None else []
      for i, block in enumerate(self.blocks):
        x_BxLxD, layer_cache = block(
            x_BxLxD, positions_BxL=positions_BxL,
            segment_ids_BxL=segment_ids_BxL,
            cache=None if cache is None else cache[i],
            relative_NxH=relative_NxH, deterministic=deterministic, rngs=rngs)
        if cache is not None:
          new_cache.append(layer_cache)
      return x_BxLxD, new_cache
    train = not deterministic and cfg.dropout > 0
    keys = (jax.random.split(rngs.dropout(), cfg.num_layers) if train else
            jnp.zeros((cfg.num_layers, 2), jnp.uint32))
    graphdef = nnx.graphdef(self.blocks if cfg.scan_layers else
                            self.blocks[0])

    def body(x_BxLxD, layer):
      state, key, layer_cache = layer
      block = nnx.merge(graphdef, state)
      return block(x_BxLxD, positions_BxL=positions_BxL,
                   segment_ids_BxL=segment_ids_BxL, cache=layer_cache,
                   relative_NxH=relative_NxH, deterministic=not train,
                   rngs=nnx.Rngs(dropout=key) if train else None)
    if cfg.remat != 'none' and cache is None:
      policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
                if cfg.remat == 'dots' else None)
      body = jax.checkpoint(body, policy=policy)
    if cfg.scan_layers:  # The cache, too, is stacked over the layers.
      return jax.lax.scan(body, x_BxLxD,
                          (nnx.state(self.blocks), keys, cache))
    new_cache = None if cache is None else []
    for i, block in enumerate(self.blocks):
      x_BxLxD, layer_cache = body(x_BxLxD, (
          nnx.state(block), keys[i], None if cache is None else cache[i]))
      if cache is not None:
        new_cache.append(layer_cache)
    return x_BxLxD, new_cache

  def init_cache(self, batch_size: int):
    """An empty KV cache spanning the whole context: one {'k', 'v'} entry
    per layer, or (scan_layers) one entry stacked over the layers."""
    c = self.cfg
    shape = (batch_size, c.max_len, c.kv_heads, c.head_dim)
    if c.scan_layers:
      shape = (c.num_layers, *shape)
      return {'k': jnp.zeros(shape, DTYPES[c.dtype]),
              'v': jnp.zeros(shape, DTYPES[c.dtype])}
    return [{'k': jnp.zeros(shape, DTYPES[c.dtype]),
             'v': jnp.zeros(shape, DTYPES[c.dtype])}
            for _ in range(c.num_layers)]


def stack_layers(params: dict) -> dict:
  """Parameters of a per-layer stack ({'blocks': {0: ..., 1: ...}}) in the
  layout of `scan_layers` (each leaf stacked on a leading layer axis)."""
  blocks = params['blocks']
  layers = [blocks[i] for i in sorted(blocks)]
  return {**params, 'blocks': jax.tree.map(lambda *xs: jnp.stack(xs),
                                           *layers)}


def unstack_layers(params: dict) -> dict:
  """The inverse of `stack_layers`."""
  stacked = params['blocks']
  n = jax.tree.leaves(stacked)[0].shape[0]
  return {**params, 'blocks': {
      i: jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(n)}}


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
