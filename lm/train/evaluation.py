"""Evaluations of a finished run's saved parameters: its final evaluation
under another config, and a causal LM's perplexity on a text file."""

from __future__ import annotations

from lm import config as config_lib
from lm import tasks
from lm.data import corpus as corpus_lib
from lm.data import preprocess
from lm.data import tokenizer as tokenizer_lib
from lm.parallel import sharding
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib


def _trainer(c) -> train_lib.Trainer:
  """The trainer of resolved config `c` on all devices, once its attention
  kernel is known to run on them."""
  mesh = sharding.make_mesh(c.mesh)
  sharding.check_kernels(c, mesh)
  return train_lib.Trainer(c, mesh)


def evaluate_saved(config, workdir: str, step: int | None = None,
                   average_last: int = 1,
                   splits: list[str] | None = None) -> dict[str, dict]:
  """The final evaluation (`Task.final`) of a finished run's parameters,
  latest or at `step` (or the mean of the `average_last` latest
  checkpoints), under `config` (e.g. with another eval.max_len: train
  short, test long); of an encoder-decoder's `splits` if given."""
  corpus = corpus_lib.load_corpus(config.data,
                                  config.model.max_len,
                                  tokenizer=workdir_lib.saved_tokenizer(
                                      workdir, '', config.data.tokenizer),
                                  seed=config.seed)
  c = workdir_lib.resolve(config, corpus.tokenizer.vocab_size)
  trainer = _trainer(c)
  if average_last > 1:
    params, _ = workdir_lib.averaged_params(trainer.abstract_state['params'],
                                            workdir, average_last)
  else:
    params = workdir_lib.load_params(trainer.abstract_state['params'],
                                     workdir, step)
  if splits:
    return tasks.get(c, corpus).final(trainer, params, splits=splits)
  return tasks.get(c, corpus).final(trainer, params)


def eval_config(workdir: str, max_len: int = 0, stride: int = 0,
                batch_size: int = 8):
  """The saved config of text-generating run `workdir`, set to evaluate in windows
  of `max_len` (0: the model's) `stride` apart, `batch_size` at a time, on
  all devices."""
  c = workdir_lib.saved_config(workdir)
  if tasks.TASKS[c.task].translates:  # Scored by its own final evaluation.
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 1, 1
    config_lib.validate(c)
    return c
  if not tasks.TASKS[c.task].generates:
    raise workdir_lib.RunError(
        f'{workdir} is a task={c.task} run; perplexity is for '
        f'{tasks.named(generates=True)} runs (a classifier: python -m '
        'lm.finetune evaluate)')
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
  stream = corpus_lib.encode_stream(tokenizer_lib.load(workdir), [text])
  if len(stream) < 2:
    raise config_lib.ConfigError(f'--text={path} has {len(stream)} tokens; '
                                 'at least 2 are needed')
  trainer = _trainer(c)
  params = workdir_lib.load_params(trainer.abstract_state['params'], workdir,
                                   step)
  return tasks.get(c).evaluate_stream(trainer, params, stream, text)
