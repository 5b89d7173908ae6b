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
import signal
import sys
from typing import Any

import jax
import numpy as np

from lm import tasks
from lm.data import corpus as corpus_lib
from lm.data import embeddings as embeddings_lib
from lm.data import filters
from lm.data import tokenizer as tokenizer_lib
from lm.eval import metrics as metrics_lib
from lm.models import transformer
from lm.parallel import sharding
from lm.train import checkpoint as checkpoint_lib
from lm.train import flops
from lm.train import library_log as library_log_lib
from lm.train import preemption as preemption_lib
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib
from lm.train import writer as writer_lib


class NumericsError(workdir_lib.RunError):
  """Non-finite loss or gradients under train.nonfinite='stop', or too many
  in a row under 'skip' (train.nonfinite_limit)."""


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


def init_embeddings(state, trainer, tok, path: str, counts=None,
                    std: float = 0.0):
  """Sets the rows of words that have pretrained vectors in every token
  table of the model (a GPT's, a classifier's encoder's, both stacks of an
  encoder-decoder unless they share one); `counts` (optional) each token's
  count in the training text; `std` > 0 rescales the vectors to it.
  Returns the coverage."""
  words = list(tok.words)
  vectors = embeddings_lib.read_vectors(path, set(words))
  params, shardings = state['params'], trainer.state_shardings['params']
  holders = [(params, shardings)] if 'wte' in params else [
      (params[k], shardings[k]) for k in params
      if isinstance(params[k], dict) and 'wte' in params[k]]
  coverage = None
  for holder, sharding in holders:
    table, coverage = embeddings_lib.initialise(
        jax.device_get(holder['wte']), words, vectors, counts, std)
    holder['wte'] = jax.device_put(table.astype(holder['wte'].dtype),
                                   sharding['wte'])
  return coverage


def _nonfinite(c, trainer, state, step, count, seen, run, writer,
               ckpt) -> int:
  """Reports skipped non-finite updates; under 'stop', or once `run`
  updates in a row were skipped (train.nonfinite_limit), ends the run."""
  bad = jax.device_get(state['nonfinite'])
  first = (f'step {int(bad["first_step"])}, first in '
           f'{trainer.nonfinite_leaf(int(bad["first_leaf"]))}')
  limit = c.train.nonfinite_limit
  if c.train.nonfinite == 'stop' or 0 < limit <= run:
    ckpt.wait()
    ckpt.close()
    if c.train.nonfinite == 'stop':
      raise NumericsError(
          f'non-finite loss or gradients at {first}; the update was skipped '
          'and the run stopped (the last checkpoint is before it). Lower '
          'optim.lr, check the data, or set train.nonfinite=skip to skip '
          'such steps and go on')
    raise NumericsError(
        f'step {step}: the last {run} updates were all non-finite and '
        f'skipped (train.nonfinite_limit={limit}; {count} in all, the first '
        f'at {first}); the run stopped. Lower optim.lr or check the data')
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


def _report_failed_saves(ckpt, writer, step: int, every: int,
                         log_path: str) -> None:
  """Prints the checkpoint saves that failed since the last report, a line
  each; the libraries' tracebacks are in `log_path`."""
  for failed, why in ckpt.new_failures():
    retry = (f'the next save (step {step - step % every + every}) tries '
             'again' if every else 'no save is left to try')
    writer.print(f'checkpoint at step {failed} was not saved ({why}; details '
                 f'in {log_path}); training goes on, {retry}')


@dataclasses.dataclass
class _Run:
  """What the loop works with, set up by `_setup`."""
  c: Any  # The resolved config.
  workdir: str
  corpus: corpus_lib.Corpus
  trainer: train_lib.Trainer
  task: Any  # Its lm.tasks.base.Task, on the corpus.
  ckpt: checkpoint_lib.Checkpointer
  init_part: str  # What init_from gives: '' all parameters, or a part.
  library_log: str = ''  # Where the libraries' own output goes.


@dataclasses.dataclass
class _Progress:
  """What the loop has done so far."""
  step: int
  losses: list[float] = dataclasses.field(default_factory=list)
  eval_loss: float = float('nan')
  rates: dict = dataclasses.field(default_factory=dict)
  stopped: str | None = None  # The signal that stopped the run early.
  early: bool = False  # Early stopping ended the run.


