"""Run outputs for people: progress bar, metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import tqdm

from lm import errors


def _summary_writer(logdir: str):
  """tensorboardX's SummaryWriter for `logdir`. tensorboardX imports torch,
  if it is installed, only to accept torch tensors, which this writer never
  passes; that costs every run 1.5 s and 200 MB. Where nothing has imported
  torch yet, it is hidden while tensorboardX loads, then visible again."""
  if 'tensorboardX' not in sys.modules and 'torch' not in sys.modules:
    sys.modules['torch'] = None  # `import torch` raises ImportError.
    try:
      import tensorboardX  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
    finally:
      del sys.modules['torch']
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  return SummaryWriter(logdir)


class LogError(errors.UserError):
  """A metrics log that cannot be read, as one line."""


def _read_log(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a last line cut short by a kill is
  dropped (its step is past the checkpoint being resumed anyway)."""
  with open(path) as f:
    lines = f.read().split('\n')
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:  # Only the unterminated last line may be cut.
        raise LogError(f'{path} line {i + 1} is not JSON; repair or remove '
                       'the line') from None
  return records


def history(workdir: str, start_step: int) -> list[dict]:
  """The records of a run's log up to `start_step`, read on every process
  (the writer keeps its own on process 0 only)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  return [r for r in _read_log(path) if r['step'] <= start_step]


class MetricWriter:
  """Writes scalars to `metrics.jsonl` and TensorBoard (process 0 only).

  On resume from `start_step`, lines of a previous attempt past that step
  (and a last line cut short by a kill) are dropped, so each step appears
  once in the log.
  """

  def __init__(self, workdir: str, start_step: int, total_steps: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.history = []
    if self.enabled and os.path.exists(self.path):
      self.history = [r for r in _read_log(self.path)
                      if r['step'] <= start_step]
      with open(self.path + '.tmp', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in self.history)
      os.replace(self.path + '.tmp', self.path)
    self._jsonl = open(self.path, 'a') if self.enabled else None
    self._tb = (_summary_writer(os.path.join(workdir, 'tensorboard'))
                if self.enabled else None)
    self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit='step',
                          dynamic_ncols=True, disable=not self.enabled)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    record = {'step': step, **{k: float(v) for k, v in scalars.items()}}
    self.history.append(record)
    self._jsonl.write(json.dumps(record) + '\n')
    for k, v in scalars.items():
      self._tb.add_scalar(k, float(v), step)

  def progress(self, step: int, loss=None, tokens_per_sec=None,
               mfu=None, steps_per_sec=None) -> None:
    del steps_per_sec  # The bar shows its own rate.
    self._bar.update(step - self._bar.n)
    shown = {'loss': loss and f'{loss:.4f}',
             'tok/s': tokens_per_sec and f'{tokens_per_sec:,.0f}',
             'mfu': mfu and f'{mfu:.1%}'}
    self._bar.set_postfix({k: v for k, v in shown.items() if v}, refresh=False)

  def print(self, text: str) -> None:
    if self.enabled:
      self._bar.write(text)

  def sub_progress(self, desc: str, unit: str = 'window'):
    """A `progress(done, total)` callback drawing a bar for a long sub-task
    (counting `unit`s)."""
    bar = None

    def progress(done: int, total: int) -> None:
      nonlocal bar
      if not self.enabled:
        return
      if bar is None:
        bar = tqdm.tqdm(total=total, desc=desc, unit=unit, leave=False,
                        dynamic_ncols=True)
      bar.update(done - bar.n)
      if done >= total:
        bar.close()
    return progress

  def best(self, key: str) -> float | None:
    values = [r[key] for r in self.history
              if key in r and math.isfinite(r[key])]
    return min(values) if values else None

  def flush(self) -> None:
    """Makes everything written so far durable (before each checkpoint)."""
    if self.enabled:
      self._jsonl.flush()
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._bar.close()
      self._jsonl.close()
      self._tb.close()


class Throughput:
  """Tokens/s, steps/s (and MFU where the chip's peak is known) between
  restarts.

  `count` adds each step's row positions (batch x row length: padding
  included, rows may change length from step to step)."""

  def __init__(self, flops_per_token: float, peak_flops: float | None):
    self.flops_per_token = flops_per_token
    self.peak_flops = peak_flops
    self.restart(0)

  def restart(self, step: int) -> None:
    """Count from `step`, now (after compiling, evaluating or saving)."""
    self._step, self._time, self._tokens = step, time.perf_counter(), 0

  def count(self, tokens: int) -> None:
    """Adds a step's tokens (call it before `restart` of the same step)."""
    self._tokens += tokens

  def rates(self, step: int) -> dict[str, float]:
    """Rates since the last restart; {} if no step ran since."""
    if step <= self._step:
      return {}
    seconds = time.perf_counter() - self._time
    out = {'tokens_per_sec': self._tokens / seconds,
           'steps_per_sec': (step - self._step) / seconds}
    if self.peak_flops:
      out['mfu'] = out['tokens_per_sec'] * self.flops_per_token / self.peak_flops
    self.restart(step)
    return out


class LossSpikes:
  """Flags a logged loss far above the recent ones: more than `sigmas`
  standard deviations (and 10%) over an exponential moving average, once
  `warmup` losses have been seen. Spiking losses do not enter the average."""

  def __init__(self, sigmas: float = 4.0, decay: float = 0.9,
               warmup: int = 10):
    self.sigmas, self.decay, self.warmup = sigmas, decay, warmup
    self.mean, self.var, self.seen = 0.0, 0.0, 0

  def __call__(self, loss: float) -> bool:
    if self.seen >= self.warmup and loss > max(
        self.mean + self.sigmas * self.var ** 0.5, 1.1 * self.mean):
      return True
    if self.seen == 0:
      self.mean = loss
    delta = loss - self.mean
    self.mean += (1 - self.decay) * delta
    self.var = self.decay * (self.var + (1 - self.decay) * delta * delta)
    self.seen += 1
    return False
