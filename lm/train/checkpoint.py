"""Orbax checkpoints of a run: train state, data-iterator state, eval metrics.

Layout: `WORKDIR/checkpoints/<step>/{state,data,manifest.json}`. The manager
keeps the latest `max_to_keep` steps and, besides them, the step with the best
eval metric (eval loss; a classifier's accuracy). Orbax writes each step to
`<step>.orbax-checkpoint-tmp` and renames it when complete, so an interrupted
write is never taken for the latest checkpoint (leftovers are removed, before
anything else, at the next start). Just before the rename, the size and SHA-256
of every file go into `manifest.json`: a restore checks them first, so bad
bytes, a truncated or a missing file are reported by step and path, and with
`fallback` the previous intact step is used instead (the bad one is moved to
`WORKDIR/corrupt_checkpoints/`). A save that fails (disk full, permission
denied) is reported and counted; training goes on, and the next save tries
again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import time
from typing import Any
from typing import Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from lm import errors

BEST_METRIC = 'eval/loss'
MANIFEST = 'manifest.json'
# Orbax rewrites or writes these when it commits, after the manifest is
# written (commit_success.txt marks a finished save on some file systems).
_UNCHECKED = (MANIFEST, '_CHECKPOINT_METADATA', 'commit_success.txt')
_TMP_SUFFIX = '.orbax-checkpoint-tmp'
# Orbax splits the write of an array replicated over R devices into R slices,
# one per device, and compiles a slice for each shape and device the first
# time. Below 1 MiB a slice saves less write time than its compile costs.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _type_handlers() -> ocp.type_handlers.TypeHandlerRegistry:
  """Orbax's standard handlers; jax.Arrays split across replicas only in
  slices of MIN_REPLICA_SLICE_BYTES or more."""
  handlers = []
  for ty in ocp.type_handlers.supported_types():
    handler = ocp.type_handlers.get_type_handler(ty)
    if ty is jax.Array:
      handler = ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
          # The standard handler's store of per-array metadata, if it has one.
          array_metadata_store=getattr(handler, '_array_metadata_store', None))
    handlers.append((ty, handler))
  return ocp.type_handlers.create_type_handler_registry(*handlers)


class CheckpointError(errors.UserError):
  """A checkpoint that is missing or cannot be used, as one line."""


def directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def saved_steps(workdir: str) -> list[int]:
  """The steps of `workdir/checkpoints` (complete ones: Orbax's unfinished
  writes carry a suffix), read from the directory without opening Orbax."""
  path = directory(workdir)
  return sorted(int(n) for n in os.listdir(path)
                if n.isdigit()) if os.path.isdir(path) else []


def _files(step_dir: str) -> list[str]:
  return sorted(os.path.relpath(os.path.join(root, name), step_dir)
                for root, _, names in os.walk(step_dir) for name in names
                if name not in _UNCHECKED)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def write_manifest(step_dir: str) -> None:
  """Records each file's size and SHA-256 in `step_dir/manifest.json`."""
  files = {name: [os.path.getsize(os.path.join(step_dir, name)),
                  _sha256(os.path.join(step_dir, name))]
           for name in _files(step_dir)}
  path = os.path.join(step_dir, MANIFEST)
  with open(path + '.tmp', 'w') as f:
    json.dump(files, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(path + '.tmp', path)


def verify(step_dir: str) -> str | None:
  """None if every file of the manifest is there, whole and unchanged; else
  what is wrong with the first that is not."""
  try:
    with open(os.path.join(step_dir, MANIFEST)) as f:
      files = sorted(json.load(f).items())
    files = [(str(name), int(size), str(sha)) for name, (size, sha) in files]
  except (OSError, ValueError, TypeError, AttributeError):
    return f'{MANIFEST} is unreadable'
  if not files:
    return f'{MANIFEST} lists no files'
  unlisted = sorted(set(_files(step_dir)) - {name for name, _, _ in files})
  if unlisted:  # A file the manifest does not vouch for.
    return f'{unlisted[0]} is not in {MANIFEST}'
  for name, size, sha in files:
    path = os.path.join(step_dir, name)
    if not os.path.exists(path):
      return f'{name} is missing'
    if os.path.getsize(path) != size:
      return (f'{name} has {os.path.getsize(path):,} bytes, '
              f'{size:,} were written (truncated?)')
    if _sha256(path) != sha:
      return f'{name} has changed bytes (SHA-256 mismatch)'
  return None


def _restore_args(abstract, partial=False) -> ocp.args.PyTreeRestore:
  """Restores into `abstract`'s shapes, dtypes and shardings (None: as saved)."""
  if abstract is None:
    return ocp.args.PyTreeRestore()
  return ocp.args.PyTreeRestore(
      item=abstract, partial_restore=partial,
      restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0][:300] if text else ""}'


