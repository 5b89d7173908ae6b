"""The training loop: train, evaluate, checkpoint, and resume a run's workdir.

One loop for every task (`config.task`: a GPT, a masked-LM encoder, an
ELECTRA encoder, a classifier); `lm.tasks` gives it each task's rows and
evaluations.

A workdir holds `config.json` (the resolved config), the tokenizer
(`tokenizer.json`, and `tokenizer.model` for SentencePiece), `checkpoints/`,
`metrics.jsonl`, `tensorboard/`, `config_changes.jsonl` if a resume changed
the config (allow_config_change) and, after the final evaluation,
`eval_results.json`. Starting in a workdir that holds checkpoints resumes from
the latest one, data iterator included, with the tokenizer saved there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
from flax import nnx
import numpy as np

from lm import checkpoint as checkpoint_lib
from lm import config as config_lib
from lm import data as data_lib
from lm import embeddings as embeddings_lib
from lm import flops
from lm import heads
from lm import metrics as metrics_lib
from lm import model as model_lib
from lm import preprocess
from lm import preemption as preemption_lib
from lm import sharding
from lm import tasks
from lm import tokenizer as tokenizer_lib
from lm import train as train_lib
from lm import writer as writer_lib

CONFIG_FILE = 'config.json'
TOKENIZER_FILE = 'tokenizer.json'
RESULTS_FILE = 'eval_results.json'
CHANGES_FILE = 'config_changes.jsonl'
IMPORTED_FILE = 'hf_source.json'  # An imported Hugging Face checkpoint's run.


class RunError(ValueError):
  """A workdir or run setup that cannot be used, as one line."""


class NumericsError(RunError):
  """Non-finite loss or gradients under train.nonfinite='stop'."""


@dataclasses.dataclass
class Summary:
  """What a finished run produced."""
  workdir: str
  steps: int
  final_eval_loss: float
  best_eval_loss: float
  tokens_per_sec: float
  losses: list[float]
  final: dict[str, dict[str, float]]  # Split -> metrics of the whole split.
  preempted: str | None = None  # The signal that stopped the run early.


def resolve(config, vocab_size: int):
  """Fills the derived fields: vocabulary, MLP width, compute dtype."""
  config = config.copy_and_resolve_references()
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
  found = [(d, tokenizer_lib.load(d)) for d in (workdir, init_from)
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


def evaluate_saved(config, workdir: str, step: int | None = None
                   ) -> dict[str, dict]:
  """The final evaluation (`Task.final`) of a finished run's parameters,
  latest or at `step`, under `config` (e.g. with another eval.max_len: train
  short, test long)."""
  corpus = data_lib.load_corpus(
      config.data, config.model.max_len,
      tokenizer=saved_tokenizer(workdir, '', config.data.tokenizer))
  c = resolve(config, corpus.tokenizer.vocab_size)
  trainer = train_lib.Trainer(c, sharding.make_mesh(c.mesh))
  params = load_params(trainer.abstract_state['params'], workdir, step)
  return tasks.Task(c, corpus).final(trainer, params)


def eval_config(workdir: str, max_len: int = 0, stride: int = 0,
                batch_size: int = 8):
  """The saved config of causal_lm run `workdir`, set to evaluate in windows
  of `max_len` (0: the model's) `stride` apart, `batch_size` at a time, on
  all devices."""
  c = saved_config(workdir)
  if c.task != 'causal_lm':
    raise RunError(f'{workdir} is a task={c.task} run; perplexity is for '
                   'causal_lm runs (a classifier: python -m lm.finetune '
                   'evaluate)')
  c.eval.update(max_len=max_len, stride=stride, batch_size=batch_size)
  c.data.batch_size = batch_size
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 1, 1
  config_lib.validate(c)
  return c


def text_perplexity(workdir: str, path: str, max_len: int = 0,
                    stride: int = 0, batch_size: int = 8,
                    step: int | None = None) -> dict[str, float]:
  """Loss, perplexity, per-word perplexity and bits per byte of the run on
  the text file `path` (preprocessed as the run's data), and its `tokens`."""
  c = eval_config(workdir, max_len, stride, batch_size)
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except OSError as e:
    raise config_lib.ConfigError(f'--text={path}: {e.strerror}') from None
  except UnicodeDecodeError:
    raise config_lib.ConfigError(f'--text={path} is not UTF-8 text') from None
  text = preprocess.make(c.data.normalize, c.data.lowercase)(text)
  stream = data_lib.encode_stream(tokenizer_lib.load(workdir), [text])
  if len(stream) < 2:
    raise config_lib.ConfigError(f'--text={path} has {len(stream)} tokens; '
                                 'at least 2 are needed')
  trainer = train_lib.Trainer(c, sharding.make_mesh(c.mesh))
  params = load_params(trainer.abstract_state['params'], workdir, step)
  return tasks.evaluate_stream(trainer, params, stream, text, c)


def init_embeddings(state, trainer, tok, path: str):
  """Sets the token embedding rows of words that have pretrained vectors."""
  words = list(tok.words)
  vectors = embeddings_lib.read_vectors(path, set(words))
  table, coverage = embeddings_lib.initialise(
      jax.device_get(state['params']['wte']), words, vectors)
  state['params']['wte'] = jax.device_put(
      table.astype(state['params']['wte'].dtype),
      trainer.state_shardings['params']['wte'])
  return coverage


def single_device_params(c):
  """The parameter shapes of run config `c` (any task), placed on the first
  device: what a one-device tool (sampling, conversion) restores into."""
  cfg = model_lib.GPTConfig.from_config(c.model)
  _, abstract = heads.abstract(cfg, c.task, c.model.num_classes)
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
  ckpt = checkpoint_lib.Checkpointer(run_dir, read_only=True)
  if step is None:
    step = ckpt.latest_step()
  elif step not in ckpt.all_steps():
    raise RunError(f'{run_dir} holds no checkpoint of step {step}; it has '
                   f'{", ".join(map(str, ckpt.all_steps()))}')
  ema = (os.path.exists(os.path.join(run_dir, CONFIG_FILE)) and
         saved_config(run_dir).train.ema_decay > 0)
  return ckpt.restore_params(step, abstract_params, 'ema' if ema else 'params')


MASKED_OR = ' or '.join(config_lib.MASKED_TASKS)


def check_init_from(c, tok) -> str:
  """Why the run in `c.init_from` cannot start this one ('' if it can):
  another vocabulary or model shape. Returns the part of the parameters to
  load: '' all of them, 'encoder' a pretrained encoder's."""
  if not checkpoint_lib.saved_steps(c.init_from):
    raise RunError(f'{c.init_from} holds no checkpoint; give a workdir that '
                   'python -m lm.main has trained')
  old = saved_config(c.init_from)
  if c.task != 'causal_lm' and not {'cls', 'sep', 'mask'} <= set(
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
  if old.task == c.task:
    return ''
  if old.task in config_lib.MASKED_TASKS and c.task == 'classification':
    return 'encoder'
  raise RunError(f'init_from={c.init_from} is a task={old.task} run; '
                 f'task={c.task} starts from a '
                 f'{MASKED_OR if c.task == "classification" else c.task} run')


def _nonfinite(c, trainer, state, step, count, seen, writer, ckpt) -> int:
  """Reports skipped non-finite updates; under 'stop', ends the run."""
  bad = jax.device_get(state['nonfinite'])
  first = (f'step {int(bad["first_step"])}, first in '
           f'{trainer.nonfinite_leaf(int(bad["first_leaf"]))}')
  if c.train.nonfinite == 'stop':
    ckpt.wait()
    ckpt.close()
    raise NumericsError(
        f'non-finite loss or gradients at {first}; the update was skipped '
        'and the run stopped (the last checkpoint is before it). Lower '
        'optim.lr, check the data, or set train.nonfinite=skip to skip such '
        'steps and go on')
  writer.print(f'step {step}: {count - seen} non-finite update(s) skipped, '
               f'{count} in all (the first at {first})')
  return count


class EarlyStopping:
  """Tracks the best value of the eval metric `key` and the evaluations
  since it (a tie is no improvement); `exhausted` once `patience` (> 0) have
  passed without a better one. A resumed run recounts from its metrics log,
  so it stops where an unbroken one would."""

  def __init__(self, patience: int, key: str, mode: str, history: list[dict]):
    self.patience, self.key, self.mode = patience, key, mode
    self.best, self.since = None, 0
    for record in history:
      if key in record:
        self.update(record[key])

  def update(self, value: float) -> bool:
    """Records an evaluation; True if it is the best so far."""
    better = (self.best is None or
              (value > self.best if self.mode == 'max' else value < self.best))
    if better:
      self.best, self.since = value, 0
    else:
      self.since += 1
    return better

  @property
  def exhausted(self) -> bool:
    return 0 < self.patience <= self.since


def _report_failed_saves(ckpt, writer, step: int, every: int) -> None:
  """Prints the checkpoint saves that failed since the last report."""
  for failed, why in ckpt.new_failures():
    retry = (f'the next save (step {step - step % every + every}) tries '
             'again' if every else 'no save is left to try')
    writer.print(f'checkpoint at step {failed} was not saved ({why}); '
                 f'training goes on, {retry}')


def adopt_imported(c):
  """`c`, with the architecture and tokenizer settings of its init_from run
  when that is an imported Hugging Face checkpoint (lm.convert from-hf),
  whose shape the checkpoint fixes; what changed is printed."""
  if not c.init_from or not os.path.exists(os.path.join(c.init_from,
                                                         IMPORTED_FILE)):
    return c
  old, c = saved_config(c.init_from), c.copy_and_resolve_references()
  keys = [f'model.{k}' for k in config_lib.ARCHITECTURE_KEYS + (
      'norm_eps', 'causal') if k != 'num_classes' or old.task == c.task]
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


def train_and_evaluate(config, workdir: str) -> Summary:
  """Trains `config` in `workdir`, resuming if it holds a checkpoint."""
  if os.path.exists(os.path.join(workdir, IMPORTED_FILE)):
    raise RunError(f'{workdir} is an imported Hugging Face checkpoint; train '
                   f'from it in a new --workdir with '
                   f'--config.init_from={workdir}')
  c = adopt_imported(config)
  make_workdir(workdir)  # Before preparing data, which can take minutes.
  corpus = data_lib.load_corpus(
      c.data, c.model.max_len,
      tokenizer=saved_tokenizer(workdir, c.init_from, c.data.tokenizer),
      specials=tasks.specials(c.task))
  c = resolve(c, corpus.tokenizer.vocab_size)
  init_part = check_init_from(c, corpus.tokenizer) if c.init_from else ''
  prepare_workdir(workdir, c)
  if jax.process_index() == 0:
    tokenizer_lib.save(corpus.tokenizer, workdir)

  mesh = sharding.make_mesh(c.mesh)
  sharding.check_batch(c, mesh)
  sharding.check_model(c, mesh)
  trainer = train_lib.Trainer(c, mesh)
  task = tasks.Task(c, corpus)
  best_key, best_mode = tasks.best_metric(c.task)
  ckpt = checkpoint_lib.Checkpointer(workdir,
                                     max_to_keep=c.checkpoint.max_to_keep,
                                     async_save=c.checkpoint.async_save,
                                     best_metric=best_key, best_mode=best_mode)
  for line in task.notes():
    print(line, flush=True)
  train_iter = task.train_dataset()
  restored = ckpt.restore_latest(trainer.abstract_state,
                                 fallback=c.checkpoint.fallback,
                                 say=lambda text: print(text, flush=True))
  if restored is not None:
    start, state, data_state = restored
    train_iter.set_state(data_state)
  else:
    start = 0
    state = trainer.init(jax.random.PRNGKey(c.seed))
    if init_part:  # A pretrained encoder under a new head.
      state['params'][init_part] = load_params(
          {init_part: trainer.abstract_state['params'][init_part]},
          c.init_from)[init_part]
    elif c.init_from:
      state['params'] = load_params(trainer.abstract_state['params'],
                                    c.init_from)
    elif c.model.init_embeddings:
      coverage = init_embeddings(state, trainer, corpus.tokenizer,
                                 c.model.init_embeddings)
      print(coverage, flush=True)
    state = trainer.restart_ema(state)

  eval_set = task.eval_batches()
  num_params = model_lib.count_params(state['params'])
  peak = flops.peak_flops(jax.devices()[0].device_kind)
  writer = writer_lib.MetricWriter(workdir, start, c.train.num_steps)
  writer.print(f'{num_params:,} parameters; mesh {dict(mesh.shape)}; '
               f'{"resuming from step " + str(start) if start else "starting"}'
               f' in {workdir}')

  def evaluate(params) -> dict[str, float]:
    return task.evaluate(trainer, params, eval_set)

  meter = writer_lib.Throughput(
      flops.train_flops_per_token(trainer.model_cfg, num_params),
      peak and peak * jax.device_count())
  losses, eval_loss, rates = [], float('nan'), {}
  stopped, step = None, start
  spikes, nonfinite_seen = writer_lib.LossSpikes(), 0
  patience = EarlyStopping(c.train.early_stopping, best_key, best_mode,
                           writer_lib.history(workdir, start))
  early = False
  with preemption_lib.Preemption() as preemption:
    for step in range(start + 1, c.train.num_steps + 1):
      batch = trainer.global_batch(next(train_iter))
      state, metrics = trainer.train_step(state, batch)
      final = step == c.train.num_steps
      meter.count(batch['inputs'].size)  # Rows x length (may vary by step).
      if step == start + 1:  # Keep compilation out of the throughput figures.
        jax.block_until_ready(metrics)
        meter.restart(step)
      scalars = {}
      if step % c.train.log_every == 0 or final:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        rates = meter.rates(step) or rates
        scalars.update(rates)
        losses.append(scalars['train/loss'])
        if spikes(scalars['train/loss']):
          scalars['train/loss_spike'] = 1.0
          writer.print(f'step {step}: loss spike {scalars["train/loss"]:.4f} '
                       f'(recent mean {spikes.mean:.4f})')
      early = improved = False
      if step % c.train.eval_every == 0 or final:
        scalars.update(evaluate(train_lib.model_params(state)))
        eval_loss = scalars['eval/loss']
        writer.print(f'step {step}: eval loss {eval_loss:.4f}' + (
            f', accuracy {scalars["eval/accuracy"]:.4f}'
            if 'eval/accuracy' in scalars else '') + (
            f', detection accuracy {scalars["eval/detection_accuracy"]:.4f}'
            if 'eval/detection_accuracy' in scalars else ''))
        improved = patience.update(scalars[best_key])
        early = patience.exhausted
        if early:
          writer.print(f'step {step}: no better {best_key} in '
                       f'{c.train.early_stopping} evaluations; stopping early')
      if scalars:
        writer.write(step, scalars)
        writer.progress(step, loss=scalars.get('train/loss'), **rates)
      stop = preemption.reached(step)
      # Early stopping needs every evaluated step kept as a candidate.
      save = (step % c.checkpoint.every == 0 or final or stop or early or
              (c.train.early_stopping > 0 and best_key in scalars))
      if scalars or save:  # The host syncs here anyway: check the numerics.
        count = int(metrics['train/nonfinite_steps'])
        if count > nonfinite_seen:
          nonfinite_seen = _nonfinite(c, trainer, state, step, count,
                                      nonfinite_seen, writer, ckpt)
      if save:
        writer.flush()  # The log is never behind the latest checkpoint.
        # Only a strictly better step competes for the best checkpoint.
        ckpt.save(step, state, train_iter.get_state(),
                  scalars if improved else {})
        _report_failed_saves(ckpt, writer, step,
                             0 if final or stop else c.checkpoint.every)
      if stop:
        stopped = preemption.requested or 'SIGTERM'
        break
      if early:
        break
      if 'eval/loss' in scalars or step % c.checkpoint.every == 0:
        meter.restart(step)  # Keep evals and saves out of tokens/s.
    ckpt.wait()  # A second signal here exits; the last good step is kept.
  best_step = ckpt.best_step()
  ckpt.close()
  _report_failed_saves(ckpt, writer, step, 0)
  if ckpt.failures and ckpt.failures[-1][0] == step:
    writer.close()
    raise RunError(f'training {"stopped at" if stopped else "reached"} step '
                   f'{step} but its checkpoint could not be written '
                   f'({ckpt.failures[-1][1]}); the latest saved is step '
                   f'{ckpt.latest_step()}: free space or fix the permissions '
                   'of the workdir, then rerun to redo the steps after it')
  if stopped:
    writer.print(f'stopped at step {step} ({stopped}); checkpoint saved: run '
                 'the same command again to resume')
  if c.train.num_steps <= start:  # Nothing left to train: report, do not redo.
    eval_loss = evaluate(train_lib.model_params(state))['eval/loss']
  final, params, evaluated = {}, train_lib.model_params(state), step
  if c.train.early_stopping and best_step not in (None, step):
    evaluated = best_step
    params = load_params(trainer.abstract_state['params'], workdir, best_step)
  if c.eval.final and not stopped:  # A stopped run evaluates when it ends.
    if evaluated != step:
      writer.print(f'final evaluation of the best step, {evaluated} (by '
                   f'{best_key})')
    final = task.final(trainer, params, writer)
    for line in tasks.format_results(final):
      writer.print(line)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, RESULTS_FILE), 'w') as f:
        json.dump({'step': evaluated, **final}, f, indent=2)
  best = writer.best('eval/loss')
  writer.close()
  return Summary(workdir, step if stopped or early else
                 max(start, c.train.num_steps),
                 eval_loss, eval_loss if best is None else best,
                 rates.get('tokens_per_sec', 0.0), losses, final, stopped)
