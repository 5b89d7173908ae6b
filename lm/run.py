"""The training loop: train, evaluate, checkpoint, and resume a run's workdir.

A workdir holds `config.json` (the resolved config), `tokenizer.json`,
`checkpoints/`, `metrics.jsonl` and `tensorboard/`. Starting in a workdir that
holds checkpoints resumes from the latest one, data iterator included.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from lm import checkpoint as checkpoint_lib
from lm import config as config_lib
from lm import data as data_lib
from lm import flops
from lm import model as model_lib
from lm import sharding
from lm import tokenizer as tokenizer_lib
from lm import train as train_lib
from lm import writer as writer_lib

CONFIG_FILE = 'config.json'
TOKENIZER_FILE = 'tokenizer.json'


class RunError(ValueError):
  """A workdir or run setup that cannot be used, as one line."""


@dataclasses.dataclass
class Summary:
  """What a finished run produced."""
  workdir: str
  steps: int
  final_eval_loss: float
  best_eval_loss: float
  tokens_per_sec: float
  losses: list[float]


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


def prepare_workdir(workdir: str, config) -> None:
  """Creates the workdir, or checks that the run in it has the same model."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise RunError(f'cannot create workdir {workdir}: {e.strerror}') from None
  if not os.access(workdir, os.W_OK):
    raise RunError(f'workdir {workdir} is not writable; choose another '
                   '--workdir')
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = config_lib.from_json(f.read())
    except (ValueError, KeyError) as e:
      raise RunError(f'{path} is not a config this version can read ({e}); '
                     'use a new --workdir') from None
    changes = config_lib.architecture_changes(old, config)
    if changes:
      raise RunError(f'workdir {workdir} holds a run of another model '
                     f'({"; ".join(changes)}); use a new --workdir')
  if jax.process_index() == 0:
    with open(path + '.tmp', 'w') as f:
      f.write(config_lib.to_json(config))
    os.replace(path + '.tmp', path)  # Never a half-written config.json.


def check_tokenizer(run_dir: str, tok: tokenizer_lib.CharTokenizer) -> None:
  """Refuses a run whose saved vocabulary differs from this data's."""
  path = os.path.join(run_dir, TOKENIZER_FILE)
  if os.path.exists(path) and tokenizer_lib.CharTokenizer.load(
      path).chars != tok.chars:
    raise RunError(f'{run_dir} was trained on text with another vocabulary '
                   f'({TOKENIZER_FILE} differs); use the same data or a new '
                   '--workdir')


def load_params(abstract_params, run_dir: str):
  """Parameters of a run's latest checkpoint, laid out as `abstract_params`."""
  ckpt = checkpoint_lib.Checkpointer(run_dir, read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise RunError(f'{run_dir} holds no checkpoint')
  return ckpt.restore_params(step, abstract_params)


def train_and_evaluate(config, workdir: str) -> Summary:
  """Trains `config` in `workdir`, resuming if it holds a checkpoint."""
  c = config
  corpus = data_lib.load_corpus(c.data.name, c.data.path, c.data.val_fraction,
                                c.model.max_len)
  c = resolve(c, corpus.tokenizer.vocab_size)
  for run_dir in filter(None, (workdir, c.init_from)):
    check_tokenizer(run_dir, corpus.tokenizer)
  prepare_workdir(workdir, c)
  if jax.process_index() == 0:
    corpus.tokenizer.save(os.path.join(workdir, TOKENIZER_FILE))

  mesh = sharding.make_mesh(c.mesh)
  shards = sharding.num_shards(mesh, 'batch', c.mesh.rules)
  micro_batch = c.data.batch_size // c.optim.grad_accum_steps
  if micro_batch % shards:
    raise sharding.MeshError(
        f'data.batch_size={c.data.batch_size} / optim.grad_accum_steps='
        f'{c.optim.grad_accum_steps} must divide over the {shards} devices the '
        f'batch is split on (mesh {dict(mesh.shape)}); change data.batch_size '
        'or the mesh sizes')
  trainer = train_lib.Trainer(c, mesh)
  ckpt = checkpoint_lib.Checkpointer(workdir,
                                     max_to_keep=c.checkpoint.max_to_keep,
                                     async_save=c.checkpoint.async_save)
  train_iter = iter(data_lib.train_dataset(
      corpus.train, c.model.max_len, c.data.batch_size, c.seed,
      c.data.prefetch))
  start = ckpt.latest_step()
  if start is not None:
    state, data_state = ckpt.restore(start, trainer.abstract_state)
    train_iter.set_state(data_state)
  else:
    start = 0
    state = trainer.init(jax.random.PRNGKey(c.seed))
    if c.init_from:
      state['params'] = load_params(trainer.abstract_state['params'],
                                    c.init_from)

  eval_set = [trainer.global_batch(b) for b in data_lib.eval_batches(
      corpus.val, c.model.max_len, c.data.batch_size, c.train.eval_batches,
      seed=c.seed + 1)]
  num_params = model_lib.count_params(state['params'])
  peak = flops.peak_flops(jax.devices()[0].device_kind)
  writer = writer_lib.MetricWriter(workdir, start, c.train.num_steps)
  writer.print(f'{num_params:,} parameters; mesh {dict(mesh.shape)}; '
               f'{"resuming from step " + str(start) if start else "starting"}'
               f' in {workdir}')

  def evaluate(params) -> float:
    return float(np.mean([trainer.eval_step(params, b) for b in eval_set]))

  meter = writer_lib.Throughput(
      c.data.batch_size * c.model.max_len,
      flops.train_flops_per_token(trainer.model_cfg, num_params),
      peak and peak * jax.device_count())
  losses, eval_loss, rates = [], float('nan'), {}
  for step in range(start + 1, c.train.num_steps + 1):
    batch = trainer.global_batch(next(train_iter))
    state, metrics = trainer.train_step(state, batch)
    final = step == c.train.num_steps
    if step == start + 1:  # Keep compilation out of the throughput figures.
      jax.block_until_ready(metrics)
      meter.restart(step)
    scalars = {}
    if step % c.train.log_every == 0 or final:
      scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
      rates = meter.rates(step) or rates
      scalars.update(rates)
      losses.append(scalars['train/loss'])
    if step % c.train.eval_every == 0 or final:
      eval_loss = scalars['eval/loss'] = evaluate(state['params'])
      writer.print(f'step {step}: eval loss {eval_loss:.4f}')
    if scalars:
      writer.write(step, scalars)
      writer.progress(step, loss=scalars.get('train/loss'), **rates)
    if step % c.checkpoint.every == 0 or final:
      writer.flush()  # The log is never behind the latest checkpoint.
      ckpt.save(step, state, train_iter.get_state(), scalars)
    if 'eval/loss' in scalars or step % c.checkpoint.every == 0:
      meter.restart(step)  # Keep evals and saves out of tokens/s.
  ckpt.wait()
  ckpt.close()
  if c.train.num_steps <= start:  # Nothing left to train: report, do not redo.
    eval_loss = evaluate(state['params'])
  best = writer.best('eval/loss')
  writer.close()
  return Summary(workdir, max(start, c.train.num_steps), eval_loss,
                 eval_loss if best is None else best,
                 rates.get('tokens_per_sec', 0.0), losses)
