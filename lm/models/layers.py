"""The hyperparameters every layer reads (`TransformerConfig`) and the
basic layers: parameters with logical axes, Dense, LayerNorm/RMSNorm,
activations and the MLP.

Tensor names carry their shapes (see lm.models.transformer).
"""

from __future__ import annotations

import dataclasses
import math

from flax import nnx
import jax
import jax.numpy as jnp

from lm.parallel import sharding

# Parameters are created abstractly and placed by explicit shardings, never
# eagerly sharded on creation.
nnx.use_eager_sharding(False)


DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16,
          'float16': jnp.float16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
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
  sinusoidal_layout: str = 'interleaved'  # interleaved | concat
  head_width: int = 0  # 0: embed_dim // num_heads.
  rope_base: float = 10000.0
  relative_buckets: int = 32  # t5: buckets of the learned per-head bias,
  relative_max_distance: int = 128  # and the distance the last one starts.
  num_kv_heads: int = 0  # 0: num_heads (MHA); 1: MQA; else GQA.
  norm: str = 'layernorm'  # layernorm | rmsnorm
  norm_position: str = 'pre'  # pre | post
  activation: str = 'gelu'  # gelu | relu | relu2 | silu | swiglu | geglu
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
  # ELECTRA's replaced-token detection: the generator's share of the heads and width.
  generator_fraction: float = 0.25
  # Token embeddings drawn with std 1/sqrt(D) and read times sqrt(D) (the
  # original Transformer's), so a sinusoidal table adds at their scale.
  scale_embeddings: bool = False
  decoder_layers: int = 0  # Encoder-decoder: the decoder's depth; 0: num_layers.
  share_embeddings: bool = True  # Encoder-decoder: one token embedding.

  @classmethod
  def from_config(cls, m) -> 'TransformerConfig':
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})

  @property
  def head_dim(self) -> int:
    return self.head_width or self.embed_dim // self.num_heads

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

  def __init__(self,
               in_shape,
               out_shape,
               names,
               cfg: TransformerConfig,
               *,
               rngs,
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

  def __init__(self, cfg: TransformerConfig, *, rngs, dim=None, rms=None):
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


def gelu(x):
  # Exact GELU written with erf (as GPT-2 and nanoGPT): XLA:CPU's erf is
  # cheaper than the erfc formulation inside jax.nn.gelu(approximate=False).
  return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {'gelu': gelu, 'relu': jax.nn.relu,
               # GPT-2's "gelu_new": the tanh approximation.
               'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),
               'relu2': lambda x: jnp.square(jax.nn.relu(x)),  # Primer.
               'silu': jax.nn.silu,
               'swiglu': jax.nn.silu,  # SwiGLU: silu(x W) * (x V).
               # GEGLU with GPT-2's GELU: T5 v1.1's gated-gelu.
               'geglu': lambda x: jax.nn.gelu(x, approximate=True)}
GATED = ('swiglu', 'geglu')


class MLP(nnx.Module):
  """Two dense layers with an activation between; SwiGLU and GEGLU
  multiply it by a gate."""

  def __init__(self, cfg: TransformerConfig, *, rngs):
    D, F = cfg.embed_dim, cfg.mlp_dim
    self.act = ACTIVATIONS[cfg.activation]
    self.up = Dense((D,), (F,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.gate = (Dense((D,), (F,), ('embed', 'mlp'), cfg, rngs=rngs)
                 if cfg.activation in GATED else None)
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
