"""Tests of lm.tasks.translation: the label-smoothed loss, an exact resume
mid-epoch with token-count batches, and a run that ends in BLEU."""

import json

import chex
from conftest import SHARED_DATA
from conftest import load_config
from conftest import run_cli
from flax import nnx
import jax
import numpy as np
import optax
import pytest

from lm.train import loop
from lm.train import workdir as workdir_lib

needs_multi30k = pytest.mark.skipif(not (SHARED_DATA / 'multi30k').exists(),
                                    reason='no ../shared/data/multi30k')


def test_the_loss_is_optax_label_smoothed_cross_entropy():
  from lm import tasks  # pylint: disable=g-import-not-at-top
  c = load_config('multi30k', 'test')
  c.optim.label_smoothing = 0.1
  c = workdir_lib.resolve(c, 40)  # Vocabulary and dtype filled in.
  task = tasks.get(c)
  model = task.build(rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  batch = {'source': rng.integers(3, 40, (4, 8)).astype(np.int32),
           'source_segments': np.ones((4, 8), np.int32),
           'inputs': rng.integers(3, 40, (4, 8)).astype(np.int32),
           'targets': rng.integers(3, 40, (4, 8)).astype(np.int32),
           'weights': (rng.random((4, 8)) > 0.3).astype(np.float32)}
  logits = task.forward(model, batch)
  smoothed = optax.smooth_labels(jax.nn.one_hot(batch['targets'], 40), 0.1)
  per_token = optax.softmax_cross_entropy(logits, smoothed)
  want = (per_token * batch['weights']).sum() / batch['weights'].sum()
  np.testing.assert_allclose(task.loss(model, batch), want, rtol=1e-5)


@needs_multi30k
def test_resuming_mid_epoch_repeats_the_uninterrupted_run(tmp_path):
  c = load_config('multi30k', 'test')
  c.eval.final = False
  straight = loop.train_and_evaluate(c, str(tmp_path / 'a'))
  half = c.copy_and_resolve_references()
  half.train.num_steps = 3
  loop.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = loop.train_and_evaluate(c, str(tmp_path / 'b'))
  assert np.isfinite(straight.losses).all()
  assert resumed.losses[-3:] == straight.losses[-3:]


@needs_multi30k
def test_a_run_ends_with_the_test_set_bleu(tmp_path):
  c = load_config('multi30k', 'test')
  s = loop.train_and_evaluate(c, str(tmp_path))
  assert set(s.final) == {'validation', 'test'}
  results = json.loads((tmp_path / 'eval_results.json').read_text())
  for split, n in (('validation', 64), ('test', 32)):
    r = results[split]
    assert r['sentences'] == n and 0.0 <= r['bleu'] <= 100.0
    assert r['bleu_signature'].startswith('nrefs:1|case:mixed|eff:no|tok:13a')
    assert 0.0 <= r['chrf'] <= 100.0
    # Every sentence writes at least its EOS.
    assert r['tokens_per_sec'] >= r['sentences_per_sec'] > 0
  # Starting another run from it with another vocabulary: one line, nothing
  # trained.
  p = run_cli('lm.main', '--config=configs/multi30k.py:test',
              f'--workdir={tmp_path}/b', f'--config.init_from={tmp_path}',
              '--config.data.vocab_size=400')
  assert p.returncode == 2, p.stderr[-2000:]
  assert p.stderr.strip().splitlines() == [
      f'error: init_from={tmp_path} was trained with data.vocab_size=500, '
      'this run asks for 400: set data.vocab_size=500 (its tokenizer is '
      'reused)']
  assert not (tmp_path / 'b' / 'checkpoints').exists()


def test_one_device_and_a_2x2x2_mesh_give_the_same_loss_and_gradients():
  from lm import config as config_lib  # pylint: disable=g-import-not-at-top
  from lm.parallel import sharding  # pylint: disable=g-import-not-at-top
  from lm.train import trainer as train_lib  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 8, 'conftest sets 8 CPU devices'

  def trainer(devices=None, **mesh):
    c = load_config('multi30k', 'test')
    c.mesh.update(mesh or {'data': 1, 'fsdp': 1, 'tensor': 1})
    config_lib.validate(c)
    c = workdir_lib.resolve(c, 64)
    return train_lib.Trainer(c, sharding.make_mesh(c.mesh, devices))

  t1, t8 = trainer(jax.devices()[:1]), trainer(data=2, fsdp=2, tensor=2)
  s1, s8 = t1.init(jax.random.PRNGKey(0)), t8.init(jax.random.PRNGKey(0))
  # The decoder's cross-attention is split over the tensor axis by heads.
  q = s8['params']['decoder']['blocks'][0]['cross_attn']['q']['kernel']
  assert tuple(q.sharding.spec)[:2] == ('fsdp', 'tensor')
  rng = np.random.default_rng(0)
  batch = {'source': rng.integers(3, 64, (8, 16)).astype(np.int32),
           'source_segments': (np.arange(16) < rng.integers(
               4, 17, (8, 1))).astype(np.int32),
           'inputs': rng.integers(3, 64, (8, 16)).astype(np.int32),
           'targets': rng.integers(3, 64, (8, 16)).astype(np.int32),
           'weights': (rng.random((8, 16)) > 0.2).astype(np.float32)}
  b1, b8 = t1.global_batch(batch), t8.global_batch(batch)
  np.testing.assert_allclose(t1.loss(s1['params'], b1),
                             t8.loss(s8['params'], b8), rtol=1e-5)
  g1 = jax.jit(jax.grad(t1.loss))(s1['params'], b1)
  g8 = jax.jit(jax.grad(t8.loss))(s8['params'], b8)
  chex.assert_trees_all_close(jax.device_get(g1), jax.device_get(g8),
                              atol=1e-6, rtol=1e-4)
