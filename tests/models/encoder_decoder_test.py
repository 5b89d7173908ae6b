"""Tests of lm.models.encoder_decoder: causality, padding, cached decoding,
rows per source, shared embeddings, scanned layers, scaled embeddings."""

import dataclasses

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.models import encoder_decoder
from lm.models import layers
from lm.models import transformer

V, B, M, L = 13, 2, 6, 5
CFG = layers.TransformerConfig(vocab_size=V, num_layers=2, num_heads=2,
                               embed_dim=16, mlp_dim=32, max_len=8,
                               decoder_layers=3)
# Source rows: the second ends in two padding positions.
SOURCE_SEGMENTS = jnp.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


def model(seed=0, **changes):
  return encoder_decoder.EncoderDecoder(dataclasses.replace(CFG, **changes),
                                        rngs=nnx.Rngs(seed))


def tokens(seed, *shape):
  return jax.random.randint(jax.random.key(seed), shape, 1, V)


def logits(m, source, target):
  return m(source, target, source_segment_ids_BxM=SOURCE_SEGMENTS)


def test_parameters_sit_under_encoder_and_decoder_with_shared_embedding():
  m = model()
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  assert set(params) == {'encoder', 'decoder'}
  assert 'head' not in params['encoder']
  assert len(params['decoder']['blocks']) == 3
  assert 'cross_attn' in params['decoder']['blocks'][0]
  assert 'cross_attn' not in params['encoder']['blocks'][0]
  assert m.decoder.wte is m.encoder.wte  # One table, stored once.
  shared = transformer.count_params(params)
  separate = transformer.count_params(
      nnx.to_pure_dict(nnx.state(model(share_embeddings=False), nnx.Param)))
  assert separate - shared == V * CFG.embed_dim
  # Every parameter names its logical axes, so the mesh rules apply.
  for leaf in jax.tree.leaves(nnx.state(m, nnx.Param),
                              is_leaf=lambda x: isinstance(x, nnx.Variable)):
    assert len(leaf.get_metadata()['out_sharding']) == leaf[...].ndim


@pytest.mark.parametrize('position', ['learned', 'rope', 't5'])
def test_the_decoder_is_causal(position):
  m = model(position=position)
  source, target = tokens(1, B, M), tokens(2, B, L)
  base = logits(m, source, target)
  changed = logits(m, source, target.at[:, 3].set(0))
  chex.assert_trees_all_close(changed[:, :3], base[:, :3], atol=1e-6)
  assert np.abs(np.asarray(changed[:, 3:] - base[:, 3:])).max() > 1e-4


def test_source_padding_is_seen_nowhere():
  m = model()
  source, target = tokens(1, B, M), tokens(2, B, L)
  encoded = m.encode(source, SOURCE_SEGMENTS)
  other = source.at[1, 4:].set(0)  # Other tokens in the padding.
  chex.assert_trees_all_close(m.encode(other, SOURCE_SEGMENTS)[1, :4],
                              encoded[1, :4], atol=1e-6)
  # Neither the encoder's real positions nor the decoder (cross-attention)
  # read the padding.
  chex.assert_trees_all_close(logits(m, other, target), logits(m, source,
                                                               target),
                              atol=1e-6)
  # A real source token is read.
  assert np.abs(np.asarray(logits(m, source.at[1, 0].set(0), target)[1] -
                           logits(m, source, target)[1])).max() > 1e-4


@pytest.mark.parametrize('changes', [
    {}, {'norm_position': 'post'}, {'position': 'sinusoidal',
                                    'scale_embeddings': True},
    {'position': 'alibi', 'num_kv_heads': 1}, {'scan_layers': True}])
def test_cached_decoding_equals_the_full_forward_pass(changes):
  m = model(**changes)
  source, target = tokens(1, B, M), tokens(2, B, L)
  full = logits(m, source, target)
  caches = m.cross_caches(m.encode(source, SOURCE_SEGMENTS))
  cache, steps = m.init_cache(B), []
  for t in range(L):
    step, cache = m.decode(target[:, t:t + 1], positions=jnp.array([t]),
                           source_segment_ids_BxM=SOURCE_SEGMENTS,
                           cross_caches=caches, cache=cache)
    steps.append(step)
  chex.assert_trees_all_close(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_several_rows_per_source_read_its_cross_cache_without_copies():
  m = model()
  source, W = tokens(1, B, M), 3
  target_BWxL = tokens(2, B * W, L)  # W rows per source, source order.
  encoded = m.encode(source, SOURCE_SEGMENTS)
  folded, _ = m.decode(target_BWxL, source_segment_ids_BxM=SOURCE_SEGMENTS,
                       cross_caches=m.cross_caches(encoded))
  want = m(jnp.repeat(source, W, axis=0), target_BWxL,
           source_segment_ids_BxM=jnp.repeat(SOURCE_SEGMENTS, W, axis=0))
  chex.assert_trees_all_close(folded, want, atol=1e-5)


def test_scanned_layers_equal_the_plain_stack():
  plain, scanned = model(), model(scan_layers=True)
  p = nnx.to_pure_dict(nnx.state(plain, nnx.Param))
  nnx.update(scanned, {part: transformer.stack_layers(p[part])
                       for part in ('encoder', 'decoder')})
  source, target = tokens(1, B, M), tokens(2, B, L)
  chex.assert_trees_all_close(logits(scanned, source, target),
                              logits(plain, source, target), atol=1e-5)


def test_scaled_embeddings_enter_the_blocks_at_unit_scale():
  m = model(embed_dim=64, scale_embeddings=True, position='none')
  wte = np.asarray(m.encoder.wte[...])
  assert np.std(wte) == pytest.approx(64**-0.5, rel=0.1)
  assert np.std(wte * 8.0) == pytest.approx(1.0, rel=0.1)
  unscaled = model(embed_dim=64, position='none')
  assert np.std(np.asarray(unscaled.encoder.wte[...])) == pytest.approx(
      0.02, rel=0.1)
