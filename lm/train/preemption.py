"""Stopping cleanly when the scheduler says so (SIGTERM) or the user does.

A preempted TPU/GPU VM gets SIGTERM and some seconds before it is killed. The
first SIGTERM or SIGINT (Ctrl-C) asks the training loop to stop after the
step it is on: it writes a checkpoint of that step, flushes its logs and
returns, and the command exits 0; rerunning it resumes. A second signal ends
the process at once: checkpoints are written to a temporary directory and
renamed when complete, so the last good one is never damaged.

With several processes, JAX's own preemption notifier receives SIGTERM and
`multihost_utils.reached_preemption_sync_point` makes every host stop at the
same step, so they all save it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
  """Within `with Preemption() as p:`, `p.reached(step)` says whether to stop
  after `step`."""

  def __init__(self):
    self.requested: str | None = None
    self._previous = {}

  def __enter__(self) -> 'Preemption':
    if threading.current_thread() is threading.main_thread():
      for sig in self._signals():
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  @staticmethod
  def _signals():
    # Several processes: JAX's notifier owns SIGTERM (it syncs the hosts).
    return SIGNALS if jax.process_count() == 1 else (signal.SIGINT,)

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.requested:  # The second signal: go now.
      print(f'second signal ({name}): exiting at once', file=sys.stderr,
            flush=True)
      os._exit(128 + signum)
    self.requested = name
    print(f'{name}: stopping after this step (checkpoint, then exit; send '
          'it again to exit at once)', file=sys.stderr, flush=True)

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return (multihost_utils.reached_preemption_sync_point(step) or
              bool(self.requested))
    return bool(self.requested)
