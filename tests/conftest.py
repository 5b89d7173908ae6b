"""Test setup: 8 simulated CPU devices (set before JAX is imported), paths."""

import importlib
import os
import pathlib
import sys
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Prepared TFDS datasets go to a directory of this test process (xdist
# workers never race on one), which CLI subprocesses inherit.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='lm_tfds_')

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


def load_config(name: str, variant=None):
  """configs/NAME.py's get_config(variant)."""
  sys.path.insert(0, str(REPO / 'configs'))
  try:
    module = importlib.import_module(name)
  finally:
    sys.path.pop(0)
  return module.get_config(variant)


@pytest.fixture
def test_config():
  """The tiny test variant of the default config (embedded Tiny Shakespeare)."""
  return load_config('shakespeare_char', 'test')


def run_cli(*args, env=None, timeout=300):
  """Runs `python -m ARGS` from the repo root; returns the completed process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  full_env = dict(os.environ, **(env or {}))
  full_env['XLA_FLAGS'] = ''  # The CLI runs on the one real CPU device.
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO,
                        capture_output=True, text=True, env=full_env,
                        timeout=timeout)


class unwritable:  # pylint: disable=invalid-name
  """Makes a directory refuse new files while in the `with` block (chmod for
  a user; root ignores modes, so chattr +i, skipping where that is denied)."""

  def __init__(self, path):
    self.path = str(path)

  def __enter__(self):
    import subprocess  # pylint: disable=g-import-not-at-top
    if os.geteuid() != 0:
      os.chmod(self.path, 0o555)
    elif subprocess.run(['chattr', '+i', self.path],
                        capture_output=True).returncode != 0:
      pytest.skip('cannot make a directory unwritable for root here')
    return self

  def __exit__(self, *exc):
    self.release()

  def release(self):
    import subprocess  # pylint: disable=g-import-not-at-top
    if os.geteuid() != 0:
      os.chmod(self.path, 0o755)
    else:
      subprocess.run(['chattr', '-i', self.path], check=True)
