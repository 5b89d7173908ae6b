"""Test setup: 8 simulated CPU devices (set before JAX is imported), paths."""

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


@pytest.fixture
def test_config():
  """The tiny test variant of the default config (embedded Tiny Shakespeare)."""
  sys.path.insert(0, str(REPO / 'configs'))
  try:
    import shakespeare_char  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  return shakespeare_char.get_config('test')


def run_cli(*args, env=None, timeout=300):
  """Runs `python -m ARGS` from the repo root; returns the completed process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  full_env = dict(os.environ, **(env or {}))
  full_env['XLA_FLAGS'] = ''  # The CLI runs on the one real CPU device.
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO,
                        capture_output=True, text=True, env=full_env,
                        timeout=timeout)
