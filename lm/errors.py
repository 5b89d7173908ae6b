"""The one base of every mistake a user can make.

Each module that checks user input (configs, data files, run directories,
meshes, tokenizers, checkpoints, ...) raises its own subclass of `UserError`
with a one-line message naming the fix; the command lines (`lm.cli`) catch
the base and print that line, so they need not know every module.
"""


class UserError(ValueError):
  """A user's mistake, as one line that says what to fix."""
