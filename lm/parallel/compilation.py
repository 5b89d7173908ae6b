"""Compiler settings applied at start-up, before JAX touches a device.

* A persistent compilation cache (`compile.cache_dir`): a restarted or
  resumed run, or every worker of a pod slice after the first, loads the
  compiled train step instead of compiling it again (minutes for large
  models on TPU).
* XLA flags known to help on NVIDIA GPUs (`compile.gpu_flags`): the
  latency-hiding scheduler overlaps collectives with compute (the flag NVIDIA's
  JAX images set). Other backends ignore GPU flags.
"""

from __future__ import annotations

import os

import jax

GPU_FLAGS = ('--xla_gpu_enable_latency_hiding_scheduler=true',)


def configure(c_compile, env=None) -> list[str]:
  """Applies `c_compile`; returns the XLA flags it added to `env`."""
  env = os.environ if env is None else env
  if c_compile.cache_dir:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.expanduser(c_compile.cache_dir))
    jax.config.update('jax_persistent_cache_min_compile_time_secs',
                      c_compile.cache_min_seconds)
  added = []
  if c_compile.gpu_flags:
    present = env.get('XLA_FLAGS', '')
    for flag in GPU_FLAGS:
      if flag.split('=')[0] not in present:  # The user's own setting wins.
        added.append(flag)
    if added:
      env['XLA_FLAGS'] = ' '.join([present, *added]).strip()
  return added
