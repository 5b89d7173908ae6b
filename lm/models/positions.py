"""Position information for attention: sinusoidal tables, RoPE, ALiBi and
T5's bucketed relative bias.

Pure functions of positions; the learned parameters (an absolute table, T5's
per-bucket biases) live in `lm.models.transformer`. Shapes as in lm/models/transformer.py: B batch, L query
length, M key length, H heads, K head width, D model width.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def sinusoidal(positions_BxL, dim: int, base: float = 10000.0,
               layout: str = 'interleaved'):
  """Vaswani et al.'s table, [B, L, D]: sin at even, cos at odd features
  ('interleaved'), or the D/2 sines then the D/2 cosines ('concat', as
  tensor2tensor, fairseq and Marian lay it out)."""
  inv_freq = base ** (-np.arange(0, dim, 2, dtype=np.float32) / dim)
  angles_BxLxD2 = positions_BxL[..., None].astype(jnp.float32) * inv_freq
  parts = [jnp.sin(angles_BxLxD2), jnp.cos(angles_BxLxD2)]
  if layout == 'concat':
    return jnp.concatenate(parts, -1)[..., :dim]
  table = jnp.stack(parts, -1)
  return table.reshape(*positions_BxL.shape, -1)[..., :dim]


def rope(x_BxLxHxK, positions_BxL, base: float = 10000.0):
  """Rotary embedding (Su et al.): rotates feature pairs (i, i + K/2) by
  position * base^(-2i/K), so q.k depends on positions only through their
  difference. Computed in float32, returned in x's dtype."""
  K = x_BxLxHxK.shape[-1]
  inv_freq = base ** (-np.arange(0, K, 2, dtype=np.float32) / K)
  angles_BxLx1xK2 = (positions_BxL[..., None, None].astype(jnp.float32) *
                     inv_freq)
  cos, sin = jnp.cos(angles_BxLx1xK2), jnp.sin(angles_BxLx1xK2)
  x = x_BxLxHxK.astype(jnp.float32)
  x1, x2 = x[..., :K // 2], x[..., K // 2:]
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
  return rotated.astype(x_BxLxHxK.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """ALiBi's per-head slopes (Press et al., 2022): the geometric sequence
  2^(-8/n), 2^(-16/n), ... for n heads; for n not a power of two, the slopes
  of the next lower power of two, then every other slope of twice that."""
  def geometric(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]
  if math.log2(num_heads).is_integer():
    return np.array(geometric(num_heads), np.float32)
  lower = 2 ** math.floor(math.log2(num_heads))
  extra = geometric(2 * lower)[0::2][:num_heads - lower]
  return np.array(geometric(lower) + extra, np.float32)


def alibi_bias(slopes_H, q_positions_BxL, k_positions_BxM):
  """The additive attention bias -slope * |query position - key position|,
  [B, H, L, M] (for causal attention only keys at or before the query are
  unmasked, so this is the paper's -slope * distance)."""
  distance_BxLxM = jnp.abs(q_positions_BxL[:, :, None] -
                           k_positions_BxM[:, None, :]).astype(jnp.float32)
  return -jnp.asarray(slopes_H)[None, :, None, None] * distance_BxLxM[:, None]


def relative_buckets(q_positions_BxL, k_positions_BxM, num_buckets: int = 32,
                     max_distance: int = 128, bidirectional: bool = False):
  """T5's relative-position buckets (Raffel et al., 2020), [B, L, M] ints.

  Half of the buckets (of each direction, when bidirectional) hold the
  distances 0, 1, ... exactly; the rest cover larger distances in
  logarithmically growing ranges up to `max_distance`, and everything
  further shares the last bucket, so any length can be evaluated. Causally,
  keys after the query fall in bucket 0 (they are masked anyway).
  """
  delta_BxLxM = (q_positions_BxL[:, :, None] -
                 k_positions_BxM[:, None, :]).astype(jnp.int32)
  offset = 0
  if bidirectional:
    num_buckets //= 2
    offset = jnp.where(delta_BxLxM < 0, num_buckets, 0)  # Keys ahead.
    distance = jnp.abs(delta_BxLxM)
  else:
    distance = jnp.maximum(delta_BxLxM, 0)
  exact = num_buckets // 2
  # log(d / exact) / log(max_distance / exact) spreads exact..max_distance
  # over the remaining buckets; distance 0 is guarded from the log.
  ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / exact)
  far = exact + (ratio / math.log(max_distance / exact) *
                 (num_buckets - exact)).astype(jnp.int32)
  far = jnp.minimum(far, num_buckets - 1)
  return offset + jnp.where(distance < exact, distance, far)


def relative_bias(table_NxH, q_positions_BxL, k_positions_BxM,
                  max_distance: int = 128, bidirectional: bool = False):
  """The learned per-head bias of each query-key pair's bucket, [B, H, L, M]
  in float32 (added to the attention logits, as ALiBi's)."""
  buckets_BxLxM = relative_buckets(q_positions_BxL, k_positions_BxM,
                                   table_NxH.shape[0], max_distance,
                                   bidirectional)
  bias_BxLxMxH = jnp.take(table_NxH.astype(jnp.float32), buckets_BxLxM,
                          axis=0)
  return jnp.transpose(bias_BxLxMxH, (0, 3, 1, 2))
