"""Tests of lm.train: learning, sharded equivalence, gradient accumulation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import config as config_lib
from lm.parallel import sharding
from lm.tasks import base
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib


def configure(c, **mesh):
  c.mesh.update(mesh or {'data': 1, 'fsdp': 1, 'tensor': 1})
  config_lib.validate(c)
  return workdir_lib.resolve(c, 65)


def make_trainer(c, devices=None):
  return train_lib.Trainer(c, sharding.make_mesh(c.mesh, devices))


def random_batch(c, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, c.model.vocab_size,
                   (c.data.batch_size, c.model.max_len + 1), dtype=np.int32)
  return {'inputs': x[:, :-1], 'targets': x[:, 1:]}


def test_initial_loss_is_log_vocab(test_config):
  c = configure(test_config)
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  loss = t.eval_step(state['params'], t.global_batch(random_batch(c)))
  np.testing.assert_allclose(loss, np.log(65), atol=0.05)


def test_loss_falls_when_overfitting_one_batch(test_config):
  c = configure(test_config)
  c.optim.update(warmup_steps=0, lr=3e-3, min_lr=3e-3)
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  batch = t.global_batch(random_batch(c))
  losses = []
  for _ in range(60):
    state, m = t.train_step(state, batch)
    losses.append(float(m['train/loss']))
  assert losses[-1] < 0.5 * losses[0], losses[::10]
  assert int(state['step']) == 60


def test_one_device_and_data_fsdp_tensor_mesh_agree(test_config):
  assert jax.device_count() == 8, 'conftest sets 8 CPU devices'
  c1 = configure(test_config.copy_and_resolve_references())
  c8 = configure(test_config.copy_and_resolve_references(), data=2, fsdp=2,
                 tensor=2)
  t1, t8 = make_trainer(c1, jax.devices()[:1]), make_trainer(c8)
  assert dict(t8.mesh.shape) == {'data': 2, 'fsdp': 2, 'tensor': 2}
  s1, s8 = t1.init(jax.random.PRNGKey(0)), t8.init(jax.random.PRNGKey(0))
  # Parameters really are split: a kernel [embed, mlp] over fsdp x tensor.
  up = s8['params']['blocks'][0]['mlp']['up']['kernel']
  assert tuple(up.sharding.spec) == ('fsdp', 'tensor')
  assert up.addressable_shards[0].data.shape == (16, 64)
  chex.assert_trees_all_close(jax.device_get(s1['params']),
                              jax.device_get(s8['params']))
  batch = random_batch(c1)
  b1, b8 = t1.global_batch(batch), t8.global_batch(batch)
  g1 = jax.jit(jax.grad(t1.loss))(s1['params'], b1)
  g8 = jax.jit(jax.grad(t8.loss))(s8['params'], b8)
  chex.assert_trees_all_close(jax.device_get(g1), jax.device_get(g8),
                              atol=1e-6, rtol=1e-4)
  for step in range(3):
    s1, m1 = t1.train_step(s1, t1.global_batch(random_batch(c1, step)))
    s8, m8 = t8.train_step(s8, t8.global_batch(random_batch(c8, step)))
    np.testing.assert_allclose(m1['train/loss'], m8['train/loss'], rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(s1['params']),
                              jax.device_get(s8['params']), atol=1e-5)


def test_gradient_accumulation_matches_one_big_batch(test_config):
  c1 = configure(test_config.copy_and_resolve_references())
  c2 = configure(test_config.copy_and_resolve_references())
  c2.optim.grad_accum_steps = 4
  t1, t2 = make_trainer(c1, jax.devices()[:1]), make_trainer(c2,
                                                             jax.devices()[:1])
  batch = random_batch(c1)
  s1, m1 = t1.train_step(t1.init(jax.random.PRNGKey(0)), t1.global_batch(batch))
  s2, m2 = t2.train_step(t2.init(jax.random.PRNGKey(0)), t2.global_batch(batch))
  np.testing.assert_allclose(m1['train/loss'], m2['train/loss'], rtol=1e-5)
  np.testing.assert_allclose(m1['train/grad_norm'], m2['train/grad_norm'],
                             rtol=1e-4)
  chex.assert_trees_all_close(s1['params'], s2['params'], atol=1e-6)


@pytest.mark.parametrize('name', ['adam', 'sgd'])
def test_other_optimizers_train(test_config, name):
  c = configure(test_config)
  c.optim.update(name=name, warmup_steps=0, lr=0.1 if name == 'sgd' else 3e-3,
                 min_lr=0.0)
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  batch = t.global_batch(random_batch(c))
  first = None
  for _ in range(20):
    state, m = t.train_step(state, batch)
    first = first or float(m['train/loss'])
  assert float(m['train/loss']) < first


def test_train_step_donates_the_old_state(test_config):
  c = configure(test_config)
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  old = state['params']['wte']
  t.train_step(state, t.global_batch(random_batch(c)))
  assert old.is_deleted()


@pytest.mark.parametrize('state_dtype, scan', [('float32', False),
                                               ('bfloat16', True)])
def test_every_parameter_and_optimizer_leaf_follows_the_rules(test_config,
                                                              state_dtype,
                                                              scan):
  c = configure(test_config.copy_and_resolve_references(), data=2, fsdp=2,
                tensor=2)
  c.optim.state_dtype = state_dtype
  c.model.scan_layers = scan  # Stacked layers: a leading, unsharded axis.
  t = make_trainer(c)
  state = t.init(jax.random.PRNGKey(0))
  rules = tuple(c.mesh.rules)
  # Each parameter: the rules' spec for its logical names (dims the axes
  # do not divide, like the 65-character vocabulary, stay whole).
  flat_params = jax.tree_util.tree_leaves_with_path(state['params'])
  names = dict(jax.tree_util.tree_leaves_with_path(
      t.param_names, is_leaf=lambda x: isinstance(x, tuple)))
  for path, x in flat_params:
    want = sharding.fitted_spec(x.shape, names[path], t.mesh, rules)
    assert x.sharding.spec == want, jax.tree_util.keystr(path)
  sharded = [p for p, x in flat_params if any(x.sharding.spec)]
  assert len(sharded) > len(flat_params) // 2
  # Adam's moments: laid out exactly as their parameters.
  by_param = {jax.tree_util.keystr(p): x.sharding for p, x in flat_params}
  moments = 0
  for path, x in jax.tree_util.tree_leaves_with_path(state['opt_state']):
    if x.ndim:
      key = jax.tree_util.keystr(path)
      param = next(k for k in by_param if key.endswith(k))
      assert x.sharding.is_equivalent_to(by_param[param], x.ndim), key
      moments += 1
  assert moments == 2 * len(flat_params)


def test_the_moving_average_follows_the_parameters(test_config):
  c = test_config.copy_and_resolve_references()
  c.train.ema_decay = 0.75
  c = configure(c)
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  ema = jax.device_get(state['params'])
  chex.assert_trees_all_equal(jax.device_get(state['ema']), ema)
  for seed in range(3):
    state, _ = t.train_step(state, t.global_batch(random_batch(c, seed)))
    params = jax.device_get(state['params'])
    ema = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, ema, params)
    chex.assert_trees_all_close(jax.device_get(state['ema']), ema,
                                rtol=1e-6, atol=1e-7)
  assert not np.allclose(ema['wte'], params['wte'])
  chex.assert_trees_all_equal(jax.device_get(train_lib.model_params(state)),
                              jax.device_get(state['ema']))
  assert train_lib.model_params({'params': 1}) == 1
  # A fresh run (e.g. after init_from) restarts the average at its
  # parameters, laid out as they are.
  state = t.restart_ema(state)
  chex.assert_trees_all_equal(jax.device_get(state['ema']), params)
  assert state['ema']['wte'].sharding == state['params']['wte'].sharding
  state, _ = t.train_step(state, t.global_batch(random_batch(c)))  # Donated.
  # bfloat16 parameters: the average is kept in float32, used in bfloat16.
  c.model.param_dtype = 'bfloat16'
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  state, _ = t.train_step(state, t.global_batch(random_batch(c)))
  assert state['ema']['wte'].dtype == jnp.float32
  assert train_lib.model_params(state)['wte'].dtype == jnp.bfloat16


def test_a_nonfinite_step_is_skipped_and_recorded(test_config):
  c = configure(test_config.copy_and_resolve_references())
  t = make_trainer(c, jax.devices()[:1])
  state = t.init(jax.random.PRNGKey(0))
  state, _ = t.train_step(state, t.global_batch(random_batch(c)))
  before = jax.device_get(state)
  bad = random_batch(c, 1)
  bad['weights'] = np.ones(bad['inputs'].shape, np.float32)
  bad['weights'][3, 5] = np.nan  # One poisoned position.
  good = {**random_batch(c, 2), 'weights': np.ones_like(bad['weights'])}
  state, metrics = t.train_step(state, t.global_batch(bad))
  assert np.isnan(float(metrics['train/loss']))
  after = jax.device_get(state)
  chex.assert_trees_all_equal(after['params'], before['params'])
  chex.assert_trees_all_equal(after['opt_state'], before['opt_state'])
  assert int(after['step']) == 2  # The step still counts.
  assert {k: int(v) for k, v in after['nonfinite'].items()} == {
      'count': 1, 'first_step': 2, 'first_leaf': 0}
  assert t.nonfinite_leaf(0).startswith('gradient of params[')
  state, metrics = t.train_step(state, t.global_batch(good))
  assert np.isfinite(float(metrics['train/loss']))
  assert int(metrics['train/nonfinite_steps']) == 1
  assert not np.allclose(jax.device_get(state['params'])['wte'],
                         before['params']['wte'])


def encoder_trainer(task):
  """(trainer, config) of the test encoder for `task`, 65 tokens, and a
  batch of 4 masked rows of 16 ([CLS] 14 pieces [SEP])."""
  from conftest import load_config  # pylint: disable=g-import-not-at-top

  from lm.data import masking  # pylint: disable=g-import-not-at-top
  c = load_config('bert_wikitext2', 'test')
  c.task = task
  c.data.batch_size = 4
  c = configure(c)
  spec = masking.MaskSpec(mask_id=3, vocab_size=65, special_ids=(0, 1, 2, 3))
  rng = np.random.default_rng(0)
  rows = [masking.mask_tokens(np.concatenate(
      [[1], rng.integers(4, 65, 14), [2]]).astype(np.int32), rng, spec)
          for _ in range(4)]
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  return make_trainer(c, jax.devices()[:1]), c, batch


def test_masked_lm_scores_only_the_chosen_positions():
  t, _, batch = encoder_trainer('masked_lm')
  params = t.init(jax.random.PRNGKey(0))['params']
  # round(15% of 14) = 2 chosen a row: only those reach the output layer.
  logits, targets, weights = t.scored(params, batch)
  assert logits.shape == (4, 2, 65) and weights.sum() == 8
  full = t.logits(params, batch)
  assert full.shape == (4, 16, 65)
  np.testing.assert_allclose(
      t.loss(params, batch),
      base.cross_entropy(full, batch['targets'], batch['weights']),
      rtol=1e-5)
  # A target at an unchosen position never counts.
  other = dict(batch, targets=np.where(batch['weights'] > 0,
                                       batch['targets'], 7))
  assert float(t.loss(params, other)) == float(t.loss(params, batch))
  sums = t.sums_step(params, t.global_batch(batch))
  assert float(sums['count']) == 8


def test_replaced_token_loss_is_the_generators_plus_the_weighted_detection():
  t, c, batch = encoder_trainer('replaced_token')
  state = t.init(jax.random.PRNGKey(0))
  params = state['params']
  assert set(params) == {'encoder', 'head', 'generator'}
  d = t.task.detect(t.merge(params), batch)
  assert d.logits.shape == (4, 2, 65) and float(d.weights.sum()) == 8
  assert float(d.real.sum()) == 64  # Every token of every row.
  assert float((d.replaced * (batch['weights'] == 0)).sum()) == 0
  assert float(d.replaced.sum()) > 0  # An untrained generator rarely agrees.
  np.testing.assert_allclose(
      t.loss(params, batch),
      base.cross_entropy(d.logits, d.targets, d.weights) +
      c.optim.detection_weight * d.bce.mean(), rtol=1e-5)
  # A row with nothing chosen (evaluation filler) counts no token.
  filler = dict(batch, weights=batch['weights'] * np.array([[1], [1], [1],
                                                            [0]]))
  sums = jax.device_get(t.sums_step(params, t.global_batch(filler)))
  assert float(sums['detection_count']) == 48
  assert float(sums['detection_correct']) == float(
      (d.correct * d.real)[:3].sum())
  assert float(sums['count']) == float(batch['weights'][:3].sum())
  first = float(t.loss(params, batch))
  for _ in range(15):
    state, _ = t.train_step(state, t.global_batch(batch))
  assert float(t.loss(state['params'], batch)) < first
