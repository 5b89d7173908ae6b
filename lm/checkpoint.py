"""Orbax checkpoints of a run: train state, data-iterator state, eval metrics.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`. The manager keeps the latest
`max_to_keep` steps and, besides them, the step with the best eval loss.
Orbax writes each step to a temporary directory and renames it when complete,
so an interrupted write is never taken for the latest checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = 'eval/loss'


class CheckpointError(ValueError):
  """A checkpoint that is missing or cannot be used, as one line."""


def directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def _restore_args(abstract, partial=False) -> ocp.args.PyTreeRestore:
  """Restores into `abstract`'s shapes, dtypes and shardings (None: as saved)."""
  if abstract is None:
    return ocp.args.PyTreeRestore()
  return ocp.args.PyTreeRestore(
      item=abstract, partial_restore=partial,
      restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))


class Checkpointer:
  """Saves and restores a run's checkpoints in `WORKDIR/checkpoints`."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2,
               async_save: bool = True, read_only: bool = False):
    keep = policies.AnyPreservationPolicy([
        policies.LatestN(n=max_to_keep),
        # BestN keeps the last n after sorting: reverse=True keeps the lowest.
        policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True,
                       n=1, keep_checkpoints_without_metrics=False),
    ])
    self._manager = ocp.CheckpointManager(
        directory(workdir),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=keep, enable_async_checkpointing=async_save,
            # best_fn also makes Orbax write each step's metrics to disk, so
            # the best step is still known after a restart.
            best_fn=lambda m: m[BEST_METRIC], best_mode='min',
            read_only=read_only, create=not read_only),
        item_handlers={'state': ocp.PyTreeCheckpointHandler(),
                       'data': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the lowest eval loss, or None if none has one."""
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict | None,
           metrics: dict[str, float] | None = None) -> None:
    """Starts saving (asynchronously when configured); returns at once."""
    items = {'state': ocp.args.PyTreeSave(state)}
    if data_state is not None:
      items['data'] = ocp.args.JsonSave(data_state)
    best = ({BEST_METRIC: float(metrics[BEST_METRIC])}
            if metrics and BEST_METRIC in metrics else None)
    self._manager.save(step, args=ocp.args.Composite(**items), metrics=best,
                       force=True)

  def restore(self, step: int, abstract_state: Any,
              with_data: bool = True) -> tuple[Any, dict | None]:
    """The state at `step`, laid out as `abstract_state`'s shardings say."""
    items = {'state': _restore_args(abstract_state)}
    if with_data:
      items['data'] = ocp.args.JsonRestore()
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(**items))
    except FileNotFoundError as e:
      raise CheckpointError(f'checkpoint step {step} in '
                            f'{self._manager.directory} is incomplete: {e}'
                            ) from None
    return out['state'], (out['data'] if with_data else None)

  def restore_params(self, step: int, abstract_params: Any) -> Any:
    """Only the parameters at `step` (no optimizer state), as laid out."""
    args = _restore_args({'params': abstract_params}, partial=True)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(state=args))
    except (ValueError, KeyError) as e:
      raise CheckpointError(
          f'parameters at step {step} in {self._manager.directory} do not '
          f'match this model: {str(e).splitlines()[0][:300]}') from None
    return out['state']['params']

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
