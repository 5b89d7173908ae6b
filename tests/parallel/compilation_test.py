"""Tests of lm.parallel.compilation: the persistent cache and GPU XLA flags."""

from conftest import run_cli
import ml_collections

from lm.parallel import compilation


def settings(**kw):
  c = ml_collections.ConfigDict(dict(cache_dir='', cache_min_seconds=1.0,
                                     gpu_flags=True))
  c.update(kw)
  return c


def test_gpu_flags_are_added_once_and_the_users_win():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  assert compilation.configure(settings(), env) == list(compilation.GPU_FLAGS)
  assert env['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                              '--xla_gpu_enable_latency_hiding_scheduler=true')
  assert compilation.configure(settings(), env) == []  # Already there.
  env = {'XLA_FLAGS': '--xla_gpu_enable_latency_hiding_scheduler=false'}
  assert compilation.configure(settings(), env) == []
  assert env['XLA_FLAGS'].endswith('=false')
  env = {}
  assert compilation.configure(settings(gpu_flags=False), env) == []
  assert 'XLA_FLAGS' not in env


def test_a_second_run_loads_the_step_from_the_persistent_cache(tmp_path):
  cache = tmp_path / 'cache'
  args = ['lm.main', '--config=configs/shakespeare_char.py:test',
          f'--config.compile.cache_dir={cache}',
          '--config.compile.cache_min_seconds=0', '--config.eval.final=False',
          '--config.train.num_steps=2']
  log = {'JAX_DEBUG_LOG_MODULES': 'jax._src.compiler'}  # Logs cache hits.
  first = run_cli(*args, f'--workdir={tmp_path / "a"}', env=log)
  assert first.returncode == 0, first.stderr[-2000:]
  assert any(cache.iterdir())  # The compiled programs were written...
  with open(tmp_path / 'a' / 'logs' / 'library.log') as f:
    assert 'cache hit' not in (first.stderr + f.read()).lower()
  second = run_cli(*args, f'--workdir={tmp_path / "b"}', env=log)
  assert second.returncode == 0, second.stderr[-2000:]
  # ...and read back by the next run, the train step among them (JAX's log
  # records go to the run's library log once training starts).
  with open(tmp_path / 'b' / 'logs' / 'library.log') as f:
    logged = second.stderr + f.read()
  hits = [l for l in logged.splitlines() if 'cache hit' in l.lower()]
  assert any('train_step' in l for l in hits), hits
