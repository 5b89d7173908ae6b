"""Where the libraries' own output goes during a run: a log file in the
workdir, not the terminal.

Orbax, TensorStore and JAX report a failure from each of their threads: a
disk that fills during one save prints hundreds of tracebacks. The run says
what matters in one line and names this file; the file keeps the rest.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import traceback

import jax

import lm

LOG_DIR = 'logs'
_OURS = os.path.dirname(os.path.abspath(lm.__file__)) + os.sep


def path(workdir: str) -> str:
  """This process's library log in `workdir`."""
  index = jax.process_index()
  name = 'library.log' if index == 0 else f'library.{index}.log'
  return os.path.join(workdir, LOG_DIR, name)


class _FileHandler(logging.FileHandler):
  """A log file that never reports its own failures: the disk it is on may
  be the full one."""

  def handleError(self, record):
    del record


class _OnlyOurs(logging.Filter):
  """Passes the records logged from this package's modules."""

  def filter(self, record):
    return record.pathname.startswith(_OURS)


def _writer(handler: logging.Handler):
  """Writes a traceback into the log file, never raising."""

  def write(kind, exc_type, value, tb, where=''):
    lines = ''.join(traceback.format_exception(exc_type, value, tb))
    record = logging.LogRecord('library', logging.ERROR, __file__, 0,
                               f'{kind}{where}:\n{lines}', None, None)
    handler.handle(record)

  return write


@contextlib.contextmanager
def divert(workdir: str):
  """While open: library log records, exceptions that Python cannot raise
  anywhere (callbacks into a closed event loop) and uncaught exceptions in
  threads other than the main one go to `path(workdir)`, not stderr. Yields
  that path. This package's own log records still reach the terminal."""
  log_path = path(workdir)
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  handler = _FileHandler(log_path, delay=True)
  handler.setFormatter(logging.Formatter(
      '%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] '
      '%(message)s'))
  root = logging.getLogger()
  terminal = [h for h in root.handlers
              if not isinstance(h, logging.FileHandler)]
  ours = _OnlyOurs()
  write = _writer(handler)
  hooks = sys.unraisablehook, threading.excepthook
  for h in terminal:
    h.addFilter(ours)
  root.addHandler(handler)
  sys.unraisablehook = lambda u: write(
      'unraisable exception', u.exc_type, u.exc_value, u.exc_traceback,
      f' in {u.object!r}' if u.object is not None else '')
  threading.excepthook = lambda a: write(
      'uncaught exception', a.exc_type, a.exc_value, a.exc_traceback,
      f' in thread {a.thread.name if a.thread else "?"}')
  try:
    yield log_path
  finally:
    # Futures and tasks the libraries dropped report their exceptions when
    # collected, some only as the interpreter exits: asyncio's reports keep
    # going to this log file after the run (until the next run's).
    gc.collect()
    _keep_asyncio_reports(log_path)
    sys.unraisablehook, threading.excepthook = hooks
    root.removeHandler(handler)
    for h in terminal:
      h.removeFilter(ours)
    handler.close()


def _keep_asyncio_reports(log_path: str) -> None:
  """Sends the `asyncio` logger's records to `log_path` alone, from now on
  (this program's event loops are Orbax's and TensorStore's)."""
  logger = logging.getLogger('asyncio')
  for old in list(logger.handlers):
    if isinstance(old, _FileHandler):
      logger.removeHandler(old)
      old.close()
  handler = _FileHandler(log_path, delay=True)
  handler.setFormatter(logging.Formatter(
      '%(asctime)s %(levelname)s %(name)s] %(message)s'))
  logger.addHandler(handler)
  logger.propagate = False
