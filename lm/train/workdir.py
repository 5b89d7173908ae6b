"""A run's directory: its saved config, tokenizer and parameters.

A workdir holds `config.json` (the resolved config), the tokenizer
(`tokenizer.json`, and `tokenizer.model` for SentencePiece), `checkpoints/`,
`metrics.jsonl`, `tensorboard/`, `config_changes.jsonl` if a resume changed
the config (allow_config_change) and, after the final evaluation,
`eval_results.json`. Everything that reads or starts from a run (resume,
`init_from`, sampling, conversion, evaluation) goes through here.
"""

from __future__ import annotations

import json
import os
import time

from flax import nnx
import jax

from lm import config as config_lib
from lm import errors
from lm import tasks
from lm.data import tokenizer as tokenizer_lib
from lm.train import checkpoint as checkpoint_lib

CONFIG_FILE = 'config.json'


TOKENIZER_FILE = 'tokenizer.json'


RESULTS_FILE = 'eval_results.json'


CHANGES_FILE = 'config_changes.jsonl'


IMPORTED_FILE = 'hf_source.json'  # An imported Hugging Face checkpoint's run.


class RunError(errors.UserError):
  """A workdir or run setup that cannot be used, as one line."""


def resolve(config, vocab_size: int, filtered: dict | None = None):
  """Fills the derived fields: vocabulary, MLP width, compute dtype, and
  what the data filters changed (`data.filtered`, recorded in config.json)."""
  config = config.copy_and_resolve_references()
  if filtered is not None:
    config.data.filtered = json.dumps(filtered, sort_keys=True) if filtered else ''

  if config.model.vocab_size == 0:
    config.model.vocab_size = vocab_size
  elif config.model.vocab_size < vocab_size:
    raise RunError(f'model.vocab_size={config.model.vocab_size} is smaller '
                   f'than the tokenizer\'s {vocab_size}; set it to 0 to take '
                   'the tokenizer\'s')
  if config.model.mlp_dim == 0:
    config.model.mlp_dim = 4 * config.model.embed_dim
  if config.model.dtype == 'auto':
    config.model.dtype = ('float32' if jax.default_backend() == 'cpu'
                          else 'bfloat16')
  return config


