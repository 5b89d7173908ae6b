"""Test setup: 8 simulated CPU devices (set before JAX is imported), paths."""

import contextlib
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# The suite's models are tiny: compiling them takes most of its time, running
# them little. LLVM's optimisation of XLA's CPU code off halves compile times;
# the heavy kernels (dots) are library calls, as fast either way. Every
# process a test starts gets it too.
FAST_COMPILE = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8 ' +
                           FAST_COMPILE)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Prepared TFDS datasets go to a directory of this test process (xdist
# workers never race on one), which CLI subprocesses inherit.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='lm_tfds_')
# One persistent compilation cache for the test session, shared by the xdist
# workers and the CLI subprocesses they start: the many tests that train the
# same tiny models compile each step once. (Tests of the cache itself set
# their own compile.cache_dir.)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    tempfile.gettempdir(), f'lm_jax_cache_{os.getpid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

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


def train_test_run(config: str, workdir: str, init_from: str = '') -> str:
  """A run of configs/CONFIG.py:test (the final evaluation off) in
  `workdir`, started from `init_from`'s parameters if given."""
  from lm.train import loop  # pylint: disable=g-import-not-at-top
  c = load_config(config, 'test')
  c.eval.final = False
  c.init_from = init_from
  loop.train_and_evaluate(c, workdir)
  return workdir


@pytest.fixture(scope='session')
def multi30k_run(tmp_path_factory):
  """One tiny translation run (configs/multi30k.py:test, two checkpoints
  kept) for the test session's read-only uses of a trained run."""
  return train_test_run('multi30k', str(tmp_path_factory.mktemp('mt') /
                                        'run'))


@pytest.fixture
def test_config():
  """The tiny test variant of the default config (embedded Tiny Shakespeare)."""
  return load_config('shakespeare_char', 'test')


def cli_env(env=None) -> dict[str, str]:
  """The environment of a command a test starts: this one's, on the one real
  CPU device unless `env` sets XLA_FLAGS, updated by `env`."""
  full_env = dict(os.environ, XLA_FLAGS='')
  full_env.update(env or {})
  full_env['XLA_FLAGS'] = f'{full_env["XLA_FLAGS"]} {FAST_COMPILE}'.strip()
  return full_env


def popen_cli(*args, **kwargs):
  """Starts `python -m ARGS` from the repo root on the one real CPU device;
  kwargs go to subprocess.Popen (stdout, stderr, text, ...)."""
  return subprocess.Popen([sys.executable, '-m', *args], cwd=REPO,
                          env=cli_env(), **kwargs)


def run_cli(*args, env=None, timeout=300, input=None):  # pylint: disable=redefined-builtin
  """Runs `python -m ARGS` from the repo root (environment: cli_env(env)),
  `input` on its stdin; returns the completed process."""
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO,
                        capture_output=True, text=True, env=cli_env(env),
                        timeout=timeout, input=input)


@contextlib.contextmanager
def unwritable(path):
  """A directory that refuses new files inside the `with` block: chmod for a
  user; root ignores modes, so chattr +i, and where a container denies that
  capability the test is skipped (it cannot be made to fail there)."""
  path = str(path)
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
  elif subprocess.run(['chattr', '+i', path],
                      capture_output=True).returncode != 0:
    pytest.skip('cannot make a directory unwritable for root here '
                '(no CAP_LINUX_IMMUTABLE)')
  try:
    yield
  finally:
    if os.geteuid() != 0:
      os.chmod(path, 0o755)
    else:
      subprocess.run(['chattr', '-i', path], check=True)


def pytest_unconfigure(config):
  """The session's compilation cache goes with it (removed by the process
  that created it: the xdist controller, or a run without workers)."""
  cache = os.environ.get('JAX_COMPILATION_CACHE_DIR', '')
  if (not hasattr(config, 'workerinput') and
      os.path.basename(cache) == f'lm_jax_cache_{os.getpid()}'):
    shutil.rmtree(cache, ignore_errors=True)


def pytest_addoption(parser):
  parser.addoption('--golden-print', action='store_true',
                   help='golden_test: print the numbers measured now')
