"""Tests of lm.models.attention's cross-attention: masks with separate query
and key segment ids, the `Attention` layer against hand-written einsums, the
read-only cross cache, and the transformer `Block` with a cross sub-layer."""

import dataclasses
import math

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.models import attention as attention_lib
from lm.models import layers
from lm.models import transformer

CFG = layers.TransformerConfig(vocab_size=37, num_layers=2, num_heads=4,
                               embed_dim=32, mlp_dim=64, max_len=16)
B, L, M, D = 2, 5, 7, 32
# Row 0 attends to all 7 encoder positions, row 1 to its first 4 (3 padded).
KV_SEGMENT_IDS_BxM = jnp.array([[1] * 7, [1] * 4 + [0] * 3])


def variant(**kw):
  return dataclasses.replace(CFG, **kw)


def normal(seed, *shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def positions(length):
  return jnp.arange(length)[None]


def params_of(module):
  return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def einsum_cross_attention(p, x_BxLxD, kv_BxMxD, valid_BxM, H, G):
  """Cross-attention spelled out: project, scale, mask, softmax, mix, out."""
  proj = lambda w, t: jnp.einsum('BLD,DHK->BLHK', t, w['kernel']) + w['bias']
  q_BxLxHxK = proj(p['q'], x_BxLxD)
  k_BxMxGxK, v_BxMxGxK = proj(p['k'], kv_BxMxD), proj(p['v'], kv_BxMxD)
  K = q_BxLxHxK.shape[-1]
  # Query head h reads key/value head h // (H / G).
  k_BxMxHxK = jnp.repeat(k_BxMxGxK, H // G, axis=2)
  v_BxMxHxK = jnp.repeat(v_BxMxGxK, H // G, axis=2)
  logits_BxHxLxM = jnp.einsum('BLHK,BMHK->BHLM', q_BxLxHxK,
                              k_BxMxHxK) / math.sqrt(K)
  logits_BxHxLxM = jnp.where(valid_BxM[:, None, None], logits_BxHxLxM,
                             -jnp.inf)
  probs_BxHxLxM = jax.nn.softmax(logits_BxHxLxM, axis=-1)
  y_BxLxHxK = jnp.einsum('BHLM,BMHK->BLHK', probs_BxHxLxM, v_BxMxHxK)
  return (jnp.einsum('BLHK,HKD->BLD', y_BxLxHxK, p['out']['kernel']) +
          p['out']['bias'])


def test_attention_mask_separate_query_and_key_segment_ids():
  q_seg, k_seg = jnp.array([[1, 1, 2]]), jnp.array([[1, 2, 2, 0]])
  mask = attention_lib.attention_mask(positions(3), positions(4), q_seg,
                                      k_seg, causal=False)
  assert np.asarray(mask[0]).tolist() == [[True, False, False, False],
                                          [True, False, False, False],
                                          [False, True, True, False]]
  # Causal order still comes from the positions.
  mask = attention_lib.attention_mask(positions(3), positions(4), q_seg,
                                      k_seg)
  assert np.asarray(mask[0, 2]).tolist() == [False, True, True, False]
  # Key ids default to the query ids (self-attention), as before.
  seg = jnp.array([[1, 1, 2, 2]])
  chex.assert_trees_all_equal(
      attention_lib.attention_mask(positions(4), positions(4), seg),
      attention_lib.attention_mask(positions(4), positions(4), seg, seg))
  # Key ids alone: every query is a real token (segment 1); padding masked.
  mask = attention_lib.attention_mask(positions(2), positions(4), None,
                                      k_seg, causal=False)
  assert np.asarray(mask[0]).tolist() == [[True, False, False, False]] * 2


@pytest.mark.parametrize('kw', [{}, dict(num_kv_heads=2),
                                dict(num_kv_heads=1),
                                dict(num_kv_heads=2, attention_impl='xla'),
                                dict(position='rope', attention_window=2)],
                         ids=str)
def test_cross_attention_equals_the_einsum_reference(kw):
  cfg = variant(**kw)
  attn = attention_lib.Attention(cfg, rngs=nnx.Rngs(0), causal=False,
                                 positional=False)
  x_BxLxD, kv_BxMxD = normal(1, B, L, D), normal(2, B, M, D)
  y_BxLxD, cache = attn(x_BxLxD, kv_BxMxD, positions_BxL=positions(L),
                        kv_segment_ids_BxM=KV_SEGMENT_IDS_BxM)
  assert y_BxLxD.shape == (B, L, D) and cache is None
  want = einsum_cross_attention(params_of(attn), x_BxLxD, kv_BxMxD,
                                KV_SEGMENT_IDS_BxM == 1, cfg.num_heads,
                                cfg.kv_heads)
  chex.assert_trees_all_close(y_BxLxD, want, atol=1e-5, rtol=1e-5)
  # Padded encoder positions are never read.
  garbage = kv_BxMxD.at[1, 4:].set(100.0)
  chex.assert_trees_all_close(
      attn(x_BxLxD, garbage, positions_BxL=positions(L),
           kv_segment_ids_BxM=KV_SEGMENT_IDS_BxM)[0], y_BxLxD, atol=1e-6)


@pytest.mark.parametrize('kw', [{}, dict(num_kv_heads=1, qk_norm=True)],
                         ids=str)
def test_cross_cache_is_read_only_and_equals_attending_to_kv(kw):
  attn = attention_lib.Attention(variant(**kw), rngs=nnx.Rngs(0),
                                 causal=False, positional=False)
  x_BxLxD, kv_BxMxD = normal(1, B, L, D), normal(2, B, M, D)
  call = dict(positions_BxL=positions(L),
              kv_segment_ids_BxM=KV_SEGMENT_IDS_BxM)
  want, _ = attn(x_BxLxD, kv_BxMxD, **call)
  cache = attn.cross_cache(kv_BxMxD)
  assert cache.k_BxGxMxK.shape == (B, attn.cfg.kv_heads, M, 8)
  kept = jax.tree.map(jnp.copy, cache)
  # The cache stands for kv: k and v are not projected again (NaN kernels
  # would show), and it comes back unchanged, through jit too.
  nnx.update(attn, {'k': {'kernel': jnp.full((D, attn.cfg.kv_heads, 8),
                                             jnp.nan)}})
  got, same = jax.jit(lambda c: attn(x_BxLxD, cache=c, **call))(cache)
  assert isinstance(same, attention_lib.CrossCache)
  chex.assert_trees_all_close(got, want, atol=1e-6)
  chex.assert_trees_all_equal(same, kept)
  chex.assert_trees_all_equal(cache, kept)
  # Decoding: one query at a time against the same cache.
  for t in (0, L - 1):
    step, _ = attn(x_BxLxD[:, t:t + 1], cache=cache, positions_BxL=
                   jnp.array([[t]]), kv_segment_ids_BxM=KV_SEGMENT_IDS_BxM)
    chex.assert_trees_all_close(step[:, 0], want[:, t], atol=1e-6)
  with pytest.raises(ValueError):
    attn(x_BxLxD, kv_BxMxD, cache=cache, **call)


@pytest.mark.parametrize('position', ['rope', 'alibi', 't5'])
def test_positional_false_ignores_positions(position):
  cfg = variant(position=position, attention_window=3)
  x_BxLxD = normal(1, B, L, D)
  relative_NxH = normal(3, cfg.relative_buckets, cfg.num_heads)
  shuffled = jnp.array([[3, 0, 4, 1, 2]])

  def outputs(**kw):
    attn = attention_lib.Attention(cfg, rngs=nnx.Rngs(0), causal=False, **kw)
    return [attn(x_BxLxD, positions_BxL=p, relative_NxH=relative_NxH)[0]
            for p in (positions(L), shuffled)]
  a, b = outputs(positional=False)
  chex.assert_trees_all_close(a, b, atol=1e-6)
  # Nor the window, whose distances are positional too.
  no_window = attention_lib.Attention(
      variant(position=position), rngs=nnx.Rngs(0), causal=False,
      positional=False)
  chex.assert_trees_all_close(no_window(
      x_BxLxD, positions_BxL=positions(L))[0], a, atol=1e-6)
  a, b = outputs(positional=True)
  assert np.abs(np.asarray(a - b)).max() > 1e-4


def test_causal_argument_overrides_the_config():
  x_BxLxD = normal(1, B, L, D)
  changed = x_BxLxD.at[:, -1].add(1.0)

  def first_changes(cfg, **kw):
    attn = attention_lib.Attention(cfg, rngs=nnx.Rngs(0), **kw)
    a, b = (attn(t, positions_BxL=positions(L))[0][:, 0]
            for t in (x_BxLxD, changed))
    return bool(np.abs(np.asarray(a - b)).max() > 1e-5)
  assert not first_changes(CFG) and first_changes(CFG, causal=False)
  bidirectional = variant(causal=False)
  assert first_changes(bidirectional)
  assert not first_changes(bidirectional, causal=True)


def block_pair(norm_position, seed=0):
  """A cross block and a plain block sharing its other parameters."""
  cfg = variant(norm_position=norm_position)
  cross = transformer.Block(cfg, rngs=nnx.Rngs(seed), cross=True)
  plain = transformer.Block(cfg, rngs=nnx.Rngs(seed + 1))
  p = params_of(cross)
  nnx.update(plain, {k: p[k] for k in ('ln1', 'attn', 'ln2', 'mlp')})
  return cross, plain


@pytest.mark.parametrize('norm_position', ['pre', 'post'])
def test_cross_block_parameters_and_zero_cross_output(norm_position):
  cross, plain = block_pair(norm_position)
  assert set(params_of(plain)) == {'ln1', 'attn', 'ln2', 'mlp'}
  p = params_of(cross)
  assert set(p) == {'ln1', 'attn', 'ln_cross', 'cross_attn', 'ln2', 'mlp'}
  assert p['cross_attn']['k']['kernel'].shape == (D, 4, 8)
  x_BxLxD, enc_BxMxD = normal(1, B, L, D), normal(2, B, M, D)
  call = dict(positions_BxL=positions(L), encoded_BxMxD=enc_BxMxD,
              encoded_segment_ids_BxM=KV_SEGMENT_IDS_BxM)
  y_BxLxD, cache = cross(x_BxLxD, **call)
  assert y_BxLxD.shape == (B, L, D) and cache is None
  want, _ = plain(x_BxLxD, positions_BxL=positions(L))
  assert np.abs(np.asarray(y_BxLxD - want)).max() > 1e-3
  # A zero cross-attention output leaves the block the plain block (post-
  # norm: ln_cross at init renorms an already normed x, ~ the identity).
  nnx.update(cross, {'cross_attn': {'out': {
      'kernel': jnp.zeros((4, 8, D)), 'bias': jnp.zeros((D,))}}})
  chex.assert_trees_all_close(cross(x_BxLxD, **call)[0], want, atol=1e-5)


@pytest.mark.parametrize('norm_position', ['pre', 'post'])
def test_cross_block_decodes_through_both_caches(norm_position):
  cross, _ = block_pair(norm_position)
  x_BxLxD, enc_BxMxD = normal(1, B, L, D), normal(2, B, M, D)
  enc = dict(encoded_segment_ids_BxM=KV_SEGMENT_IDS_BxM)
  full, _ = cross(x_BxLxD, positions_BxL=positions(L),
                  encoded_BxMxD=enc_BxMxD, **enc)
  # Still causal in the decoder's own sequence.
  later = x_BxLxD.at[:, 3].add(1.0)
  chex.assert_trees_all_close(cross(later, positions_BxL=positions(L),
                                    encoded_BxMxD=enc_BxMxD, **enc)[0][:, :3],
                              full[:, :3], atol=1e-6)
  # Self-attention cache written token by token; the cross cache only read.
  cross_cache = cross.cross_attn.cross_cache(enc_BxMxD)
  cache = {'k': jnp.zeros((B, 4, L, 8)), 'v': jnp.zeros((B, 4, L, 8))}
  steps = []
  for t in range(L):
    y, cache = cross(x_BxLxD[:, t:t + 1], positions_BxL=jnp.array([[t]]),
                     cross_cache=cross_cache, cache=cache, **enc)
    steps.append(y)
  chex.assert_trees_all_close(jnp.concatenate(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize('G,with_bias', [(4, False), (2, True), (1, True)])
def test_beam_attention_reads_each_rows_ancestors(G, with_bias):
  # S = 2 sources of W = 3 rows, L = 2 queries at positions 4, 5 of a cache
  # of 6; each row's keys gathered from its ancestors' slots by hand, then
  # the reference attention.
  S, W, Lq, T, H, K = 2, 3, 2, 6, 4, 8
  q_BxLxHxK = normal(0, S * W, Lq, H, K)
  k_SxWxTxGxK, v_SxWxTxGxK = normal(1, S, W, T, G, K), normal(2, S, W, T, G, K)
  ancestors_SxWxT = jax.random.randint(jax.random.key(3), (S, W, T), 0, W)
  mask_1xLxT = attention_lib.attention_mask(jnp.array([[4, 5]]),
                                            positions(T))
  bias_1xHxLxT = normal(4, 1, H, Lq, T) if with_bias else None
  # The slots, laid out as init_cache(beams=W) holds them.
  k_slots = k_SxWxTxGxK.transpose(0, 3, 4, 2, 1).reshape(S, G, K, T * W)
  v_slots = v_SxWxTxGxK.transpose(0, 3, 2, 1, 4).reshape(S, G, T * W, K)
  got = attention_lib.beam_attention(q_BxLxHxK, k_slots, v_slots,
                                     ancestors_SxWxT, mask_1xLxT,
                                     bias_1xHxLxT)
  s_ = jnp.arange(S)[:, None, None]
  t_ = jnp.arange(T)[None, None, :]
  own_k = k_SxWxTxGxK[s_, ancestors_SxWxT, t_].reshape(S * W, T, G, K)
  own_v = v_SxWxTxGxK[s_, ancestors_SxWxT, t_].reshape(S * W, T, G, K)
  want = attention_lib.reference_attention(
      q_BxLxHxK, attention_lib.swap_heads(own_k),
      attention_lib.swap_heads(own_v),
      jnp.broadcast_to(mask_1xLxT, (S * W, Lq, T)), bias_1xHxLxT,
      heads_major=True)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