def _setup(config, workdir: str) -> _Run:
  """Checks the workdir, prepares the data and tokenizer, resolves and
  saves the config, and builds the mesh, trainer, task and checkpointer."""
  if os.path.exists(os.path.join(workdir, workdir_lib.IMPORTED_FILE)):
    raise workdir_lib.RunError(
        f'{workdir} is an imported Hugging Face checkpoint; train from it in '
        f'a new --workdir with --config.init_from={workdir}')
  c = workdir_lib.adopt_imported(config)
  # Before preparing data, which can take minutes.
  workdir_lib.make_workdir(workdir)
  corpus = corpus_lib.load_corpus(c.data,
                                  c.model.max_len,
                                  tokenizer=workdir_lib.saved_tokenizer(
                                      workdir, c.init_from, c.data.tokenizer),
                                  specials=tasks.TASKS[c.task].specials,
                                  seed=c.seed)
  c = workdir_lib.resolve(c, corpus.tokenizer.vocab_size, corpus.filtered)
  init_part = (workdir_lib.check_init_from(c, corpus.tokenizer)
               if c.init_from else '')
  workdir_lib.prepare_workdir(workdir, c)
  if jax.process_index() == 0:
    tokenizer_lib.save(corpus.tokenizer, workdir)

  mesh = sharding.make_mesh(c.mesh)
  sharding.check_batch(c, mesh)
  sharding.check_model(c, mesh)
  sharding.check_kernels(c, mesh)
  task = tasks.get(c, corpus)
  best_key, best_mode = task.best_metric
  ckpt = checkpoint_lib.Checkpointer(workdir,
                                     max_to_keep=c.checkpoint.max_to_keep,
                                     async_save=c.checkpoint.async_save,
                                     best_metric=best_key, best_mode=best_mode,
                                     trust_unverified=c.checkpoint.trust_unverified)
  return _Run(c, workdir, corpus, train_lib.Trainer(c, mesh), task, ckpt,
              init_part)


def _restore_or_initialise(run: _Run, train_iter):
  """(start step, state): the latest checkpoint's (the data iterator set to
  its position), or a new state from init_from's parameters, pretrained
  word vectors or the seed."""
  c, trainer = run.c, run.trainer
  restored = run.ckpt.restore_latest(trainer.abstract_state,
                                     fallback=c.checkpoint.fallback,
                                     say=lambda text: print(text, flush=True))
  if restored is not None:
    start, state, data_state = restored
    train_iter.set_state(data_state)
    return start, state
  state = trainer.init(jax.random.PRNGKey(c.seed))
  part = run.init_part
  if part:  # A pretrained encoder under a new head.
    state['params'][part] = workdir_lib.load_params(
        {part: trainer.abstract_state['params'][part]}, c.init_from)[part]
  elif c.init_from:
    state['params'] = workdir_lib.load_params(trainer.abstract_state['params'],
                                              c.init_from)
  elif c.model.init_embeddings:
    corpus, tok = run.corpus, run.corpus.tokenizer
    texts = corpus.texts['train']
    # A language model's stream is already encoded; a labelled corpus's
    # sentences are encoded by its task, so only the training split here.
    stream = (None if not texts or not isinstance(texts[0], str) else
              corpus_lib.encode_stream(tok, texts) if corpus.labels else
              corpus.train)
    counts = (None if stream is None else
              np.bincount(stream, minlength=tok.vocab_size))
    coverage = init_embeddings(state, trainer, tok, c.model.init_embeddings,
                               counts, c.model.init_embeddings_std)
    print(coverage, flush=True)
  return 0, trainer.restart_ema(state)


def _eval_line(step: int, scalars: dict) -> str:
  """The log line of an evaluation."""
  return f'step {step}: eval loss {scalars["eval/loss"]:.4f}' + (
      f', accuracy {scalars["eval/accuracy"]:.4f}'
      if 'eval/accuracy' in scalars else '') + (
      f', detection accuracy {scalars["eval/detection_accuracy"]:.4f}'
      if 'eval/detection_accuracy' in scalars else '')


