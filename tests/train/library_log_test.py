"""Tests of lm.train.library_log: library output goes to the workdir's log
file; a disk that fills during saves prints one line per failed save."""

import contextlib
import logging
import os
import subprocess
import sys
import threading

from absl import logging as absl_logging
from conftest import run_cli
import pytest

from lm.train import library_log


def _unraisable():
  """Makes Python report an exception it cannot raise anywhere, as a
  callback into a closed event loop does."""

  class Broken:

    def __del__(self):
      raise RuntimeError('Event loop is closed')

  Broken()


def test_library_output_goes_to_the_log_file_not_the_terminal(
    tmp_path, capfd):
  hooks = sys.unraisablehook, threading.excepthook
  with library_log.divert(str(tmp_path)) as path:
    assert path == str(tmp_path / 'logs' / 'library.log')
    _unraisable()
    thread = threading.Thread(target=lambda: 1 / 0, name='saver')
    thread.start()
    thread.join()
    logging.getLogger('orbax').error('a library error')
    absl_logging.warning('our warning')  # Logged from a test, not lm/.
  # asyncio reports dropped tasks as late as the interpreter's exit: they
  # keep going to the log.
  logging.getLogger('asyncio').error('Task exception was never retrieved')
  assert (sys.unraisablehook, threading.excepthook) == hooks  # Restored.
  with open(path) as f:
    text = f.read()
  assert 'RuntimeError: Event loop is closed' in text
  assert 'in thread saver' in text and 'ZeroDivisionError' in text
  assert 'a library error' in text and 'our warning' in text
  assert 'Task exception was never retrieved' in text
  err = capfd.readouterr().err
  assert 'Event loop is closed' not in err
  assert 'ZeroDivisionError' not in err and 'a library error' not in err
  assert 'never retrieved' not in err


def test_records_from_this_package_still_reach_the_terminal(tmp_path):
  record = logging.LogRecord('absl', logging.WARNING,
                             os.path.abspath(library_log.__file__), 1,
                             'from lm', None, None)
  outside = logging.LogRecord('absl', logging.WARNING, '/elsewhere/x.py', 1,
                              'from a library', None, None)
  only_ours = library_log._OnlyOurs()  # pylint: disable=protected-access
  assert only_ours.filter(record) and not only_ours.filter(outside)


@contextlib.contextmanager
def small_disk(path, size='3M'):
  """A tmpfs of `size` at `path`; skips the test where mounting is not
  allowed (it needs root)."""
  path.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                            'tmpfs', str(path)], capture_output=True,
                           check=False)
  if mounted.returncode:
    pytest.skip(f'cannot mount a small disk: {mounted.stderr.decode()[:80]}')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def test_a_disk_that_fills_during_saves_prints_one_line_per_failed_save(
    tmp_path):
  with small_disk(tmp_path / 'disk') as disk:
    workdir = disk / 'run'
    out = run_cli('lm.main', '--config=configs/shakespeare_char.py:test',
                  f'--workdir={workdir}', '--config.model.embed_dim=128',
                  '--config.train.num_steps=4', '--config.checkpoint.every=2',
                  '--config.eval.final=false')
    log = str(workdir / 'logs' / 'library.log')
    assert out.returncode == 2, out.stderr[-2000:]
    failed = [l for l in out.stdout.splitlines() if 'was not saved' in l]
    assert failed == [
        (f'checkpoint at step 2 was not saved (No space left on device; '
         f'details in {log}); training goes on, the next save (step 4) tries '
         'again'),
        (f'checkpoint at step 4 was not saved (No space left on device; '
         f'details in {log}); training goes on, no save is left to try')]
    err = [l for l in out.stderr.replace('\r', '\n').splitlines()
           if l.strip() and '%|' not in l and '\x1b' not in l]  # No bars.
    assert err == [(
        'error: training reached step 4 but its checkpoint could not be '
        f'written (No space left on device; details in {log}); no step of '
        'this run is saved: free space or fix the permissions of the '
        'workdir, then rerun to redo the steps after it')], err
    assert 'Traceback' not in out.stderr
    with open(log) as f:
      text = f.read()
    assert 'No space left on device' in text and 'Traceback' in text
