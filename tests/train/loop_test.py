"""Tests of lm.train.loop: the loop's outputs, exact resume, init_from, bad workdirs."""

import json
import os
import random
import signal
import subprocess
import time

import chex
from conftest import SHARED_DATA
from conftest import load_config
from conftest import popen_cli
from conftest import run_cli
from conftest import unwritable
import jax
import numpy as np
import pytest

from lm.data import tokenizer as tokenizer_lib
from lm.data import vocabulary
from lm.parallel import sharding
from lm.train import checkpoint as checkpoint_lib
from lm.train import evaluation
from lm.train import loop
from lm.train import workdir as workdir_lib


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
  c.eval.final = False  # Whole-split evaluation: test_outputs_of_a_run.
  return c


def test_early_stopping_counts_evaluations_since_the_best():
  accuracy = loop.EarlyStopping(2, 'eval/accuracy', 'max', [])
  assert [accuracy.update(v) for v in (0.5, 0.6, 0.6)] == [True, True, False]
  assert not accuracy.exhausted  # A tie is no improvement: one so far.
  assert not accuracy.update(0.55) and accuracy.exhausted
  # Resumed from a log (records without the metric are skipped), it goes on
  # where it was; patience 0 never stops.
  log = [{'step': 1, 'eval/loss': 3.0}, {'step': 2}, {'step': 3,
                                                      'eval/loss': 2.0}]
  loss = loop.EarlyStopping(1, 'eval/loss', 'min', log)
  assert loss.best == 2.0 and not loss.exhausted
  assert not loss.update(2.5) and loss.exhausted
  never = loop.EarlyStopping(0, 'eval/loss', 'min', log)
  assert not never.update(9.0) and not never.exhausted


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(resumable, tmp_path):
  straight = loop.train_and_evaluate(resumable, str(tmp_path / 'a'))
  half = resumable.copy_and_resolve_references()
  half.train.num_steps = 5
  loop.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = loop.train_and_evaluate(resumable, str(tmp_path / 'b'))
  a, b = read_metrics(tmp_path / 'a'), read_metrics(tmp_path / 'b')
  assert [r['step'] for r in b] == list(range(1, 11))  # No step twice.
  assert [r['train/loss'] for r in a] == [r['train/loss'] for r in b]
  assert straight.final_eval_loss == resumed.final_eval_loss
  chex.assert_trees_all_equal(final_params(tmp_path / 'a', 10),
                              final_params(tmp_path / 'b', 10))


def test_outputs_of_a_run(resumable, tmp_path):
  workdir = str(tmp_path)
  resumable.eval.final = True
  s = loop.train_and_evaluate(resumable, workdir)
  with open(os.path.join(workdir, workdir_lib.RESULTS_FILE)) as f:
    results = json.load(f)
  assert set(s.final) == {'validation'}  # Tiny Shakespeare has no test.
  assert results == {'step': 10, 'validation': s.final['validation']}
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
  loop.train_and_evaluate(resumable, str(tmp_path / 'a'))
  c = resumable.copy_and_resolve_references()
  c.init_from = str(tmp_path / 'a')
  c.optim.update(lr=1e-9, min_lr=0.0)
  c.train.num_steps = 1
  first = loop.train_and_evaluate(c, str(tmp_path / 'b'))
  a = read_metrics(tmp_path / 'a')
  # From a's parameters the first loss is far below a fresh start's ln(65).
  assert first.losses[0] < a[0]['train/loss'] - 0.05
  # b kept a's tokenizer; starting b again from a run with another vocabulary
  # is refused.
  assert (tokenizer_lib.load(str(tmp_path / 'b')).fingerprint() ==
          tokenizer_lib.load(str(tmp_path / 'a')).fingerprint())
  tokenizer_lib.train('char', ['xyz']).save(str(tmp_path / 'a'))
  with pytest.raises(workdir_lib.RunError, match='different vocabularies'):
    loop.train_and_evaluate(c, str(tmp_path / 'b'))


