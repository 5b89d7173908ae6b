"""Tests of lm.train.writer."""

import json
import subprocess
import sys
import time

from conftest import REPO
import pytest

from lm.train import writer as writer_lib


def test_resume_drops_lines_past_the_restored_step(tmp_path):
  w = writer_lib.MetricWriter(str(tmp_path), 0, 10)
  for step in range(1, 8):
    w.write(step, {'train/loss': 1.0 / step})
  w.write(4, {'eval/loss': 0.3})
  w.close()
  w = writer_lib.MetricWriter(str(tmp_path), 5, 10)
  w.write(6, {'train/loss': 0.5})
  w.write(7, {'eval/loss': float('nan')})  # A diverged eval is never best.
  w.close()
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5, 4, 6, 7]
  assert w.best('eval/loss') == 0.3


def test_a_last_line_cut_short_by_a_kill_is_dropped(tmp_path):
  w = writer_lib.MetricWriter(str(tmp_path), 0, 10)
  for step in range(1, 4):
    w.write(step, {'train/loss': 1.0})
  w.close()
  with (tmp_path / 'metrics.jsonl').open('a') as f:
    f.write('{"step": 4, "train/lo')  # What a kill -9 mid-write leaves.
  w = writer_lib.MetricWriter(str(tmp_path), 3, 10)
  w.write(4, {'train/loss': 0.5})
  w.close()
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in rows] == [1, 2, 3, 4]
  # A broken line in the middle is not a kill's doing: it is not hidden.
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n{"st\n{"step": 2}\n')
  with pytest.raises(writer_lib.LogError, match='line 2 is not JSON'):
    writer_lib.MetricWriter(str(tmp_path), 2, 10)


def test_throughput_counts_tokens_between_restarts():
  meter = writer_lib.Throughput(6.0, 1000.0)
  meter.count(10_000)  # Step 10's, before the restart: not counted.
  meter.restart(10)
  assert meter.rates(10) == {}
  meter.count(100)
  meter.count(300)  # Rows of another length.
  start = meter._time
  time.sleep(0.05)
  rates = meter.rates(12)
  seconds = meter._time - start  # The restart is a moment after the rate.
  assert rates['tokens_per_sec'] == pytest.approx(400 / seconds, rel=0.05)
  assert rates['steps_per_sec'] == pytest.approx(2 / seconds, rel=0.05)
  assert abs(rates['mfu'] - rates['tokens_per_sec'] * 6.0 / 1000.0) < 1e-9


def test_loss_spikes_are_flagged_after_warmup():
  spikes = writer_lib.LossSpikes(warmup=10)
  losses = [3.0 - 0.01 * i for i in range(30)]
  assert not any(spikes(x) for x in losses)  # A smooth descent.
  assert spikes(5.0)  # Far above the recent losses.
  assert not spikes(2.70)  # Back to normal; the spike did not move the mean.
  fresh = writer_lib.LossSpikes(warmup=10)
  assert not fresh(100.0)  # Nothing is a spike before the warmup.


def test_tensorboard_gets_the_scalars_without_importing_torch(tmp_path):
  # A fresh interpreter: tensorboardX would import torch (a test extra here)
  # on load; the writer hides it, and a later `import torch` still works.
  code = f'''
import glob, sys
from lm.train import writer
w = writer.MetricWriter({str(tmp_path)!r}, 0, 2)
w.write(1, {{'train/loss': 2.5}})
w.close()
assert 'torch' not in sys.modules, 'tensorboardX imported torch'
import torch
print(glob.glob({str(tmp_path)!r} + '/tensorboard/events.out.tfevents*'))
'''
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  (events,) = eval(out.stdout.strip().splitlines()[-1])  # pylint: disable=eval-used
  with open(events, 'rb') as f:
    assert b'train/loss' in f.read()
