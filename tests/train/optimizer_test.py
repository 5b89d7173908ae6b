"""Tests of lm.train.optimizer: nanoGPT's schedule, the decay mask, clipping."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm import config as config_lib
from lm.parallel import sharding
from lm.train import optimizer as optimizer_lib
from lm.train import trainer as train
from lm.train import workdir as workdir_lib


def nanogpt_lr(it, lr=1e-3, min_lr=1e-4, warmup=100, decay=2000):
  """nanoGPT's get_lr, written out from its description."""
  if it < warmup:
    return lr * (it + 1) / (warmup + 1)
  if it > decay:
    return min_lr
  ratio = (it - warmup) / (decay - warmup)
  return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_schedule_matches_nanogpt():
  c = config_lib.default().optim
  fn = optimizer_lib.schedule(c, 2000)
  for step in [0, 1, 50, 99, 100, 101, 500, 1000, 1999, 2000, 2500]:
    np.testing.assert_allclose(fn(step), nanogpt_lr(step), rtol=1e-5)


def test_inverse_sqrt_schedule_matches_fairseq():
  c = config_lib.default().optim
  c.update(schedule='inverse_sqrt', lr=5e-4, warmup_steps=4000)
  fn = optimizer_lib.schedule(c, 100)  # The run's length does not matter.
  for step in [4000, 4001, 10_000, 16_000, 1_000_000]:
    # fairseq: decay_factor = lr * sqrt(warmup_updates); lr = it / sqrt(step).
    np.testing.assert_allclose(fn(step), 5e-4 * 4000**0.5 / step**0.5,
                               rtol=1e-5)
  np.testing.assert_allclose(fn(0), 5e-4 / 4001, rtol=1e-5)  # Same warmup.
  np.testing.assert_allclose(fn(3999), 5e-4 * 4000 / 4001, rtol=1e-5)


def test_decay_mask_spares_biases_norms_embeddings():
  params = {'wte': 1, 'wpe': 1, 'ln_f': {'scale': 1, 'bias': 1},
            'mlp': {'up': {'kernel': 1, 'bias': 1}}}
  mask = optimizer_lib.decay_mask(params)
  assert mask == {'wte': False, 'wpe': False,
                  'ln_f': {'scale': False, 'bias': False},
                  'mlp': {'up': {'kernel': True, 'bias': False}}}


def test_adamw_decays_only_kernels():
  c = config_lib.default().optim
  c.update(grad_clip=0.0, weight_decay=0.5, warmup_steps=0)
  tx = optimizer_lib.make(c, 10)
  params = {'kernel': jnp.ones(3), 'bias': jnp.ones(3)}
  zero = {'kernel': jnp.zeros(3), 'bias': jnp.zeros(3)}
  updates, _ = tx.update(zero, tx.init(params), params)
  assert float(updates['bias'][0]) == 0.0
  np.testing.assert_allclose(updates['kernel'], -1e-3 * 0.5, rtol=1e-5)


def test_clipping_bounds_the_global_norm():
  c = config_lib.default().optim
  c.update(name='sgd', momentum=0.0, weight_decay=0.0, warmup_steps=0,
           lr=1.0, min_lr=1.0, grad_clip=1.0)
  tx = optimizer_lib.make(c, 10)
  params = {'kernel': jnp.zeros(4)}
  updates, _ = tx.update({'kernel': jnp.full(4, 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(optax.tree.norm(updates), 1.0, rtol=1e-5)


def test_bfloat16_state_halves_memory_and_tracks_float32(test_config):
  c32 = workdir_lib.resolve(test_config, 65)
  c16 = c32.copy_and_resolve_references()
  c16.optim.state_dtype = 'bfloat16'
  mesh = sharding.make_mesh(c32.mesh, jax.devices()[:1])
  t32, t16 = train.Trainer(c32, mesh), train.Trainer(c16, mesh)
  s32, s16 = t32.init(jax.random.PRNGKey(0)), t16.init(jax.random.PRNGKey(0))
  size = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
  assert size(s16['opt_state']) < 0.51 * size(s32['opt_state'])
  floats = [x for x in jax.tree.leaves(s16['opt_state'])
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.bfloat16 for x in floats)
  # Parameters stay float32 (the master weights) and the state's shardings
  # are the parameters'.
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s16['params']))
  rng = np.random.default_rng(0)
  for _ in range(5):
    ids = rng.integers(0, 65, (8, 17), dtype=np.int32)
    batch = {'inputs': ids[:, :-1], 'targets': ids[:, 1:]}
    s32, m32 = t32.train_step(s32, t32.global_batch(batch))
    s16, m16 = t16.train_step(s16, t16.global_batch(batch))
  assert float(m16['train/loss']) == pytest.approx(float(m32['train/loss']),
                                                   rel=1e-3)
  # The rounding of the stored moments is visible in the parameters.
  diffs = jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.abs(a - b).max()), s16['params'], s32['params']))
  assert 0 < max(diffs) < 1e-3