def test_workdir_of_another_model_is_refused(resumable, tmp_path):
  resumable.train.num_steps = 2
  loop.train_and_evaluate(resumable, str(tmp_path))
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  other = resumable.copy_and_resolve_references()
  other.model.num_layers = 3
  with pytest.raises(workdir_lib.RunError,
                     match=r'holds a run of another model '
                     r'\(model.num_layers: 2 -> 3\)'):
    loop.train_and_evaluate(other, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_config_changes_on_resume_are_refused_or_allowed_and_recorded(
    resumable, tmp_path):
  resumable.train.num_steps = 5
  loop.train_and_evaluate(resumable, str(tmp_path))
  longer = resumable.copy_and_resolve_references()
  longer.train.num_steps, longer.checkpoint.every = 7, 7  # Free to change.
  loop.train_and_evaluate(longer, str(tmp_path))
  other = longer.copy_and_resolve_references()
  other.train.num_steps, other.optim.lr = 8, 3e-4
  with pytest.raises(workdir_lib.RunError,
                     match=r'holds a run of another config '
                     r'\(optim.lr: 0.001 -> 0.0003\); set '
                     r'--config.allow_config_change=true'):
    loop.train_and_evaluate(other, str(tmp_path))
  assert not (tmp_path / workdir_lib.CHANGES_FILE).exists()
  other.allow_config_change = True
  assert loop.train_and_evaluate(other, str(tmp_path)).steps == 8
  with open(tmp_path / workdir_lib.CHANGES_FILE) as f:
    [record] = [json.loads(line) for line in f]
  assert record['after_step'] == 7
  assert record['changes'] == ['optim.lr: 0.001 -> 0.0003']
  # The workdir's config is now the changed one: resuming it needs no flag.
  again = other.copy_and_resolve_references()
  again.allow_config_change, again.train.num_steps = False, 9
  assert loop.train_and_evaluate(again, str(tmp_path)).steps == 9


def test_workdir_that_cannot_be_created(resumable, tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(workdir_lib.RunError, match='cannot create workdir'):
    loop.train_and_evaluate(resumable, str(tmp_path / 'file' / 'run'))
  with pytest.raises(workdir_lib.RunError, match='is a URL; give a file path'):
    loop.train_and_evaluate(resumable, 'gs://bucket/run')


def test_checkpoint_from_a_2x2x2_mesh_loads_on_one_device(resumable, tmp_path):
  c = resumable
  c.mesh.update(data=2, fsdp=2, tensor=2)
  c.train.num_steps = 2
  loop.train_and_evaluate(c, str(tmp_path))
  saved = final_params(tmp_path, 2)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), saved)
  params = workdir_lib.load_params(abstract, str(tmp_path))
  chex.assert_trees_all_equal(jax.device_get(params), jax.device_get(saved))
  assert all(p.sharding == one for p in jax.tree.leaves(params))


def test_batch_that_does_not_split_over_the_mesh(resumable, tmp_path):
  resumable.data.batch_size = 12  # 8 devices split the batch 8 ways.
  with pytest.raises(sharding.MeshError, match='data.batch_size=12 / '
                     'optim.grad_accum_steps=1 must divide over the 8 '
                     'devices'):
    loop.train_and_evaluate(resumable, str(tmp_path))


def test_resume_keeps_the_saved_vocabulary(resumable, tmp_path):
  resumable.train.num_steps = 2
  loop.train_and_evaluate(resumable, str(tmp_path / 'run'))
  other = tmp_path / 'other.txt'
  other.write_text(''.join(chr(ord('A') + i % 65) + '\n' * (i % 50 == 0)
                           for i in range(5000)))
  c = resumable.copy_and_resolve_references()
  c.data.update(name='text_files', path=str(other))
  # The run's tokenizer is kept: text it cannot encode is named.
  with pytest.raises(vocabulary.TokenizerError,
                     match='not in the '
                     'vocabulary'):
    loop.train_and_evaluate(c, str(tmp_path / 'run'))
  c = resumable.copy_and_resolve_references()
  c.data.tokenizer = 'byte'
  with pytest.raises(workdir_lib.RunError,
                     match='trained with a char tokenizer, not '
                     'data.tokenizer=byte'):
    loop.train_and_evaluate(c, str(tmp_path / 'run'))
  os.remove(tmp_path / 'run' / workdir_lib.TOKENIZER_FILE)
  with pytest.raises(workdir_lib.RunError,
                     match='holds checkpoints but no '
                     'tokenizer.json'):
    loop.train_and_evaluate(resumable, str(tmp_path / 'run'))