def _train(run: _Run, state, train_iter, start: int, writer, evaluate):
  """Trains from `start` to train.num_steps (or a signal, or early
  stopping), evaluating, logging and checkpointing on the way. Returns the
  final state and the `_Progress`."""
  c, trainer, ckpt = run.c, run.trainer, run.ckpt
  best_key, best_mode = run.task.best_metric
  meter = writer_lib.Throughput(
      flops.train_flops_per_token(
          trainer.model_cfg, transformer.count_params(state['params'])),
      (peak := flops.peak_flops(jax.devices()[0].device_kind)) and
      peak * jax.device_count())
  done = _Progress(start)
  spikes, nonfinite_seen = writer_lib.LossSpikes(), 0
  # At host syncs: the step and skip count, and the skipped updates in a row.
  synced, skipped_run = start, 0
  synced_count = int(jax.device_get(state['nonfinite']['count']))
  patience = EarlyStopping(c.train.early_stopping, best_key, best_mode,
                           writer_lib.history(run.workdir, start))
  with preemption_lib.Preemption() as preemption:
    for step in range(start + 1, c.train.num_steps + 1):
      done.step = step
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
        done.rates = meter.rates(step) or done.rates
        scalars.update(done.rates)
        done.losses.append(scalars['train/loss'])
        if spikes(scalars['train/loss']):
          scalars['train/loss_spike'] = 1.0
          writer.print(f'step {step}: loss spike {scalars["train/loss"]:.4f} '
                       f'(recent mean {spikes.mean:.4f})')
      done.early = improved = False
      if step % c.train.eval_every == 0 or final:
        scalars.update(evaluate(train_lib.model_params(state)))
        done.eval_loss = scalars['eval/loss']
        writer.print(_eval_line(step, scalars))
        improved = patience.update(scalars[best_key])
        done.early = patience.exhausted
        if done.early:
          writer.print(f'step {step}: no better {best_key} in '
                       f'{c.train.early_stopping} evaluations; stopping early')
      if scalars:
        writer.write(step, scalars)
        writer.progress(step, loss=scalars.get('train/loss'), **done.rates)
      stop = preemption.reached(step)
      # Early stopping needs every evaluated step kept as a candidate.
      save = (step % c.checkpoint.every == 0 or final or stop or done.early or
              (c.train.early_stopping > 0 and best_key in scalars))
      if scalars or save:  # The host syncs here anyway: check the numerics.
        count = int(metrics['train/nonfinite_steps'])
        # Every update since the last sync skipped: the run of them grows.
        skipped_run = (skipped_run + step - synced
                       if count - synced_count >= step - synced else 0)
        synced, synced_count = step, count
        if count > nonfinite_seen:
          nonfinite_seen = _nonfinite(c, trainer, state, step, count,
                                      nonfinite_seen, skipped_run, writer,
                                      ckpt)
      if save:
        writer.flush()  # The log is never behind the latest checkpoint.
        # Only a strictly better step competes for the best checkpoint.
        ckpt.save(step, state, train_iter.get_state(),
                  scalars if improved else {})
        _report_failed_saves(ckpt, writer, step,
                             0 if final or stop else c.checkpoint.every,
                             run.library_log)
      if stop:
        done.stopped = preemption.requested or 'SIGTERM'
        break
      if done.early:
        break
      if 'eval/loss' in scalars or step % c.checkpoint.every == 0:
        meter.restart(step)  # Keep evals and saves out of tokens/s.
    ckpt.wait()  # A second signal here exits; the last good step is kept.
  return state, done


