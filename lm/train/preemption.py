"""Stopping cleanly when the scheduler says so (SIGTERM) or the user does.

A preempted TPU/GPU VM gets SIGTERM and some seconds before it is killed. The
first SIGTERM or SIGINT (Ctrl-C) asks the training loop to stop after the
step it is on: it writes a checkpoint of that step, flushes its logs and
returns, and the command exits 0; rerunning it resumes. A second signal ends
the process at once: checkpoints are written to a temporary directory and
renamed when complete, so the last good one is never damaged.

Python runs a signal's handler only between bytecodes of the main thread: two
signals that arrive while it waits inside one long call (a training step,
a device transfer) would reach the handler once. Every signal that arrives
also writes a byte to a wakeup pipe, and the handler counts those, so two
signals are always two.

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
    self._pipe: tuple[int, int] | None = None  # (read, write) of the wakeup.
    self._previous_fd = -1

  def __enter__(self) -> 'Preemption':
    if threading.current_thread() is threading.main_thread():
      self._pipe = os.pipe()
      for fd in self._pipe:
        os.set_blocking(fd, False)
      self._previous_fd = signal.set_wakeup_fd(self._pipe[1],
                                               warn_on_full_buffer=False)
      for sig in self._signals():
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
    if self._pipe:
      signal.set_wakeup_fd(self._previous_fd)
      for fd in self._pipe:
        os.close(fd)
      self._pipe = None

  def _arrived(self) -> int:
    """How many of our signals arrived since the last call (at least the
    one being handled)."""
    count = 0
    try:
      while self._pipe:
        data = os.read(self._pipe[0], 4096)
        if not data:
          break
        count += sum(byte in self._signals() for byte in data)
    except BlockingIOError:
      pass
    return max(count, 1)

  @staticmethod
  def _signals():
    # Several processes: JAX's notifier owns SIGTERM (it syncs the hosts).
    return SIGNALS if jax.process_count() == 1 else (signal.SIGINT,)

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.requested or self._arrived() > 1:  # The second signal: go now.
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