needs_wikitext = pytest.mark.skipif(
    not (SHARED_DATA / 'wikitext-2').is_dir(), reason='no ../shared/data')


@needs_wikitext
def test_wikitext2_word_run_reports_word_perplexity(tmp_path):
  c = load_config('wikitext2_word', 'test')
  c.data.test_split = ''  # The validation split alone keeps the test short.
  s = loop.train_and_evaluate(c, str(tmp_path))
  val = s.final['validation']
  assert set(s.final) == {'validation'} and val['tokens'] == 217_645
  # Word level: tokens are the words (all but the first are scored).
  assert val['word_perplexity'] == pytest.approx(val['perplexity'], rel=1e-3)
  assert 1 < val['perplexity'] < 33278 * 1.5
  saved = json.loads((tmp_path / workdir_lib.RESULTS_FILE).read_text())
  assert saved['step'] == 4 and saved['validation'] == val
  assert tokenizer_lib.load(str(tmp_path)).vocab_size == 33278


@needs_wikitext
def test_packed_segments_run_trains_and_resumes(tmp_path):
  c = load_config('wikitext2_word', 'test')
  c.data.pack = 'segments'
  c.eval.final = False
  half = c.copy_and_resolve_references()
  half.train.num_steps = 2
  loop.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = loop.train_and_evaluate(c, str(tmp_path / 'b'))
  straight = loop.train_and_evaluate(c, str(tmp_path / 'a'))
  assert np.isfinite(straight.losses).all()
  assert resumed.losses[-2:] == straight.losses[-2:]


def test_evaluate_saved_at_other_lengths_and_token_limits(resumable, tmp_path):
  resumable.model.position = 'rope'
  resumable.eval.final = False
  loop.train_and_evaluate(resumable, str(tmp_path))
  whole = evaluation.evaluate_saved(resumable, str(tmp_path))
  longer = resumable.copy_and_resolve_references()
  longer.eval.max_len = 2 * resumable.model.max_len
  at_2l = evaluation.evaluate_saved(longer, str(tmp_path))
  # Every token but the first is scored at any context length.
  assert at_2l['validation']['tokens'] == whole['validation']['tokens']
  assert at_2l['validation']['loss'] != whole['validation']['loss']
  assert 'bits_per_byte' in whole['validation']
  limited = resumable.copy_and_resolve_references()
  limited.eval.max_tokens = 101
  part = evaluation.evaluate_saved(limited, str(tmp_path))
  assert part['validation']['tokens'] == 100
  assert set(part['validation']) == {'loss', 'perplexity', 'tokens'}


@pytest.mark.parametrize('policy', ['stop', 'skip'])
def test_nonfinite_policies_in_a_run(resumable, tmp_path, policy):
  # A run whose starting parameters hold a NaN: every loss is NaN.
  resumable.train.num_steps = 2
  loop.train_and_evaluate(resumable, str(tmp_path / 'src'))
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
    with pytest.raises(loop.NumericsError,
                       match=r'non-finite loss or '
                       r"gradients at step 1, first in gradient of params\["):
      loop.train_and_evaluate(c, str(tmp_path / 'run'))
    return
  s = loop.train_and_evaluate(c, str(tmp_path / 'run'))
  assert s.steps == 4 and all(np.isnan(s.losses))
  assert read_metrics(tmp_path / 'run')[-1]['train/nonfinite_steps'] == 4
  # A limit on skipped updates in a row stops the run as 'stop' does.
  c.train.nonfinite_limit = 2
  with pytest.raises(loop.NumericsError,
                     match=r'step 2: the last 2 updates were all non-finite '
                     r'and skipped \(train.nonfinite_limit=2; 2 in all'):
    loop.train_and_evaluate(c, str(tmp_path / 'limited'))