def _why_not_saved(e: Exception) -> str:
  """Why a save failed, short: the operating system's reason where there
  is one (TensorStore buries it at the end of a long line of paths)."""
  code = getattr(e, 'errno', None)
  found = re.search(r"os_error_code='?(\d+)", str(e))
  if found:
    code = int(found.group(1))
  return os.strerror(code) if code else _first_line(e)


def _damaged_metadata(workdir: str) -> tuple[int, str] | None:
  """(step, file) of the first step whose saved metrics (the JSON Orbax
  reads when it opens the directory) do not parse; None if all do."""
  for step in saved_steps(workdir):
    path = os.path.join(directory(workdir), str(step), 'metrics', 'metrics')
    try:
      with open(path) as f:
        json.load(f)
    except FileNotFoundError:
      continue
    except (OSError, ValueError):
      return step, path
  return None


class Checkpointer:
  """Saves and restores a run's checkpoints in `WORKDIR/checkpoints`."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2,
               async_save: bool = True, read_only: bool = False,
               best_metric: str = BEST_METRIC, best_mode: str = 'min',
               trust_unverified: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.trust_unverified = trust_unverified
    self.directory = directory(workdir)
    self.failures: list[tuple[int, str]] = []  # (step, why) of failed saves.
    self._async = async_save
    self._reported = 0  # Failures new_failures() has returned.
    self._step = None  # The step of the latest save started.
    self.best_metric, self.best_mode = best_metric, best_mode
    keep = policies.AnyPreservationPolicy([
        policies.LatestN(n=max_to_keep),
        # BestN keeps the last n after sorting: reverse=True keeps the lowest.
        policies.BestN(get_metric_fn=lambda m: m[best_metric],
                       reverse=best_mode == 'min', n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    if not read_only and jax.process_index() == 0:
      # Orbax removes them too, but in a background thread that can race the
      # next save of the same step (both delete its temporary directory).
      for path in glob.glob(os.path.join(glob.escape(self.directory),
                                         f'*{_TMP_SUFFIX}*')):
        shutil.rmtree(path, ignore_errors=True)
    try:
      self._manager = self._make_manager(keep, read_only)
    except (ValueError, KeyError, TypeError) as e:  # E.g. damaged metrics.
      damaged = _damaged_metadata(workdir)
      where = (f': step {damaged[0]}\'s {damaged[1]} is damaged; move that '
               'step' if damaged else '; move the damaged step')
      raise CheckpointError(f'cannot read the checkpoints in {self.directory}'
                            f' ({_first_line(e)}){where} aside or use a new '
                            '--workdir') from None

  def _make_manager(self, keep, read_only):
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=keep,
            # Always Orbax's async checkpointer: its callback writes the
            # manifest into the temporary directory before the rename.
            enable_async_checkpointing=True,
            async_options=ocp.AsyncOptions(
                post_finalization_callback=self._write_manifest),
            # best_fn also makes Orbax write each step's metrics to disk, so
            # the best step is still known after a restart.
            best_fn=lambda m: m[self.best_metric], best_mode=self.best_mode,
            read_only=read_only, create=not read_only,
            cleanup_tmp_directories=not read_only),
        item_handlers={'state': ocp.PyTreeCheckpointHandler(
            type_handler_registry=_type_handlers()),
                       'data': ocp.JsonCheckpointHandler()})

  def _write_manifest(self) -> None:
    if jax.process_index() != 0:  # Runs after all processes have written.
      return
    pending = glob.glob(os.path.join(
        glob.escape(self.directory), f'{self._step}{_TMP_SUFFIX}*'))
    if len(pending) != 1:
      raise CheckpointError(f'cannot find the temporary directory of step '
                            f'{self._step} in {self.directory}')
    write_manifest(pending[0])

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the best metric (by default the lowest eval loss),
    or None if none has one."""
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  # -- saving ----------------------------------------------------------------

  def _finish_previous(self) -> None:
    """Waits for the save in flight; records it as failed if it did, and
    removes what it left (it would take space)."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self.failures.append((self._step, _why_not_saved(e)))
      if jax.process_index() == 0:
        for path in glob.glob(os.path.join(glob.escape(self.directory),
                                           f'{self._step}{_TMP_SUFFIX}*')):
          shutil.rmtree(path, ignore_errors=True)

  def _probe(self) -> str | None:
    """Why no file can be created in the directory now, or None; the same
    answer on every process (Orbax would fail later, in threads that wait
    minutes for each other, and processes must skip a save together)."""
    why = ''
    if jax.process_index() == 0:
      probe = os.path.join(self.directory, f'.write-probe-{os.getpid()}')
      try:
        os.makedirs(self.directory, exist_ok=True)
        with open(probe, 'w') as f:
          f.write('ok')
        os.remove(probe)
      except OSError as e:
        why = _first_line(e)
    if jax.process_count() > 1:
      code = np.frombuffer(why.encode()[:512].ljust(512), np.uint8)
      why = bytes(multihost_utils.broadcast_one_to_all(code)).decode(
          errors='replace').strip()
    return why or None

  def save(self, step: int, state: Any, data_state: dict | None,
           metrics: dict[str, float] | None = None) -> bool:
    """Starts saving (asynchronously when configured). False, with the
    reason in `failures`, if this save (or the one before it, finishing in the
    background) failed; the run can go on and save again later."""
    before = len(self.failures)
    self._finish_previous()
    items = {'state': ocp.args.PyTreeSave(state)}
    if data_state is not None:
      items['data'] = ocp.args.JsonSave(data_state)
    key = self.best_metric
    best = ({key: float(metrics[key])} if metrics and key in metrics
            else None)
    why = self._probe()
    if why:
      self.failures.append((step, why))
      return False
    try:
      self._step = step
      self._manager.save(step, args=ocp.args.Composite(**items), metrics=best,
                         force=True)
    except Exception as e:  # pylint: disable=broad-except
      self.failures.append((step, _why_not_saved(e)))
      self._finish_previous()  # Whatever Orbax started for it, finished.
    if not self._async:
      self._finish_previous()
    return len(self.failures) == before

  def new_failures(self) -> list[tuple[int, str]]:
    """The failed saves not returned by an earlier call."""
    new, self._reported = self.failures[self._reported:], len(self.failures)
    return new

  def wait(self) -> bool:
    """Waits for the save in flight; False if it failed."""
    before = len(self.failures)
    self._finish_previous()
    return len(self.failures) == before

  def close(self) -> None:
    self.wait()
    self._manager.close()

  # -- restoring -------------------------------------------------------------

  def check(self, step: int) -> None:
    """Raises CheckpointError naming step, path and fault if `step` is not
    intact. A step without a manifest (written before manifests existed, or
    the manifest deleted) cannot be verified: an error, unless the
    Checkpointer trusts unverified steps (then used, with a warning)."""
    if not os.path.exists(os.path.join(self.step_dir(step), MANIFEST)):
      if not self.trust_unverified:
        raise CheckpointError(
            f'checkpoint step {step} at {self.step_dir(step)} has no '
            f'{MANIFEST}, so its files cannot be verified; set '
            '--config.checkpoint.trust_unverified=true to use it anyway')
      logging.warning('checkpoint step %d at %s has no %s: its files cannot '
                      'be checked', step, self.step_dir(step), MANIFEST)
      return
    problem = verify(self.step_dir(step))
    if problem:
      raise CheckpointError(f'checkpoint step {step} at {self.step_dir(step)}'
                            f' is corrupted: {problem}')

  def restore(self, step: int, abstract_state: Any, with_data: bool = True,
              checked: bool = False) -> tuple[Any, dict | None]:
    """The state at `step`, laid out as `abstract_state`'s shardings say."""
    if not checked:
      self.check(step)
    items = {'state': _restore_args(abstract_state)}
    if with_data:
      items['data'] = ocp.args.JsonRestore()
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(**items))
    except FileNotFoundError as e:
      raise CheckpointError(f'checkpoint step {step} in {self.directory} is '
                            f'incomplete: {e}') from None
    return out['state'], (out['data'] if with_data else None)

  def restore_latest(self, abstract_state: Any, fallback: bool = False,
                     say: Callable[[str], None] = print
                     ) -> tuple[int, Any, dict | None] | None:
    """(step, state, data state) of the newest intact checkpoint, or None if
    there is none. A corrupted newest step is an error naming it, or with
    `fallback` is moved aside (said through `say`) for the one before it."""
    steps = sorted(self.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      try:
        self.check(step)
      except CheckpointError as e:
        if i + 1 == len(steps):  # Never a fresh start: it drops the log.
          raise CheckpointError(f'{e}; no earlier checkpoint is kept: use a '
                                'new --workdir') from None
        if not fallback:
          raise CheckpointError(f'{e}; set --config.checkpoint.fallback=true '
                                f'to resume from step {steps[i + 1]}'
                                ) from None
        moved = self._set_aside(step)
        say(f'{e}; moved to {moved}; falling back to step {steps[i + 1]}')
        continue
      state, data = self.restore(step, abstract_state, checked=True)
      return step, state, data
    return None

  def _set_aside(self, step: int) -> str:
    """Moves a corrupted step out of the checkpoint directory."""
    target = os.path.join(self.workdir, 'corrupt_checkpoints',
                          f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(self.step_dir(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    self._manager.reload()
    return target

  def restore_params(self, step: int, abstract_params: Any,
                     key: str = 'params') -> Any:
    """Only the parameters at `step` (no optimizer state), as laid out;
    `key='ema'`: their moving average."""
    self.check(step)
    args = _restore_args({key: abstract_params}, partial=True)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(state=args))
    except (ValueError, KeyError) as e:
      raise CheckpointError(
          f'parameters at step {step} in {self.directory} do not '
          f'match this model: {str(e).splitlines()[0][:300]}') from None
    return out['state'][key]
