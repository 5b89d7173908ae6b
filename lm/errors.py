"""User-facing errors and how command-line faces report them."""

from __future__ import annotations

import sys

from lm import checkpoint, config, data, run, sharding, tokenizer

# Mistakes a user can make; each carries a one-line message naming the fix.
USER_ERRORS = (config.ConfigError, data.DataError, run.RunError,
               sharding.MeshError, tokenizer.TokenizerError,
               checkpoint.CheckpointError)


def exit_on_user_error(fn, *args, **kwargs):
  """Calls fn; a user error is printed as one line and exits with status 2."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
