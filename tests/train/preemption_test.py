"""Tests of lm.train.preemption: SIGTERM saves the step it is on and exits 0."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import popen_cli
from conftest import run_cli
import pytest

from lm.train import checkpoint as checkpoint_lib


def start_run(workdir, *overrides):
  return popen_cli(
      'lm.main', '--config=configs/shakespeare_char.py:test',
      f'--workdir={workdir}', '--config.train.num_steps=100000',
      '--config.checkpoint.every=50000', '--config.train.eval_every=50000',
      '--config.eval.final=False', *overrides,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(workdir, n, proc, timeout=120):
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    if os.path.exists(path):
      with open(path) as f:
        if sum(1 for _ in f) >= n:
          return
    time.sleep(0.2)
  raise AssertionError(f'no {n} steps in {timeout} s')


def steps_logged(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line)['step'] for line in f]


def test_sigterm_saves_the_current_step_and_exits_0(tmp_path):
  workdir = str(tmp_path)
  proc = start_run(workdir)
  wait_for_steps(workdir, 5, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert 'SIGTERM: stopping after this step' in err
  steps = steps_logged(workdir)
  saved = checkpoint_lib.Checkpointer(workdir, read_only=True).all_steps()
  # The checkpoint is the last step run, and the log reaches it.
  assert saved == [steps[-1]] and steps == list(range(1, steps[-1] + 1))
  assert f'stopped at step {steps[-1]} (SIGTERM)' in out
  # Rerunning resumes from there: no step twice, none skipped.
  proc = start_run(workdir, f'--config.train.num_steps={steps[-1] + 3}')
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert steps_logged(workdir) == list(range(1, steps[-1] + 4))


def test_a_second_signal_exits_at_once_keeping_the_last_checkpoint(tmp_path):
  workdir = str(tmp_path)
  # Checkpoints every 20 steps; stop in between with two quick signals.
  proc = start_run(workdir, '--config.checkpoint.every=20')
  wait_for_steps(workdir, 45, proc)
  # Two different signals (two of the same may merge while pending).
  proc.send_signal(signal.SIGTERM)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  # Both pending are delivered lowest number first (SIGINT, SIGTERM); a
  # SIGTERM handled before SIGINT is sent makes SIGINT the second. Either
  # way the process exits with the second signal's status.
  second = re.search(r'second signal \((SIGINT|SIGTERM)\): exiting at once',
                     err)
  assert second, err[-2000:]
  assert proc.returncode == 128 + getattr(signal, second.group(1)), err[-2000:]
  ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True)
  latest = ckpt.latest_step()
  assert latest is not None and latest >= 40
  state, _ = ckpt.restore(latest, None)  # Complete and readable.
  assert int(state['step']) == latest


def test_two_sigterms_50_ms_apart_are_two_signals(tmp_path):
  workdir = str(tmp_path)
  proc = start_run(workdir, '--config.checkpoint.every=20')
  wait_for_steps(workdir, 5, proc)
  # The same signal twice, 50 ms apart: two signals. (Sent back to back, the
  # kernel merges them: a standard signal that is already pending is not
  # queued again.)
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert 'second signal (SIGTERM): exiting at once' in err, err[-2000:]
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]


# The main thread inside one long call (as in a training step) while two
# SIGTERMs arrive 50 ms apart: Python runs the handler once, after the call.
_BUSY_MAIN_THREAD = """
import os, signal, sys, threading, time
import numpy as np
from lm.train import preemption

def send_two():
  time.sleep(0.3)
  os.kill(os.getpid(), signal.SIGTERM)
  time.sleep(0.05)
  os.kill(os.getpid(), signal.SIGTERM)

with preemption.Preemption() as p:
  threading.Thread(target=send_two).start()
  t = time.time()
  np.sort(np.random.default_rng(0).random(30_000_000))  # No bytecode runs.
  print(f'call took {time.time() - t:.1f} s', file=sys.stderr)
  time.sleep(1)
print('stopped as for one signal:', p.requested)
"""


def test_two_signals_during_one_long_call_are_still_two():
  out = subprocess.run([sys.executable, '-c', _BUSY_MAIN_THREAD],
                       capture_output=True, text=True, timeout=120,
                       check=False)
  took = float(re.search(r'call took ([\d.]+) s', out.stderr + ' call took '
                         '9 s').group(1))
  if took < 0.5:  # The signals must arrive during the call.
    pytest.skip(f'the long call took only {took} s')
  assert 'second signal (SIGTERM): exiting at once' in out.stderr, out
  assert out.returncode == 128 + signal.SIGTERM, out


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_training_starts_is_one_line(tmp_path, sig):
  workdir = tmp_path / 'run'
  proc = start_run(str(workdir))
  deadline = time.time() + 60
  # The workdir is made once the command has started, before data and the
  # first compile: the signal lands in start-up.
  while not workdir.exists() and time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.05)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=120)
  assert not (workdir / 'metrics.jsonl').exists()  # Before the loop.
  assert proc.returncode == 128 + sig, err[-2000:]
  assert 'Traceback' not in err, err[-2000:]
  assert err.strip().splitlines()[-1] == (
      f'{signal.Signals(sig).name}: stopped (nothing is left half-written; '
      'run the same command again to go on)')


def test_a_signal_during_the_final_evaluation_is_one_line_then_redone(
    tmp_path):
  workdir = tmp_path / 'run'
  # A final evaluation of about 7 s: every other window of the validation
  # split.
  args = ('lm.main', '--config=configs/shakespeare_char.py:test',
          f'--workdir={workdir}', '--config.eval.stride=2')
  proc = popen_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)
  wait_for_steps(str(workdir), 10, proc)  # The last step is logged,
  time.sleep(2)  # saved, and the final evaluation under way.
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert 'Traceback' not in err, err[-2000:]
  assert err.strip().splitlines()[-1].startswith('SIGTERM: stopped')
  assert not (workdir / 'eval_results.json').exists()
  p = run_cli(*args)  # The rerun trains nothing and evaluates again.
  assert p.returncode == 0, p.stderr[-2000:]
  assert (workdir / 'eval_results.json').exists()
