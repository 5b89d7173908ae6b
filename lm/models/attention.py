"""Attention: masks, the reference einsum attention, beam search's attention
over a KV cache that never moves, the TPU splash kernel, and the multi-head
(grouped-, multi-query) `Attention` layer, self- or cross-.

Tensor names carry their shapes:
  B batch, L query length, M key length (the KV cache's length when decoding,
  the encoder's in cross-attention),
  D model width, H heads, G key/value heads, K head width, N relative-position
  buckets.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp

from lm.models import layers
from lm.models import positions as positions_lib
from lm.parallel import sharding


def attention_mask(q_positions_BxL, k_positions_BxM, q_segment_ids_BxL=None,
                   k_segment_ids_BxM=None, *, causal=True, window=0):
  """[B, L, M] True where a query may attend to a key.

  Positions restart in each packed segment, so position order is causal
  order within a segment; the segment test stops attention across them.
  A query attends only to keys of its own segment id. Key ids default to the
  query ids (self-attention); with key ids alone (cross-attention from an
  unpacked row) every query is in segment 1, the id of real tokens, so keys
  of padding (id 0) are masked.
  """
  q, k = q_positions_BxL[:, :, None], k_positions_BxM[:, None, :]
  mask_BxLxM = k <= q if causal else jnp.ones_like(k <= q)
  if window:
    mask_BxLxM &= jnp.abs(q - k) < window
  if q_segment_ids_BxL is None and k_segment_ids_BxM is not None:
    q_segment_ids_BxL = jnp.ones(q_positions_BxL.shape,
                                 k_segment_ids_BxM.dtype)
  if q_segment_ids_BxL is not None:
    if k_segment_ids_BxM is None:
      k_segment_ids_BxM = q_segment_ids_BxL
    mask_BxLxM &= (q_segment_ids_BxL[:, :, None] ==
                   k_segment_ids_BxM[:, None, :])
  return mask_BxLxM


def reference_attention(q_BxLxHxK, k, v, mask_BxLxM, bias_BxHxLxM=None,
                        dropout=None, heads_major=False):
  """softmax(q.k / sqrt(K) + bias, masked) . v, spelled out in einsums;
  softmax in float32. `dropout` (if given) applies to the probabilities.

  Keys and values k, v: [B, M, G, K], or [B, G, M, K] if `heads_major`
  (the KV cache's layout). Heads-major, each head's keys are one block, as
  the CPU's batched matrix products read them; keys [B, M, G, K] are first
  transposed (copied) into that layout, which when decoding would copy the
  whole cache per layer and step, costing more than the attention itself
  (BENCHMARKS.md, translation decoding speed). Training keeps [B, M, G, K],
  whose numbers are pinned.
  """
  B, L, H, K = q_BxLxHxK.shape
  q_BxLxHxK = q_BxLxHxK * (1.0 / math.sqrt(K))
  if heads_major:
    G, M = k.shape[1], k.shape[2]
    R = H // G  # Query heads g*R .. g*R + R-1 read key/value head g.
    # Each key/value head's R query heads and L positions as one matrix (an
    # einsum over 5-d queries made XLA copy the keys for R > 1: grouped-
    # query decoding ran slower than multi-head; experiments/attention_heads).
    q_BxGxQxK = q_BxLxHxK.reshape(B, L, G, R, K).transpose(
        0, 2, 3, 1, 4).reshape(B, G, R * L, K)
    logits_BxHxLxM = jnp.einsum('BGQK,BGMK->BGQM', q_BxGxQxK,
                                k).reshape(B, H, L, M)
  elif k.shape[2] == H:
    logits_BxHxLxM = jnp.einsum('BLHK,BMHK->BHLM', q_BxLxHxK, k)
  else:
    G, M = k.shape[2], k.shape[1]
    logits_BxHxLxM = jnp.einsum(
        'BLGRK,BMGK->BGRLM', q_BxLxHxK.reshape(B, L, G, H // G, K),
        k).reshape(B, H, L, M)
  logits_BxHxLxM = logits_BxHxLxM.astype(jnp.float32)
  if bias_BxHxLxM is not None:
    logits_BxHxLxM += bias_BxHxLxM
  logits_BxHxLxM = jnp.where(mask_BxLxM[:, None], logits_BxHxLxM,
                             jnp.finfo(jnp.float32).min)
  probs_BxHxLxM = jax.nn.softmax(logits_BxHxLxM, axis=-1).astype(
      q_BxLxHxK.dtype)
  if dropout is not None:
    probs_BxHxLxM = dropout(probs_BxHxLxM)
  if heads_major:
    y_BxGxQxK = jnp.einsum('BGQM,BGMK->BGQK',
                           probs_BxHxLxM.reshape(B, G, R * L, M), v)
    return y_BxGxQxK.reshape(B, G, R, L, K).transpose(0, 3, 1, 2, 4).reshape(
        B, L, H, K)
  if k.shape[2] == H:
    return jnp.einsum('BHLM,BMHK->BLHK', probs_BxHxLxM, v)
  return jnp.einsum(
      'BGRLM,BMGK->BLGRK', probs_BxHxLxM.reshape(B, G, H // G, L, M),
      v).reshape(B, L, H, K)


def beam_attention(q_BxLxHxK, k_SxGxKxMW, v_SxGxMWxK, ancestors_SxWxM,
                   mask_BxLxM, bias_BxHxLxM=None):
  """Attention of B = S * W rows (W beams of each of S sources, in source
  order) over a beam search's KV cache that is never reordered: slot
  (s, t, w) holds the keys and values that row w of source s wrote at
  position t, and `ancestors_SxWxM` names, for each row and position, the
  row whose slot holds its hypothesis' position t (fairseq and Hugging Face
  copy the cache rows instead, every step). Each row's queries meet the keys
  of all W rows of its source in one matrix product (M * W columns, read
  once); those of rows other than its ancestor at each position are masked,
  so it is softmax(q.k / sqrt(K) + bias) . v over its own hypothesis.

  The cache's slots are position-major (slot t * W + w: one step's W slots
  side by side, written in place by one update), each key/value head's one
  block, as the CPU's batched matrix products read them: values
  [S, G, M * W, K] and keys transposed, [S, G, K, M * W] (keys [.., M * W, K]
  made each step's q.k product transpose, i.e. copy, the whole cache).
  `mask_BxLxM` (B may be 1) is the positional mask; `bias_BxHxLxM` (B may be
  1) T5's or ALiBi's.
  """
  B, L, H, K = q_BxLxHxK.shape
  S, G, MW, _ = v_SxGxMWxK.shape
  W, M = ancestors_SxWxM.shape[1:]
  R = H // G
  q_SxGxQxK = (q_BxLxHxK * (1.0 / math.sqrt(K))).reshape(
      S, W, L, G, R, K).transpose(0, 3, 1, 2, 4, 5).reshape(S, G, W * L * R, K)
  logits = jnp.einsum('SGQK,SGKM->SGQM', q_SxGxQxK, k_SxGxKxMW).reshape(
      S, G, W, L, R, M, W).astype(jnp.float32)
  if bias_BxHxLxM is not None:
    bias = jnp.broadcast_to(bias_BxHxLxM, (B, H, L, M)).reshape(
        S, W, G, R, L, M).transpose(0, 2, 1, 4, 3, 5)
    logits += bias[..., None]
  # Row w reads slot (t, v) where v is its ancestor at position t.
  own_SxWxMxW = (ancestors_SxWxM[..., None] ==
                 jnp.arange(W)[None, None, None, :])
  mask = (jnp.broadcast_to(mask_BxLxM, (B, L, M)).reshape(S, W, L, 1, M, 1)
          & own_SxWxMxW[:, :, None, None])
  logits = jnp.where(mask[:, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits.reshape(S, G, W, L, R, MW), axis=-1)
  y_SxGxQxK = jnp.einsum(
      'SGQM,SGMK->SGQK', probs.reshape(S, G, W * L * R, MW).astype(
          q_BxLxHxK.dtype), v_SxGxMWxK)
  return y_SxGxQxK.reshape(S, G, W, L, R, K).transpose(0, 2, 3, 1, 4, 5
                                                        ).reshape(B, L, H, K)


def swap_heads(x_BxMxGxK):
  """[B, M, G, K] keys or values as [B, G, M, K] (and back: the same swap)."""
  return x_BxMxGxK.transpose(0, 2, 1, 3)


def _write_beams(cache, k_BxLxGxK, v_BxLxGxK, start):
  """A beam cache (see `beam_attention`) with each row's keys and values of
  positions start.. in its own slots, which those positions' ancestors
  now name."""
  S, W = cache['ancestors'].shape[:2]
  _, L, G, K = k_BxLxGxK.shape

  def put(slots, x_BxLxGxK, axis):
    x = x_BxLxGxK.reshape(S, W, L, G, K).transpose(
        (0, 3, 2, 1, 4) if axis == 2 else (0, 3, 4, 2, 1)).reshape(
            slots.shape[:2] + ((L * W, K) if axis == 2 else (K, L * W)))
    return jax.lax.dynamic_update_slice_in_dim(slots, x.astype(slots.dtype),
                                               start * W, axis)
  rows_SxWxL = jnp.broadcast_to(jnp.arange(W, dtype=jnp.int32)[None, :, None],
                                (S, W, L))
  return {'k': put(cache['k'], k_BxLxGxK, 3),
          'v': put(cache['v'], v_BxLxGxK, 2),
          'ancestors': jax.lax.dynamic_update_slice(
              cache['ancestors'], rows_SxWxL, (0, 0, start))}


def splash_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL=None,
                     causal=True, window=0):
  """Pallas splash (flash) attention, the fused TPU kernel: no L x L score
  matrix in memory. Self-attention over rows of length L (a multiple of the
  128-wide block); masks: causal or full, optional sliding window, packed
  segments. Off TPU it runs in the Pallas interpreter (slowly: for tests).
  """
  # pylint: disable=g-import-not-at-top
  from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_kernel as splash,
  )
  from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_mask as masks,
  )
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


class CrossCache(NamedTuple):
  """Keys and values of a sequence other than the queries' (an encoder's
  output), computed once by `Attention.cross_cache` and only read after;
  heads-major, as `reference_attention` reads them.

  Its own type (a pytree, kept through jit, scan and while_loop) tells it
  from the self-attention cache, a dict {'k', 'v'} written at each call.
  """
  k_BxGxMxK: jax.Array
  v_BxGxMxK: jax.Array


class Attention(nnx.Module):
  """Multi-head attention of x's queries to the keys and values of x (self-
  attention) or of another sequence kv (cross-attention), optionally over a
  cache.

  `causal` (default cfg.causal) masks keys at later positions; `positional`
  False drops RoPE, ALiBi, T5's bias and the attention window: for cross-
  attention, whose queries and keys have positions in different sequences.
  H query heads share G = cfg.kv_heads key/value heads (G = H: multi-head,
  G = 1: multi-query, else grouped-query); the cache holds G heads.
  `cfg.attention_impl` 'reference' is `reference_attention` (attention
  dropout applies here only); 'xla' and 'cudnn' call
  `jax.nn.dot_product_attention` with that implementation (cuDNN's fused
  kernel on NVIDIA GPUs); 'splash' is the TPU kernel (`splash_attention`;
  for self-attention without a cache only, else the reference).
  """

  def __init__(self, cfg: layers.TransformerConfig, *, rngs, causal=None,
               positional=True):
    H, G, K, D = cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.embed_dim
    self.cfg = cfg
    self.causal = cfg.causal if causal is None else causal
    self.positional = positional
    # Separate projections keep 'heads' the major axis of each kernel's
    # output, so tensor parallelism splits whole heads.
    self.q = layers.Dense((D,), (H, K), ('embed', 'heads', 'kv'), cfg,
                          rngs=rngs)
    self.k, self.v = (
        layers.Dense((D,), (G, K), ('embed', 'heads', 'kv'), cfg, rngs=rngs)
        for _ in range(2))
    # Residual projections get GPT-2's depth-scaled init.
    self.out = layers.Dense((H, K), (D,), ('heads', 'kv', 'embed'), cfg,
                            rngs=rngs, std=cfg.residual_std)
    self.dropout = nnx.Dropout(cfg.dropout_at('attention'))
    self.dtype = layers.DTYPES[cfg.dtype]
    self.q_norm, self.k_norm = (
        (layers.LayerNorm(cfg, rngs=rngs, dim=K, rms=True) for _ in range(2))
        if cfg.qk_norm else (None, None))

  def _position(self, kind):
    return self.positional and self.cfg.position == kind

  def _keys_values(self, kv_BxMxD, kv_positions_BxM):
    """Keys (normed, rotated where the layer says so) and values of kv."""
    k_BxMxGxK, v_BxMxGxK = self.k(kv_BxMxD), self.v(kv_BxMxD)
    if self.k_norm is not None:
      k_BxMxGxK = self.k_norm(k_BxMxGxK)
    if self._position('rope'):  # Keys are rotated before they are cached.
      k_BxMxGxK = positions_lib.rope(k_BxMxGxK, kv_positions_BxM,
                                     self.cfg.rope_base)
    return k_BxMxGxK, v_BxMxGxK

  def cross_cache(self, kv_BxMxD, kv_positions_BxM=None) -> CrossCache:
    """The keys and values of kv (positions default 0..M-1), computed once:
    passed as `cache`, later calls attend to kv without projecting it."""
    if kv_positions_BxM is None:
      kv_positions_BxM = jnp.arange(kv_BxMxD.shape[1])[None]
    k_BxMxGxK, v_BxMxGxK = self._keys_values(kv_BxMxD, kv_positions_BxM)
    return CrossCache(swap_heads(k_BxMxGxK), swap_heads(v_BxMxGxK))

  def __call__(self, x_BxLxD, kv_BxMxD=None, *, positions_BxL,
               kv_positions_BxM=None, segment_ids_BxL=None,
               kv_segment_ids_BxM=None, cache=None, relative_NxH=None,
               deterministic=True, rngs=None):
    """The attention output [B, L, D] and the cache (None if not given).

    Self-attention unless kv is given (or `cache` is a `CrossCache`, which
    stands for kv and is returned unchanged). Key positions default to the
    queries' (self-attention) or 0..M-1; key segment ids to the queries'
    (see `attention_mask`). A self-attention cache (a dict {'k', 'v'} of
    [B, G, M, K] arrays, heads-major) gets this call's keys and values at
    `positions_BxL`, and attention reads all of it; a beam search's (with
    'ancestors', from `init_cache(beams=W)`) is read by `beam_attention`.
    `relative_NxH`: T5's bias table (shared by all layers, so the model
    passes it in) when cfg.position is 't5'.
    """
    cfg = self.cfg
    cross = kv_BxMxD is not None or isinstance(cache, CrossCache)
    if kv_BxMxD is not None and cache is not None:
      raise ValueError('kv and a cache: pass kv or its cross_cache')
    q_BxLxHxK = self.q(x_BxLxD)
    q_BxLxHxK = sharding.constrain(q_BxLxHxK, ('batch', None, 'heads', None))
    if self.q_norm is not None:
      q_BxLxHxK = self.q_norm(q_BxLxHxK)
    if self._position('rope'):
      q_BxLxHxK = positions_lib.rope(q_BxLxHxK, positions_BxL, cfg.rope_base)
    if kv_positions_BxM is None:
      kv_positions_BxM = (positions_BxL if not cross else jnp.arange(
          kv_BxMxD.shape[1] if cache is None else cache.k_BxGxMxK.shape[2]
      )[None])
    if isinstance(cache, CrossCache):
      k_BxGxMxK, v_BxGxMxK = cache
    else:
      k_BxMxGxK, v_BxMxGxK = self._keys_values(
          x_BxLxD if kv_BxMxD is None else kv_BxMxD, kv_positions_BxM)
    beams = isinstance(cache, dict) and 'ancestors' in cache
    if cache is not None and not cross:
      # Write this call's keys and values at their positions; attend over the
      # whole cache, masking the slots not yet written (positions > query).
      start = positions_BxL[0, 0]
      if beams:  # Each row its own slots (see `beam_attention`).
        cache = _write_beams(cache, k_BxMxGxK, v_BxMxGxK, start)
      else:
        cache = {name: jax.lax.dynamic_update_slice_in_dim(
                     cache[name], swap_heads(x).astype(cache[name].dtype),
                     start, 2)
                 for name, x in (('k', k_BxMxGxK), ('v', v_BxMxGxK))}
      k_BxGxMxK, v_BxGxMxK = cache['k'], cache['v']
      kv_positions_BxM = jnp.arange(
          cache['ancestors'].shape[-1] if beams else k_BxGxMxK.shape[2])[None]
    # Keys and values read from a cache are heads-major (see
    # `reference_attention`); this call's own, [B, M, G, K].
    major = cache is not None
    k, v = (k_BxGxMxK, v_BxGxMxK) if major else (k_BxMxGxK, v_BxMxGxK)
    k, v = k.astype(self.dtype), v.astype(self.dtype)
    H = q_BxLxHxK.shape[2]
    window = cfg.attention_window if self.positional else 0
    mask_BxLxM = attention_mask(positions_BxL, kv_positions_BxM,
                                segment_ids_BxL, kv_segment_ids_BxM,
                                causal=self.causal, window=window)
    bias_BxHxLxM = None
    if self._position('alibi'):
      bias_BxHxLxM = positions_lib.alibi_bias(
          positions_lib.alibi_slopes(H), positions_BxL, kv_positions_BxM)
    elif self._position('t5'):
      bias_BxHxLxM = positions_lib.relative_bias(
          relative_NxH, positions_BxL, kv_positions_BxM,
          cfg.relative_max_distance, bidirectional=not self.causal)
    if beams:
      y_BxLxHxK = beam_attention(q_BxLxHxK, k, v, cache['ancestors'],
                                 mask_BxLxM, bias_BxHxLxM)
    elif (cfg.attention_impl == 'splash' and cache is None and not cross
          and kv_segment_ids_BxM is None):  # The kernel: self-attention only.
      y_BxLxHxK = splash_attention(q_BxLxHxK, k, v, segment_ids_BxL,
                                   self.causal, window)
    elif cfg.attention_impl in ('reference', 'splash'):
      y_BxLxHxK = reference_attention(
          q_BxLxHxK, k, v, mask_BxLxM, bias_BxHxLxM,
          lambda p: self.dropout(p, deterministic=deterministic, rngs=rngs),
          heads_major=major)
    else:
      if major:
        k, v = swap_heads(k), swap_heads(v)
      y_BxLxHxK = jax.nn.dot_product_attention(
          q_BxLxHxK, k, v,
          bias=None if bias_BxHxLxM is None else bias_BxHxLxM.astype(
              self.dtype),
          mask=mask_BxLxM[:, None], implementation=cfg.attention_impl)
    return self.out(y_BxLxHxK), cache
