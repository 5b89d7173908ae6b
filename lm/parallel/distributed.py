"""Joining a multi-process run (several hosts, or several processes on one).

JAX runs one process per host (a TPU VM worker, a GPU node or a SLURM task);
`jax.distributed.initialize` connects them before any device is touched, and
from then on `jax.devices()` lists every process's devices and a jitted step
runs on all of them. Each process reads its own share of the data
(`lm.data`), and only process 0 writes logs (`lm.train.writer`); every process
takes part in saving checkpoints (Orbax).

Two ways in:
* explicit: `--coordinator_address=HOST:PORT --num_processes=N
  --process_id=I` on every process (any cluster, or loopback on one machine);
* detected: on TPU pod slices, SLURM (`srun`) and Open MPI (`mpirun`) JAX
  finds the coordinator itself; `initialize()` notices the environment.
"""

from __future__ import annotations

import os

import jax

from lm import errors


class DistributedError(errors.UserError):
  """Inconsistent process flags, as one line."""


def cluster_detected(env=None) -> str | None:
  """The multi-process launcher this process runs under, if any."""
  env = os.environ if env is None else env
  if int(env.get('SLURM_NTASKS', '1') or 1) > 1:
    return 'SLURM'
  if int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1) > 1:
    return 'Open MPI'
  if ',' in env.get('TPU_WORKER_HOSTNAMES', ''):
    return 'TPU pod slice'
  return None


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1, env=None) -> bool:
  """Connects this process to the others; returns whether it did.

  Must run before anything asks JAX for devices. CPU processes exchange
  collectives over gloo (TCP), so a multi-process run also works, slowly, on
  CPUs alone (the tests run two over loopback).
  """
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise DistributedError(
          f'--coordinator_address needs --num_processes >= 1 and '
          f'0 <= --process_id < num_processes (got {num_processes} and '
          f'{process_id})')
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True
  if num_processes > 1 or process_id >= 0:
    raise DistributedError('--num_processes and --process_id need '
                           '--coordinator_address=HOST:PORT of process 0')
  if cluster_detected(env):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize()
    return True
  return False