def _finish(run: _Run, state, start: int, done: _Progress, writer,
            evaluate) -> Summary:
  """After the loop: checks the last save, runs the final evaluation (of
  the best step under early stopping) and writes eval_results.json."""
  c, ckpt, step = run.c, run.ckpt, done.step
  best_key = run.task.best_metric[0]
  best_step = ckpt.best_step()
  ckpt.close()
  _report_failed_saves(ckpt, writer, step, 0, run.library_log)
  if ckpt.failures and ckpt.failures[-1][0] == step:
    writer.close()
    latest = ckpt.latest_step()
    kept = (f'the latest saved is step {latest}' if latest is not None else
            'no step of this run is saved')
    raise workdir_lib.RunError(
        f'training {"stopped at" if done.stopped else "reached"} step '
        f'{step} but its checkpoint could not be written '
        f'({ckpt.failures[-1][1]}; details in {run.library_log}); {kept}: '
        'free space or fix the '
        'permissions of the workdir, then rerun to redo the steps after it')
  if done.stopped:
    writer.print(f'stopped at step {step} ({done.stopped}); checkpoint '
                 'saved: run the same command again to resume')
  if c.train.num_steps <= start:  # Nothing left to train: report, do not redo.
    done.eval_loss = evaluate(train_lib.model_params(state))['eval/loss']
  final, params, evaluated = {}, train_lib.model_params(state), step
  if c.train.early_stopping and best_step not in (None, step):
    evaluated = best_step
    params = workdir_lib.load_params(run.trainer.abstract_state['params'],
                                     run.workdir, best_step)
  if c.eval.final and not done.stopped:  # A stopped run evaluates when it ends.
    if evaluated != step:
      writer.print(f'final evaluation of the best step, {evaluated} (by '
                   f'{best_key})')
    final = run.task.final(run.trainer, params, writer)
    for line in metrics_lib.format_results(final):
      writer.print(line)
    if jax.process_index() == 0:
      with open(os.path.join(run.workdir, workdir_lib.RESULTS_FILE), 'w') as f:
        json.dump({'step': evaluated, **final}, f, indent=2)
  best = writer.best('eval/loss')
  writer.close()
  return Summary(run.workdir, step if done.stopped or done.early else
                 max(start, c.train.num_steps),
                 done.eval_loss, done.eval_loss if best is None else best,
                 done.rates.get('tokens_per_sec', 0.0), done.losses, final,
                 done.stopped)


class Stopped(SystemExit):
  """A run stopped by a signal before its last step, its checkpoint saved.
  Raised by `train_to_end`: a driver of several runs (a study, k folds) ends
  with it instead of counting the run as finished; uncaught, the command
  exits 128 + the signal's number, as after a signal anywhere else."""

  def __init__(self, workdir: str, step: int, num_steps: int, name: str):
    super().__init__(128 + signal.Signals[name])  # 'SIGTERM', 'SIGINT'.
    self.message = (f'{name}: stopped in {workdir} at step {step} of '
                    f'{num_steps} (checkpoint saved); run the same command '
                    'again to resume')


def train_to_end(config, workdir: str) -> Summary:
  """`train_and_evaluate`, raising `Stopped` for a run a signal stopped."""
  s = train_and_evaluate(config, workdir)
  if s.preempted:
    e = Stopped(workdir, s.steps, config.train.num_steps, s.preempted)
    print(e.message, file=sys.stderr, flush=True)
    raise e
  return s


def train_and_evaluate(config, workdir: str) -> Summary:
  """Trains `config` in `workdir`, resuming if it holds a checkpoint."""
  run = _setup(config, workdir)
  with library_log_lib.divert(workdir) as run.library_log:
    return _train_and_evaluate(run)


def _train_and_evaluate(run: _Run) -> Summary:
  workdir = run.workdir
  for line in filters.describe(run.corpus.filtered) + run.task.notes():
    print(line, flush=True)
  train_iter = run.task.train_dataset()
  start, state = _restore_or_initialise(run, train_iter)
  eval_set = run.task.eval_batches()
  num_params = transformer.count_params(state['params'])
  writer = writer_lib.MetricWriter(workdir, start, run.c.train.num_steps)
  writer.print(f'{num_params:,} parameters; mesh '
               f'{dict(run.trainer.mesh.shape)}; '
               f'{"resuming from step " + str(start) if start else "starting"}'
               f' in {workdir}')

  def evaluate(params) -> dict[str, float]:
    return run.task.evaluate(run.trainer, params, eval_set)

  state, done = _train(run, state, train_iter, start, writer, evaluate)
  return _finish(run, state, start, done, writer, evaluate)
