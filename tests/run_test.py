"""Tests of lm.run: the loop's outputs, exact resume, init_from, bad workdirs."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from lm import checkpoint as checkpoint_lib
from lm import run
from lm import sharding
from lm import tokenizer as tokenizer_lib
from conftest import SHARED_DATA, load_config


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir, step):
  ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True)
  state, _ = ckpt.restore(step, None, with_data=False)
  return state['params']


@pytest.fixture
def resumable(test_config):
  c = test_config  # On all 8 test devices, data parallel.
  c.optim.decay_steps = 10  # The schedule must not depend on num_steps.
  c.train.update(num_steps=10, eval_every=5, log_every=1)
  c.checkpoint.every = 5
  return c


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(resumable, tmp_path):
  straight = run.train_and_evaluate(resumable, str(tmp_path / 'a'))
  half = resumable.copy_and_resolve_references()
  half.train.num_steps = 5
  run.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = run.train_and_evaluate(resumable, str(tmp_path / 'b'))
  a, b = read_metrics(tmp_path / 'a'), read_metrics(tmp_path / 'b')
  assert [r['step'] for r in b] == list(range(1, 11))  # No step twice.
  assert [r['train/loss'] for r in a] == [r['train/loss'] for r in b]
  assert straight.final_eval_loss == resumed.final_eval_loss
  chex.assert_trees_all_equal(final_params(tmp_path / 'a', 10),
                              final_params(tmp_path / 'b', 10))


def test_outputs_of_a_run(resumable, tmp_path):
  workdir = str(tmp_path)
  s = run.train_and_evaluate(resumable, workdir)
  rows = read_metrics(workdir)
  assert {'step', 'train/loss', 'tokens_per_sec'} <= set(rows[-1])
  assert [r['step'] for r in rows if 'eval/loss' in r] == [5, 10]
  assert s.best_eval_loss == min(r['eval/loss'] for r in rows
                                 if 'eval/loss' in r)
  assert any(f.startswith('events.out.tfevents')
             for f in os.listdir(os.path.join(workdir, 'tensorboard')))
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert saved['model']['vocab_size'] == 65
  assert saved['model']['mlp_dim'] == 4 * saved['model']['embed_dim']
  assert saved['model']['dtype'] == 'float32'  # 'auto' on CPU.
  assert os.path.exists(os.path.join(workdir, 'tokenizer.json'))


def test_init_from_starts_at_another_runs_parameters(resumable, tmp_path):
  resumable.train.num_steps = 5
  run.train_and_evaluate(resumable, str(tmp_path / 'a'))
  c = resumable.copy_and_resolve_references()
  c.init_from = str(tmp_path / 'a')
  c.optim.update(lr=1e-9, min_lr=0.0)
  c.train.num_steps = 1
  first = run.train_and_evaluate(c, str(tmp_path / 'b'))
  a = read_metrics(tmp_path / 'a')
  # From a's parameters the first loss is far below a fresh start's ln(65).
  assert first.losses[0] < a[0]['train/loss'] - 0.05
  # b kept a's tokenizer; starting b again from a run with another vocabulary
  # is refused.
  assert (tokenizer_lib.load(str(tmp_path / 'b')).fingerprint() ==
          tokenizer_lib.load(str(tmp_path / 'a')).fingerprint())
  tokenizer_lib.train('char', ['xyz']).save(str(tmp_path / 'a'))
  with pytest.raises(run.RunError, match='different vocabularies'):
    run.train_and_evaluate(c, str(tmp_path / 'b'))


def test_workdir_of_another_model_is_refused(resumable, tmp_path):
  resumable.train.num_steps = 2
  run.train_and_evaluate(resumable, str(tmp_path))
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  other = resumable.copy_and_resolve_references()
  other.model.num_layers = 3
  with pytest.raises(run.RunError, match=r'holds a run of another model '
                     r'\(model.num_layers: 2 -> 3\)'):
    run.train_and_evaluate(other, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_workdir_that_cannot_be_created(resumable, tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(run.RunError, match='cannot create workdir'):
    run.train_and_evaluate(resumable, str(tmp_path / 'file' / 'run'))


def test_checkpoint_from_a_2x2x2_mesh_loads_on_one_device(resumable, tmp_path):
  c = resumable
  c.mesh.update(data=2, fsdp=2, tensor=2)
  c.train.num_steps = 2
  run.train_and_evaluate(c, str(tmp_path))
  saved = final_params(tmp_path, 2)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), saved)
  params = run.load_params(abstract, str(tmp_path))
  chex.assert_trees_all_equal(jax.device_get(params), jax.device_get(saved))
  assert all(p.sharding == one for p in jax.tree.leaves(params))


def test_batch_that_does_not_split_over_the_mesh(resumable, tmp_path):
  resumable.data.batch_size = 12  # 8 devices split the batch 8 ways.
  with pytest.raises(sharding.MeshError, match='data.batch_size=12 / '
                     'optim.grad_accum_steps=1 must divide over the 8 '
                     'devices'):
    run.train_and_evaluate(resumable, str(tmp_path))


def test_resume_keeps_the_saved_vocabulary(resumable, tmp_path):
  resumable.train.num_steps = 2
  run.train_and_evaluate(resumable, str(tmp_path / 'run'))
  other = tmp_path / 'other.txt'
  other.write_text(''.join(chr(ord('A') + i % 65) + '\n' * (i % 50 == 0)
                           for i in range(5000)))
  c = resumable.copy_and_resolve_references()
  c.data.update(name='text_files', path=str(other))
  # The run's tokenizer is kept: text it cannot encode is named.
  with pytest.raises(tokenizer_lib.TokenizerError, match='not in the '
                     'vocabulary'):
    run.train_and_evaluate(c, str(tmp_path / 'run'))
  c = resumable.copy_and_resolve_references()
  c.data.tokenizer = 'byte'
  with pytest.raises(run.RunError, match='trained with a char tokenizer, not '
                     'data.tokenizer=byte'):
    run.train_and_evaluate(c, str(tmp_path / 'run'))
  os.remove(tmp_path / 'run' / run.TOKENIZER_FILE)
  with pytest.raises(run.RunError, match='holds checkpoints but no '
                     'tokenizer.json'):
    run.train_and_evaluate(resumable, str(tmp_path / 'run'))


needs_wikitext = pytest.mark.skipif(
    not (SHARED_DATA / 'wikitext-2').is_dir(), reason='no ../shared/data')


@needs_wikitext
def test_wikitext2_word_run_reports_word_perplexity(tmp_path):
  c = load_config('wikitext2_word', 'test')
  c.data.test_split = ''  # The validation split alone keeps the test short.
  s = run.train_and_evaluate(c, str(tmp_path))
  val = s.final['validation']
  assert set(s.final) == {'validation'} and val['tokens'] == 217_645
  # Word level: tokens are the words (all but the first are scored).
  assert val['word_perplexity'] == pytest.approx(val['perplexity'], rel=1e-3)
  assert 1 < val['perplexity'] < 33278 * 1.5
  saved = json.loads((tmp_path / run.RESULTS_FILE).read_text())
  assert saved['step'] == 4 and saved['validation'] == val
  assert tokenizer_lib.load(str(tmp_path)).vocab_size == 33278


@needs_wikitext
def test_packed_segments_run_trains_and_resumes(tmp_path):
  c = load_config('wikitext2_word', 'test')
  c.data.pack = 'segments'
  c.eval.final = False
  half = c.copy_and_resolve_references()
  half.train.num_steps = 2
  run.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = run.train_and_evaluate(c, str(tmp_path / 'b'))
  straight = run.train_and_evaluate(c, str(tmp_path / 'a'))
  assert np.isfinite(straight.losses).all()
  assert resumed.losses[-2:] == straight.losses[-2:]


def test_evaluate_saved_at_other_lengths_and_token_limits(resumable, tmp_path):
  resumable.model.position = 'rope'
  resumable.eval.final = False
  run.train_and_evaluate(resumable, str(tmp_path))
  whole = run.evaluate_saved(resumable, str(tmp_path))
  longer = resumable.copy_and_resolve_references()
  longer.eval.max_len = 2 * resumable.model.max_len
  at_2l = run.evaluate_saved(longer, str(tmp_path))
  # Every token but the first is scored at any context length.
  assert at_2l['validation']['tokens'] == whole['validation']['tokens']
  assert at_2l['validation']['loss'] != whole['validation']['loss']
  assert 'bits_per_byte' in whole['validation']
  limited = resumable.copy_and_resolve_references()
  limited.eval.max_tokens = 101
  part = run.evaluate_saved(limited, str(tmp_path))
  assert part['validation']['tokens'] == 100
  assert set(part['validation']) == {'loss', 'perplexity', 'tokens'}


@pytest.mark.parametrize('policy', ['stop', 'skip'])
def test_nonfinite_policies_in_a_run(resumable, tmp_path, policy):
  # A run whose starting parameters hold a NaN: every loss is NaN.
  resumable.train.num_steps = 2
  run.train_and_evaluate(resumable, str(tmp_path / 'src'))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / 'src'), async_save=False)
  state, data = ckpt.restore(2, None)
  state['params']['wte'] = np.asarray(state['params']['wte']).copy()
  state['params']['wte'][0, 0] = np.nan
  ckpt.save(3, state, data)
  ckpt.wait()
  ckpt.close()
  c = resumable.copy_and_resolve_references()
  c.init_from = str(tmp_path / 'src')
  c.train.update(nonfinite=policy, num_steps=4, log_every=2)
  c.eval.final = False
  if policy == 'stop':
    with pytest.raises(run.NumericsError, match=r'non-finite loss or '
                       r"gradients at step 1, first in gradient of params\["):
      run.train_and_evaluate(c, str(tmp_path / 'run'))
    return
  s = run.train_and_evaluate(c, str(tmp_path / 'run'))
  assert s.steps == 4 and all(np.isnan(s.losses))
  assert read_metrics(tmp_path / 'run')[-1]['train/nonfinite_steps'] == 4