def saved_config(workdir: str):
  """The resolved config of the run in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise RunError(f'{workdir} holds no run ({CONFIG_FILE} missing); train '
                   'one with python -m lm.main first')
  try:
    with open(path) as f:
      return config_lib.from_json(f.read())
  except (ValueError, KeyError, TypeError) as e:
    raise RunError(f'{path} is not a config this version can read ({e}); '
                   'restore it or use a new --workdir') from None


def make_workdir(workdir: str) -> None:
  """Creates the workdir, or says why it cannot be used."""
  if '://' in workdir:
    raise RunError(f'workdir {workdir} is a URL; give a file path (mount the '
                   'bucket, e.g. with Cloud Storage FUSE)')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise RunError(f'cannot create workdir {workdir}: {e.strerror}') from None
  if not os.access(workdir, os.W_OK):
    raise RunError(f'workdir {workdir} is not writable; choose another '
                   '--workdir')
  steps = checkpoint_lib.saved_steps(workdir)
  if steps and not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    # Nothing is written: a new config.json would claim the checkpoints.
    raise RunError(f'{workdir} holds checkpoints (the latest of step '
                   f'{steps[-1]}) but no {CONFIG_FILE}, so the model they '
                   f'were trained as is unknown; restore {CONFIG_FILE} or use '
                   'a new --workdir')


def prepare_workdir(workdir: str, config) -> None:
  """Creates the workdir, or checks that the run in it has the same model."""
  make_workdir(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  # Only a run with checkpoints is resumed; otherwise the new config starts.
  steps = checkpoint_lib.saved_steps(workdir)
  if os.path.exists(path) and steps:
    old = saved_config(workdir)
    changes = config_lib.architecture_changes(old, config)
    if changes:
      raise RunError(f'workdir {workdir} holds a run of another model '
                     f'({"; ".join(changes)}); use a new --workdir (or '
                     'init_from to start from its parameters)')
    if (old.train.ema_decay > 0) != (config.train.ema_decay > 0):
      raise RunError(f'workdir {workdir} holds a run '
                     f'{"with" if old.train.ema_decay else "without"} a moving '
                     'average of its parameters; keep train.ema_decay='
                     f'{old.train.ema_decay} or use a new --workdir')
    changes = config_lib.config_changes(old, config)
    if changes and not config.allow_config_change:
      raise RunError(f'workdir {workdir} holds a run of another config '
                     f'({"; ".join(changes)}); set '
                     '--config.allow_config_change=true to go on with the '
                     'change (it is recorded), or use a new --workdir')
    if changes and jax.process_index() == 0:
      _record_changes(workdir, steps[-1], changes)
  if jax.process_index() == 0:
    with open(path + '.tmp', 'w') as f:
      f.write(config_lib.to_json(config))
    os.replace(path + '.tmp', path)  # Never a half-written config.json.


def _record_changes(workdir: str, step: int, changes: list[str]) -> None:
  """Appends a config change to WORKDIR/config_changes.jsonl and says so."""
  record = {'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'after_step': step, 'changes': changes}
  with open(os.path.join(workdir, CHANGES_FILE), 'a') as f:
    f.write(json.dumps(record) + '\n')
  print(f'config changed after step {record["after_step"]} (recorded in '
        f'{CHANGES_FILE}): {"; ".join(changes)}', flush=True)


def saved_tokenizer(workdir: str, init_from: str, kind: str):
  """The tokenizer a run must keep: its own, else its init_from run's.

  None for a fresh run (the data trains one). A saved tokenizer of another
  kind than `data.tokenizer`, or runs that disagree, are refused.
  """
  for run_dir in filter(None, (workdir, init_from)):
    if (checkpoint_lib.saved_steps(run_dir) and
        not os.path.exists(os.path.join(run_dir, TOKENIZER_FILE))):
      raise RunError(f'{run_dir} holds checkpoints but no {TOKENIZER_FILE}: '
                     'its vocabulary is unknown; restore the file or use a '
                     'new --workdir')
  found = [(d, tokenizer_lib.load(d))
           for d in (workdir, init_from)
           if d and os.path.exists(os.path.join(d, TOKENIZER_FILE))]
  for run_dir, tok in found:
    if tok.kind != kind:
      raise RunError(f'{run_dir} was trained with a {tok.kind} tokenizer, '
                     f'not data.tokenizer={kind}; set it back or use a new '
                     '--workdir')
  if len(found) == 2 and found[0][1].fingerprint() != found[1][1].fingerprint():
    raise RunError(f'{workdir} and init_from={init_from} have different '
                   'vocabularies; use a new --workdir')
  return found[0][1] if found else None


def single_device_params(c):
  """The parameter shapes of run config `c` (any task), placed on the first
  device: what a one-device tool (sampling, conversion) restores into."""
  _, abstract = tasks.get(c).abstract()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      nnx.to_pure_dict(abstract))


def load_params(abstract_params, run_dir: str, step: int | None = None):
  """Parameters of a run's latest checkpoint (or `step`'s), laid out as
  `abstract_params` (which may be a subtree: {'encoder': ...}): their moving
  average when the run keeps one (`train.ema_decay`)."""
  if not checkpoint_lib.saved_steps(run_dir):
    raise RunError(f'{run_dir} holds no checkpoint; give a workdir that '
                   'python -m lm.main has trained')
  config = (saved_config(run_dir) if os.path.exists(
      os.path.join(run_dir, CONFIG_FILE)) else None)
  # The run's own setting says whether its unverified steps are trusted.
  ckpt = checkpoint_lib.Checkpointer(
      run_dir, read_only=True,
      trust_unverified=bool(config and config.checkpoint.trust_unverified))
  if step is None:
    step = ckpt.latest_step()
  elif step not in ckpt.all_steps():
    raise RunError(f'{run_dir} holds no checkpoint of step {step}; it has '
                   f'{", ".join(map(str, ckpt.all_steps()))}')
  ema = bool(config and config.train.ema_decay > 0)
  return ckpt.restore_params(step, abstract_params, 'ema' if ema else 'params')


def averaged_params(abstract_params, run_dir: str, last: int):
  """The mean of the parameters of a run's `last` latest checkpoints
  (fairseq's average_checkpoints; the moving average where the run keeps
  one), and the steps averaged. Fewer kept than `last` is an error."""
  steps = checkpoint_lib.saved_steps(run_dir)
  if len(steps) < last:
    raise RunError(f'{run_dir} keeps {len(steps)} checkpoint(s) '
                   f'({", ".join(map(str, steps)) or "none"}), fewer than the '
                   f'{last} to average; average fewer, or keep more '
                   '(checkpoint.max_to_keep) in the next run')
  chosen = sorted(steps)[-last:]
  total = None
  for step in chosen:
    params = load_params(abstract_params, run_dir, step)
    total = params if total is None else jax.tree.map(
        lambda a, b: a + b, total, params)
  return jax.tree.map(lambda x: x / last, total), chosen


MASKED_OR = ' or '.join(config_lib.MASKED_TASKS)


def check_init_from(c, tok) -> str:
  """Why the run in `c.init_from` cannot start this one ('' if it can):
  another vocabulary or model shape. Returns the part of the parameters to
  load: '' all of them, 'encoder' a pretrained encoder's."""
  if not checkpoint_lib.saved_steps(c.init_from):
    raise RunError(f'{c.init_from} holds no checkpoint; give a workdir that '
                   'python -m lm.main has trained')
  old, task = saved_config(c.init_from), tasks.TASKS[c.task]
  if task.specials and not {'cls', 'sep', 'mask'} <= set(
      tok.special_ids):
    raise RunError(f'init_from={c.init_from} has a tokenizer without [CLS], '
                   f'[SEP] and [MASK] (a {old.task} run); start task={c.task} '
                   f'from a task={MASKED_OR} run')
  for key in ('vocab_size', 'spm_model_type', 'lowercase', 'normalize'):
    if old.data[key] != c.data[key]:
      raise RunError(f'init_from={c.init_from} was trained with '
                     f'data.{key}={old.data[key]}, this run asks for '
                     f'{c.data[key]}: set data.{key}={old.data[key]} (its '
                     'tokenizer is reused)')
  changes = [x for x in config_lib.architecture_changes(old, c)
             if not x.startswith('model.num_classes')]
  if changes:
    raise RunError(f'init_from={c.init_from} holds another model shape '
                   f'({"; ".join(changes)}); use the config it was trained '
                   'with (e.g. the same :VARIANT)')
  part = task.loads_from(old.task)
  if part is not None:
    return part
  encoders = ' or '.join(name for name, part in task.starts_from.items()
                         if part)
  raise RunError(f'init_from={c.init_from} is a task={old.task} run; '
                 f'task={c.task} starts from a {encoders or c.task} run')


def adopt_imported(c):
  """`c`, with the architecture and tokenizer settings of its init_from run
  when that is an imported Hugging Face checkpoint (lm.convert from-hf),
  whose shape the checkpoint fixes; what changed is printed."""
  if not c.init_from or not os.path.exists(os.path.join(c.init_from,
                                                         IMPORTED_FILE)):
    return c
  old, c = saved_config(c.init_from), c.copy_and_resolve_references()
  keys = [f'model.{k}' for k in config_lib.ARCHITECTURE_KEYS + (
      'norm_eps', 'causal', 'class_names')
      if k not in ('num_classes', 'class_names') or
      tasks.TASKS[c.task].loads_from(old.task) == '']
  keys += [f'data.{k}' for k in ('tokenizer', 'vocab_size', 'spm_model_type',
                                 'lowercase', 'normalize')]
  changed = []
  for key in keys:
    section, field = key.split('.')
    if c[section][field] != old[section][field]:
      changed.append(f'{key}={old[section][field]}')
      c[section][field] = old[section][field]
  if changed:
    print(f'init_from={c.init_from} is an imported Hugging Face model; '
          f'taking its {", ".join(changed)}', flush=True)
  config_lib.validate(c)
  return c
