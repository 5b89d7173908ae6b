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

import jax

from lm import tasks
from lm.data import corpus as corpus_lib
from lm.data import embeddings as embeddings_lib
from lm.data import tokenizer as tokenizer_lib
from lm.eval import metrics as metrics_lib
from lm.models import transformer
from lm.parallel import sharding
from lm.train import checkpoint as checkpoint_lib
from lm.train import flops
from lm.train import preemption as preemption_lib
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib
from lm.train import writer as writer_lib


class NumericsError(workdir_lib.RunError):
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


def train_and_evaluate(config, workdir: str) -> Summary:
  """Trains `config` in `workdir`, resuming if it holds a checkpoint."""
  if os.path.exists(os.path.join(workdir, workdir_lib.IMPORTED_FILE)):
    raise workdir_lib.RunError(f'{workdir} is an imported Hugging Face checkpoint; train '
                   f'from it in a new --workdir with '
                   f'--config.init_from={workdir}')
  c = workdir_lib.adopt_imported(config)
  workdir_lib.make_workdir(workdir)  # Before preparing data, which can take minutes.
  corpus = corpus_lib.load_corpus(
      c.data, c.model.max_len,
      tokenizer=workdir_lib.saved_tokenizer(workdir, c.init_from, c.data.tokenizer),
      specials=tasks.TASKS[c.task].specials)
  c = workdir_lib.resolve(c, corpus.tokenizer.vocab_size)
  init_part = workdir_lib.check_init_from(c, corpus.tokenizer) if c.init_from else ''
  workdir_lib.prepare_workdir(workdir, c)
  if jax.process_index() == 0:
    tokenizer_lib.save(corpus.tokenizer, workdir)

  mesh = sharding.make_mesh(c.mesh)
  sharding.check_batch(c, mesh)
  sharding.check_model(c, mesh)
  trainer = train_lib.Trainer(c, mesh)
  task = tasks.get(c, corpus)
  best_key, best_mode = task.best_metric
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
      state['params'][init_part] = workdir_lib.load_params(
          {init_part: trainer.abstract_state['params'][init_part]},
          c.init_from)[init_part]
    elif c.init_from:
      state['params'] = workdir_lib.load_params(trainer.abstract_state['params'],
                                    c.init_from)
    elif c.model.init_embeddings:
      coverage = init_embeddings(state, trainer, corpus.tokenizer,
                                 c.model.init_embeddings)
      print(coverage, flush=True)
    state = trainer.restart_ema(state)

  eval_set = task.eval_batches()
  num_params = transformer.count_params(state['params'])
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
    raise workdir_lib.RunError(f'training {"stopped at" if stopped else "reached"} step '
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
    params = workdir_lib.load_params(trainer.abstract_state['params'], workdir, best_step)
  if c.eval.final and not stopped:  # A stopped run evaluates when it ends.
    if evaluated != step:
      writer.print(f'final evaluation of the best step, {evaluated} (by '
                   f'{best_key})')
    final = task.final(trainer, params, writer)
    for line in metrics_lib.format_results(final):
      writer.print(line)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, workdir_lib.RESULTS_FILE), 'w') as f:
        json.dump({'step': evaluated, **final}, f, indent=2)
  best = writer.best('eval/loss')
  writer.close()
  return Summary(workdir, step if stopped or early else
                 max(start, c.train.num_steps),
                 eval_loss, eval_loss if best is None else best,
                 rates.get('tokens_per_sec', 0.0), losses, final, stopped)
