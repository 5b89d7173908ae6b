"""Dry run: compile the train step ahead of time and account for its memory.

`python -m lm.main --config=... --dry_run` builds the mesh, lowers and
compiles the sharded train step for abstract state and batch (nothing is
allocated or trained) and reports, per device: parameter and optimizer
bytes (from the shardings, and the compiled program's argument size), the
compiler's temporaries (activations kept for the backward pass and
workspace), the peak, and the FLOPs of a step with the fastest step the
chip's peak allows. A config that does not fit the device's memory stops
here with one line. `--simulate_devices=N` compiles for N CPU devices, so a
mesh larger than the machine (a pod slice) can be checked on a laptop;
`--device_kind=H100` then names the chip whose memory and peak to compare
against (the temporaries are the CPU compiler's, a guide to an
accelerator's, not its exact figure).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import numpy as np

from lm import errors
from lm.models import transformer
from lm.parallel import sharding
from lm.train import flops
from lm.train import trainer as train_lib


class DryRunError(errors.UserError):
  """A config that compiles but does not fit, as one line."""


@dataclasses.dataclass
class Report:
  mesh: dict[str, int]
  device_kind: str
  num_params: int
  params_bytes: int  # Per device, from the parameter shardings.
  opt_state_bytes: int  # Per device, from the optimizer-state shardings.
  argument_bytes: int  # The compiled step's inputs: state and batch.
  output_bytes: int
  alias_bytes: int  # Outputs written over donated inputs.
  temp_bytes: int  # Activations, gradients and workspace.
  batch_bytes: int  # Per device, of the step's inputs.
  device_memory: float | None
  model_flops_per_device: float  # One step, 6N + attention (lm.train.flops).
  # XLA's count, recompute included; None when the program loops (XLA
  # counts a loop body once: scanned layers, gradient accumulation).
  compiled_flops_per_device: float | None
  peak_flops: float | None
  tokens_per_step: int
  compile_seconds: float
  # The compiled train step, callable as trainer.train_step is.
  compiled: Any = dataclasses.field(default=None, repr=False, compare=False)

  @property
  def state_bytes(self) -> int:
    """Parameters and optimizer state per device, as the compiled step
    holds them (its inputs, the batch taken off)."""
    return self.argument_bytes - self.batch_bytes

  @property
  def peak_bytes(self) -> int:
    """Live at the step's high point: inputs, temporaries and the outputs
    not written in place of donated inputs."""
    return (self.argument_bytes + self.temp_bytes + self.output_bytes -
            self.alias_bytes)

  @property
  def fits(self) -> bool:
    return self.device_memory is None or self.peak_bytes <= self.device_memory

  @property
  def mfu_ceiling(self) -> float | None:
    """Model FLOPs over compiled FLOPs: the MFU if every compiled FLOP ran at
    peak (rematerialisation lowers it)."""
    if not self.compiled_flops_per_device:
      return None
    return self.model_flops_per_device / self.compiled_flops_per_device


def per_device_bytes(tree, shardings) -> int:
  """Bytes of one device's shards of an abstract tree."""
  return sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
             for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def abstract_batch(c, trainer) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of a training batch of `c.task` (its task's
  `batch_shapes`)."""
  return {k: jax.ShapeDtypeStruct(shape, dtype,
                                  sharding=trainer.batch_sharding)
          for k, (shape, dtype) in trainer.task.batch_shapes().items()}


def analyse(c, device_kind: str | None = None, devices=None,
            trainer: train_lib.Trainer | None = None) -> Report:
  """Compiles the train step of resolved config `c` on its mesh over
  `devices` (default all) and measures it. `device_kind` overrides the chip
  whose memory and peak are compared against; `trainer` (one already built
  for `c`) is used instead of a new one."""
  if trainer is None:
    mesh = sharding.make_mesh(c.mesh, devices)
    sharding.check_batch(c, mesh)
    sharding.check_model(c, mesh)
    trainer = train_lib.Trainer(c, mesh)
  mesh = trainer.mesh
  state = trainer.abstract_state
  batch = abstract_batch(c, trainer)
  t0 = time.perf_counter()
  compiled = trainer.train_step.lower(state, batch).compile()
  seconds = time.perf_counter() - t0
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if cost and 'while(' in compiled.as_text():
    cost = None
  device = jax.devices()[0]
  kind = device_kind or device.device_kind
  limit = None
  if device_kind is None and device.platform != 'cpu':
    limit = (device.memory_stats() or {}).get('bytes_limit')
  limit = limit or flops.device_memory(kind)
  num_params = transformer.count_params(state['params'])
  tokens = c.data.batch_size * c.model.max_len
  model_flops = flops.train_flops_per_token(trainer.model_cfg, num_params)
  return Report(
      mesh=dict(mesh.shape), device_kind=kind, num_params=num_params,
      params_bytes=per_device_bytes(state['params'],
                                    trainer.state_shardings['params']),
      opt_state_bytes=per_device_bytes(state['opt_state'],
                                       trainer.state_shardings['opt_state']),
      argument_bytes=memory.argument_size_in_bytes,
      output_bytes=memory.output_size_in_bytes,
      alias_bytes=memory.alias_size_in_bytes,
      temp_bytes=memory.temp_size_in_bytes,
      batch_bytes=per_device_bytes(batch, jax.tree.map(lambda x: x.sharding,
                                                       batch)),
      device_memory=limit,
      model_flops_per_device=model_flops * tokens / mesh.size,
      compiled_flops_per_device=(cost or {}).get('flops'),
      peak_flops=flops.peak_flops(kind), tokens_per_step=tokens,
      compile_seconds=seconds, compiled=compiled)


def format_bytes(n: float) -> str:
  return f'{n / 2**30:.2f} GiB' if n >= 2**30 else f'{n / 2**20:.1f} MiB'


def format_report(r: Report) -> str:
  size = lambda n: f'{format_bytes(n):>12}'
  flop = lambda n: f'{n / 1e12:.4g} TFLOP' if n >= 1e12 else (
      f'{n / 1e9:.4g} GFLOP')
  lines = [
      f'dry run: {r.num_params:,} parameters on mesh {r.mesh} '
      f'({r.device_kind}); train step compiled in {r.compile_seconds:.1f} s',
      'per device:',
      f'  parameters        {size(r.params_bytes)}',
      f'  optimizer state   {size(r.opt_state_bytes)}',
      f'  step inputs       {size(r.argument_bytes)}  (state + batch, '
      'compiled)',
      f'  temporaries       {size(r.temp_bytes)}  (activations, gradients, '
      'workspace)',
      f'  peak              {size(r.peak_bytes)}' + (
          f'  of {format_bytes(r.device_memory)} '
          f'({r.peak_bytes / r.device_memory:.0%})' if r.device_memory
          else '  (device memory unknown)'),
      f'FLOPs per step per device: {flop(r.model_flops_per_device)} (model: '
      '6N + attention)' + (f', {flop(r.compiled_flops_per_device)} (compiled)'
                           if r.compiled_flops_per_device else ''),
  ]
  if r.mfu_ceiling is not None:
    lines.append(f'MFU ceiling (model / compiled FLOPs): {r.mfu_ceiling:.0%}')
  if r.peak_flops:
    fastest = r.model_flops_per_device / r.peak_flops
    devices = math.prod(r.mesh.values())
    lines.append(
        f'at the {r.peak_flops / 1e12:.0f} TFLOP/s peak: a step takes at '
        f'least {fastest * 1e3:.1f} ms; at 50% MFU '
        f'{r.tokens_per_step / (2 * fastest) / devices:,.0f} tokens/s per '
        'device')
  return '\n'.join(lines)


def check_fits(r: Report) -> None:
  if not r.fits:
    raise DryRunError(
        f'does not fit: a step needs {format_bytes(r.peak_bytes)} per device, '
        'the '
        f'{r.device_kind} has {format_bytes(r.device_memory)}; shard more '
        '(mesh.fsdp, mesh.tensor), recompute (model.remat=full), '
        'accumulate gradients (optim.grad_accum_steps) or shrink '
        'data.batch_size')