# -- Fault injection on real training processes -------------------------------

KILL_RUN = ('--config=configs/shakespeare_char.py:test',
            '--config.train.num_steps=100', '--config.train.eval_every=1000',
            '--config.eval.final=False', '--config.checkpoint.every=4',
            '--config.checkpoint.async_save=True',
            '--config.model.embed_dim=128')  # Saves of 1.5 MB: catchable.


def start_training(workdir, *flags):
  # Output goes to a file: an unread pipe could fill and stall the run.
  with open(f'{workdir}.log', 'a') as log:
    return popen_cli('lm.main', f'--workdir={workdir}', *KILL_RUN, *flags,
                     stdout=log, stderr=subprocess.STDOUT)


def output_of(workdir):
  with open(f'{workdir}.log') as f:
    return f.read()[-3000:]


def logged_steps(workdir):
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return f.read().count('\n')
  except FileNotFoundError:
    return 0


def saving(workdir):
  try:
    return [n for n in os.listdir(checkpoint_lib.directory(workdir))
            if 'orbax-checkpoint-tmp' in n]
  except FileNotFoundError:
    return []


def kill_when(proc, ready, timeout=120):
  """SIGKILLs `proc` the moment `ready()` holds; False if it ended first."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if ready():
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return True
    time.sleep(0.0005)
  assert proc.poll() is not None, 'the run hung'
  return False


def after_start(workdir, delay):
  """A condition: `delay` seconds have passed since this attempt's first
  log lines appeared."""
  base, since = logged_steps(workdir), []

  def ready():
    if not since and logged_steps(workdir) != base:
      since.append(time.time())
    return bool(since) and time.time() >= since[0] + delay
  return ready


def test_kill_9_at_random_moments_then_resume_equals_an_unbroken_run(
    tmp_path):
  straight, broken = str(tmp_path / 'straight'), str(tmp_path / 'broken')
  proc = start_training(straight)
  assert proc.wait(timeout=300) == 0, output_of(straight)
  rng = random.Random()
  seed = rng.randrange(1 << 30)
  rng.seed(seed)
  kills = []
  # Kill at a random moment, then during a checkpoint write (up to 3 tries
  # to land inside one), then at a random moment again; resume after each.
  for moment in ('step', 'save', 'step'):
    for _ in range(3):
      proc = start_training(broken)
      if moment == 'step':  # A random time after training got going.
        killed = kill_when(proc, after_start(broken, rng.uniform(0.1, 2.0)))
      else:
        killed = kill_when(proc, lambda: saving(broken))
      left = saving(broken)
      kills.append((moment, logged_steps(broken), bool(left)))
      # A fast machine may finish before a late random kill: that is fine.
      assert killed or proc.returncode == 0, output_of(broken)
      if moment == 'step' or left:
        break
  assert any(m == 'save' and mid for m, _, mid in kills), (
      f'no kill landed inside a checkpoint write: {kills}')
  proc = start_training(broken)
  assert proc.wait(timeout=300) == 0, output_of(broken)
  note = f'seed {seed}, kills (moment, lines logged, mid-save) {kills}'
  a, b = read_metrics(straight), read_metrics(broken)
  assert [r['step'] for r in b] == list(range(1, 101)), note
  assert [r['train/loss'] for r in a] == [r['train/loss'] for r in b], note
  chex.assert_trees_all_equal(final_params(straight, 100),
                              final_params(broken, 100))
  assert not saving(broken)  # Leftovers of killed writes were removed.


def test_a_corrupted_checkpoint_is_an_error_or_with_fallback_skipped(tmp_path):
  workdir = str(tmp_path)
  args = ('lm.main', '--config=configs/shakespeare_char.py:test',
          f'--workdir={workdir}', '--config.eval.final=False')
  assert run_cli(*args).returncode == 0  # Checkpoints at steps 5 and 10.
  data = tmp_path / 'checkpoints' / '10' / 'state' / 'd'
  victim = max(data.rglob('*'), key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[:-100])  # Truncated.
  out = run_cli(*args, '--config.train.num_steps=15')
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      f'error: checkpoint step 10 at {workdir}/checkpoints/10 is corrupted: '
      f'{victim.relative_to(tmp_path / "checkpoints" / "10")} has '
      f'{victim.stat().st_size:,} bytes, {victim.stat().st_size + 100:,} '
      'were written (truncated?); set --config.checkpoint.fallback=true to '
      'resume from step 5']
  out = run_cli(*args, '--config.train.num_steps=15',
                '--config.checkpoint.fallback=true')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'falling back to step 5' in out.stdout
  assert 'resuming from step 5' in out.stdout
  assert [r['step'] for r in read_metrics(workdir)] == list(range(1, 16))
  assert len(os.listdir(tmp_path / 'corrupt_checkpoints')) == 1


def test_failed_checkpoint_writes_are_reported_and_retried(tmp_path):
  # 1. Every save fails: training still runs to the end, then says so.
  workdir = tmp_path / 'a'
  (workdir / 'checkpoints').mkdir(parents=True)
  args = ('lm.main', '--config=configs/shakespeare_char.py:test',
          '--config.eval.final=False')
  with unwritable(workdir / 'checkpoints'):
    out = run_cli(*args, f'--workdir={workdir}')
  assert out.returncode == 2
  assert [r['step'] for r in read_metrics(workdir)] == list(range(1, 11))
  assert ('checkpoint at step 5 was not saved (PermissionError' in out.stdout
          and 'the next save (step 10) tries again' in out.stdout)
  assert out.stderr.strip().splitlines()[-1].startswith(
      'error: training reached step 10 but its checkpoint could not be '
      'written (PermissionError')
  assert out.stderr.strip().endswith(
      '; no step of this run is saved: free space or fix the permissions of '
      'the workdir, then rerun to redo the steps after it')
  # 2. The directory turns unwritable mid-run and back: the run goes on,
  # keeps its earlier checkpoint and saves again once it can.
  workdir = tmp_path / 'b'
  with open(tmp_path / 'b.out', 'w') as log:
    proc = popen_cli(*args, f'--workdir={workdir}',
                     '--config.train.num_steps=1000000',
                     '--config.train.log_every=50',
                     '--config.checkpoint.every=20', stdout=log,
                     stderr=subprocess.STDOUT)

  def wait_for(condition, what):
    deadline = time.time() + 120
    while not condition():
      assert proc.poll() is None and time.time() < deadline, what
      time.sleep(0.05)

  def steps():
    return checkpoint_lib.saved_steps(str(workdir))

  try:
    wait_for(lambda: 20 in steps(), 'no first checkpoint')
    with unwritable(workdir / 'checkpoints'):
      wait_for(lambda: 'was not saved' in (tmp_path / 'b.out').read_text(),
               'no failed save reported')
    failed = [int(line.split()[3]) for line in
              (tmp_path / 'b.out').read_text().splitlines()
              if 'was not saved' in line]
    wait_for(lambda: max(steps()) > failed[-1], 'no retry saved')
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (
        (tmp_path / 'b.out').read_text()[-2000:])
  finally:
    proc.kill()  # Never leave the endless run behind (a no-op once ended).
  saved = checkpoint_lib.Checkpointer(str(workdir), read_only=True)
  last = saved.latest_step()
  assert last > failed[-1] and last not in failed
  state, _ = saved.restore(last, None, with_data=False)
  assert int(state['step']) == last
