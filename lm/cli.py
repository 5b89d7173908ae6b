"""What every command line shares: start-up, flag parsing, one-line errors."""

from __future__ import annotations

import os
import signal
import sys

from absl import flags
from absl import logging

from lm import config
from lm import errors
from lm.parallel import host


class OutputError(errors.UserError):
  """An output path a command cannot write, as one line."""


def _blocking_file(path: str) -> str | None:
  """The first existing ancestor of `path` that is not a directory."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  return None if os.path.isdir(parent) else parent


def check_output_file(flag: str, path: str) -> None:
  """Says why file `path` (flag --FLAG) cannot be written, before any work
  is done: a directory in its place, or a file where a folder must be."""
  if os.path.isdir(path):
    raise OutputError(f'--{flag}={path} is a directory; give a file path')
  blocker = _blocking_file(path)
  if blocker:
    raise OutputError(f'--{flag}={path}: {blocker} is a file, not a folder; '
                      'give a path in a folder')


def check_output_dir(flag: str, path: str) -> None:
  """Says why folder `path` (flag --FLAG) cannot be created or written into,
  before any work is done: a file in its place or above it."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise OutputError(f'--{flag}={path} is a file; give a new or empty folder')
  blocker = _blocking_file(path)
  if blocker:
    raise OutputError(f'--{flag}={path}: {blocker} is a file, not a folder; '
                      'give a path in a folder')


def usage_error(message: str) -> None:
  """A command-line mistake: one line on stderr, exit status 2 (absl's
  UsageError would print the whole --help first)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _exit_on_signal(signum, frame) -> None:
  """Outside the training loop (which stops after its step instead): one
  line, then exit 128 + signal at once. Nothing is left half-written: every
  file a run keeps is written to a temporary name and renamed (config,
  tokenizer, checkpoints), or prepared under a temporary folder (data)."""
  del frame
  name = signal.Signals(signum).name
  # On a line of its own: a progress bar may hold the current one.
  print(f'\n{name}: stopped (nothing is left half-written; run the same '
        'command again to go on)', file=sys.stderr, flush=True)
  os._exit(128 + signum)  # pylint: disable=protected-access


def start(argv, quiet_level=logging.WARNING) -> None:
  """Rejects stray arguments, quiets library logs, tunes the host allocator,
  and makes SIGINT and SIGTERM end the command in one line (a traceback
  from inside JAX's threads, then a crash, otherwise)."""
  if len(argv) > 1:
    usage_error(f'unexpected arguments: {" ".join(argv[1:])}; give flags as '
                '--name=value (see --help)')
  if not flags.FLAGS['verbosity'].present:  # Library INFO logs drown output.
    logging.set_verbosity(quiet_level)
  host.keep_freed_memory()
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, _exit_on_signal)


def exit_on_user_error(fn, *args, **kwargs):
  """Calls fn; a user error is printed as one line and exits with status 2."""
  try:
    return fn(*args, **kwargs)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def _unknown_override(argv) -> str | None:
  """The message for the first `--config.KEY=` override the schema lacks."""
  for arg in argv:
    if arg.startswith('--config.'):
      message = config.unknown_key_message(
          arg[len('--config.'):].split('=', 1)[0])
      if message:
        return message
  return None


def parse_flags(argv):
  """absl flag parsing whose config mistakes end as one line, status 2."""
  try:
    argv = flags.FLAGS(argv)
    if 'config' in flags.FLAGS and flags.FLAGS.config is not None:
      flags.FLAGS.config.to_dict()  # A config file's load error shows here.
    return argv
  except SystemExit:
    # absl's --help exits with status 1; asking for help is not an error.
    if {'--help', '-h', '--helpshort', '--helpfull', '-?'} & set(argv):
      sys.exit(0)
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Config files and overrides fail in many ways inside ml_collections;
    # the user needs the last line (the cause) or the unknown key's name.
    message = _unknown_override(argv)
    if message is None:
      lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
      message = lines[-1] if lines else type(e).__name__
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)