def encoder_params():
  ones = jnp.ones((3, 2))
  return {'encoder': {'wte': ones, 'wpe': ones, 'wtt': ones,
                      'blocks': {0: {'mlp': {'up': {'kernel': ones}}}}},
          'head': {'out': {'kernel': ones, 'bias': jnp.ones(2)}}}


def one_update(grads=None, **optim):
  c = config_lib.default().optim
  c.update(name='sgd', momentum=0.0, weight_decay=0.0, grad_clip=0.0,
           warmup_steps=0, lr=0.1, min_lr=0.1)
  c.update(**optim)
  tx = optimizer_lib.make(c, 10)
  params = encoder_params()
  grads = grads or jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_param_groups_of_an_encoder_and_a_gpt():
  groups = jax.tree_util.tree_map_with_path(optimizer_lib.param_group,
                                            encoder_params())
  assert groups['encoder']['wte'] == groups['encoder']['wtt'] == 'embeddings'
  assert groups['encoder']['blocks'][0]['mlp']['up']['kernel'] == 'encoder'
  assert groups['head']['out']['bias'] == 'head'
  gpt = jax.tree_util.tree_map_with_path(
      optimizer_lib.param_group, {'wte': 0, 'blocks': {0: {'w': 0}}})
  assert gpt == {'wte': 'embeddings', 'blocks': {0: {'w': 'head'}}}


def test_frozen_embeddings_and_a_lower_encoder_rate():
  plain = one_update()
  assert float(plain['encoder']['wte'][0, 0]) == pytest.approx(-0.1)
  u = one_update(freeze_embeddings=True, encoder_lr_scale=0.25)
  for name in ('wte', 'wpe', 'wtt'):
    assert not np.asarray(u['encoder'][name]).any()  # Never moved.
  assert float(u['encoder']['blocks'][0]['mlp']['up']['kernel'][0, 0]
               ) == pytest.approx(-0.025)
  assert float(u['head']['out']['kernel'][0, 0]) == pytest.approx(-0.1)
  scaled = one_update(encoder_lr_scale=0.5)  # Embeddings train, scaled too.
  assert float(scaled['encoder']['wte'][0, 0]) == pytest.approx(-0.05)


def test_layer_wise_decay_scales_each_block_by_depth():
  params = encoder_params()
  blocks = params['encoder']['blocks']
  blocks[1] = blocks[2] = blocks[0]
  params['encoder']['ln_f'] = {'scale': jnp.ones(2)}
  c = config_lib.default().optim
  c.update(warmup_steps=0, lr=0.1, min_lr=0.1, grad_clip=0.0,
           layer_lr_decay=0.5, encoder_lr_scale=0.5)
  for name in ('adamw', 'sgd'):
    c.name = name
    tx = optimizer_lib.make(c, 10)
    grads = jax.tree.map(jnp.ones_like, params)
    u = tx.update(grads, tx.init(params), params)[0]
    c.layer_lr_decay = 1.0
    flat = optimizer_lib.make(c, 10)
    c.layer_lr_decay = 0.5
    v = flat.update(grads, flat.init(params), params)[0]
    ratio = jax.tree.map(lambda a, b: float(a.ravel()[0] / b.ravel()[0]), u, v)
    # 3 blocks: block i at 0.5^(3 - i), embeddings at 0.5^4; the final norm
    # and the head at the (encoder's) rate.
    assert [ratio['encoder']['blocks'][i]['mlp']['up']['kernel']
            for i in range(3)] == pytest.approx([0.125, 0.25, 0.5])
    assert ratio['encoder']['wte'] == ratio['encoder']['wtt'] == (
        pytest.approx(0.0625))
    assert ratio['encoder']['ln_f']['scale'] == pytest.approx(1.0)
    assert ratio['head']['out']['kernel'] == pytest.approx(1.0)


