"""Tests of lm.parallel.host: glibc keeps XLA:CPU's per-step buffers mapped."""

import subprocess
import sys

import pytest

from lm.parallel import host

# A jitted step whose temporaries (a few 16 MiB arrays) are freed and
# allocated again on every call; prints the page faults per call.
PROBE = '''
import resource, sys
from lm.parallel import host
if sys.argv[1] == '1':
  assert host.keep_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: (jnp.sin(x) * jnp.cos(x)).sum(0) + jnp.tanh(x).sum(0))
x = jnp.ones((1024, 4096))
for _ in range(10):  # Warm-up: every worker thread has its arena.
  f(x).block_until_ready()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
  f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 20)
'''


def faults_per_call(keep: bool) -> float:
  out = subprocess.run([sys.executable, '-c', PROBE, '1' if keep else '0'],
                       capture_output=True, text=True, check=True,
                       env={'JAX_PLATFORMS': 'cpu', 'PATH': ''})
  return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc malloc tuning is Linux-only')
def test_keeping_freed_memory_stops_page_fault_churn():
  default, kept = faults_per_call(False), faults_per_call(True)
  assert default > 1000, default  # 16 MiB = 4096 pages re-faulted per call.
  assert kept < default / 2, (kept, default)


def test_can_be_turned_off(monkeypatch):
  monkeypatch.setenv('LM_KEEP_FREED_MEMORY', '0')
  assert host.keep_freed_memory() is False