def test_frozen_gradients_do_not_count_towards_clipping():
  grads = jax.tree.map(jnp.ones_like, encoder_params())
  grads['encoder']['wte'] = grads['encoder']['wte'] * 1e6  # Huge, frozen.
  # Trainable: the encoder kernel (6 ones), the head kernel (6) and bias (2),
  # norm sqrt(14) > the clip of 1: scaled by 1/sqrt(14), whatever wte's.
  u = one_update(grads, freeze_embeddings=True, grad_clip=1.0)
  assert not np.asarray(u['encoder']['wte']).any()
  assert float(u['head']['out']['kernel'][0, 0]) == pytest.approx(
      -0.1 / np.sqrt(14), rel=1e-5)


def test_embedding_tables_at_any_depth_freeze_or_scale():
  # pylint: disable=g-import-not-at-top
  from flax import nnx
  from lm.models import encoder_decoder
  from lm.models import layers
  from lm.models import transformer
  cfg = layers.TransformerConfig(vocab_size=11, num_layers=1, num_heads=2,
                                 embed_dim=8, mlp_dim=16, max_len=8,
                                 position='learned', share_embeddings=False)
  for model in (encoder_decoder.EncoderDecoder(cfg, rngs=nnx.Rngs(0)),
                transformer.GPT(cfg, rngs=nnx.Rngs(0))):
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    groups = jax.tree_util.tree_map_with_path(optimizer_lib.param_group,
                                              params)
    tables = [g for path, g in jax.tree_util.tree_leaves_with_path(groups)
              if any(getattr(k, 'key', None) in ('wte', 'wpe') for k in path)]
    assert tables and set(tables) == {'embeddings'}
    frozen = _sgd_update(params, freeze_embeddings=True)
    half = _sgd_update(params, embedding_lr_scale=0.5)
    for path, g in jax.tree_util.tree_leaves_with_path(groups):
      f = _at(frozen, path)
      h = _at(half, path)
      if g == 'embeddings':
        assert not np.asarray(f).any()
        np.testing.assert_allclose(h, -0.05)
      else:
        np.testing.assert_allclose(f, -0.1)
        np.testing.assert_allclose(h, -0.1)


def test_embedding_tables_tokens_freezes_the_word_vectors_alone():
  # Pretrained word vectors frozen beside learned positions that train.
  from flax import nnx
  from lm.models import layers
  from lm.models import transformer
  cfg = layers.TransformerConfig(vocab_size=11, num_layers=1, num_heads=2,
                                 embed_dim=8, mlp_dim=16, max_len=8,
                                 position='learned', tie_embeddings=False)
  params = nnx.to_pure_dict(nnx.state(transformer.GPT(cfg, rngs=nnx.Rngs(0)),
                                      nnx.Param))
  for optim in ({'freeze_embeddings': True},
                {'embedding_lr_scale': 0.5}):
    every = _sgd_update(params, **optim)
    tokens = _sgd_update(params, embedding_tables='tokens', **optim)
    table = -0.05 if 'embedding_lr_scale' in optim else 0.0
    np.testing.assert_allclose(every['wte'], table)
    np.testing.assert_allclose(tokens['wte'], table)
    np.testing.assert_allclose(every['wpe'], table)
    np.testing.assert_allclose(tokens['wpe'], -0.1)
    np.testing.assert_allclose(tokens['head'], -0.1)


def _at(tree, path):
  for k in path:
    tree = tree[getattr(k, 'key', getattr(k, 'idx', None))]
  return tree


def _sgd_update(params, **optim):
  c = config_lib.default().optim
  c.update(name='sgd', momentum=0.0, weight_decay=0.0, grad_clip=0.0,
           warmup_steps=0, lr=0.1, min_lr=0.1)
  c.update(**optim)
  tx = optimizer_lib.make(c, 10)
  grads = jax.tree.map(jnp.ones_like, params)
  return tx.update(grads, tx.init(params), params)[0]


def test_freeze_and_scale_together_is_refused():
  c = config_lib.default()
  c.optim.update(freeze_embeddings=True, embedding_lr_scale=0.1)
  with pytest.raises(config_lib.ConfigError, match='not both'):
    config_lib.validate(c)
  c.optim.update(freeze_embeddings=False, embedding_lr_scale=-1.0)
  with pytest.raises(config_lib.ConfigError, match='must be >= 0'):
    config_lib.validate(c)
  c.optim.update(embedding_lr_scale=1.0, embedding_tables='token')
  with pytest.raises(config_lib.ConfigError, match="'all' or 'tokens'"):
    config_lib.validate(c)
