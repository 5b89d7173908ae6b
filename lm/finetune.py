"""Fine-tune, evaluate and use a sentence classifier (BERT on SST-2).

  python -m lm.finetune --config=configs/sst2.py:mini
      --config.init_from=runs/bert_mini --workdir=runs/sst2_mini
  python -m lm.finetune evaluate --workdir=runs/sst2_mini [--split=test]
  python -m lm.finetune predict --workdir=runs/sst2_mini [--input=FILE]

Training (no command, or `train`) is an ordinary run of task=classification
(lm.train.loop): it resumes in its workdir, keeps the best step by dev accuracy and
ends with the evaluation of the labelled splits. `evaluate` prints accuracy,
F1 and the confusion matrix of a split for the run's best step (or --step)
and writes them to WORKDIR/evaluation_<split>.json. `predict` labels one
sentence per line of --input (default: stdin): label, P(label) and the
sentence, tab-separated.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from lm import cli
from lm import config as config_lib
from lm import tasks
from lm.data import corpus as corpus_lib
from lm.data import encoder_rows as encoder_data
from lm.data import tokenizer as tokenizer_lib
from lm.parallel import sharding
from lm.train import checkpoint as checkpoint_lib
from lm.train import loop
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib

COMMANDS = ('train', 'evaluate', 'predict')
config_flags.DEFINE_config_file(
    'config', None, 'train: config file (configs/sst2.py[:VARIANT]).',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'The classifier run directory.')
flags.DEFINE_string('split', 'validation', 'evaluate: the split to score '
                    '(validation is SST-2 dev; test is unlabelled in GLUE).')
flags.DEFINE_integer('step', None, 'evaluate/predict: the checkpoint step '
                     '(default: the best by dev accuracy, else the latest).')
flags.DEFINE_string('input', '', 'predict: a text file, one sentence per '
                    'line (default: stdin).')
FLAGS = flags.FLAGS


def train(config, workdir: str) -> None:
  config_lib.validate(config)
  if not tasks.TASKS[config.task].classifies:
    raise config_lib.ConfigError(
        f'lm.finetune trains task={tasks.named(classifies=True)}, the config '
        f'has task={config.task}: use python -m lm.main for it')
  s = loop.train_and_evaluate(config, workdir)
  if s.preempted or jax.process_index() != 0:
    return
  print(f'done: {s.steps} steps in {s.workdir} (evaluate: python -m '
        f'lm.finetune evaluate --workdir={s.workdir}; predict: python -m '
        f'lm.finetune predict --workdir={s.workdir})')


class Classifier:
  """A finished classification run, loaded for evaluation and prediction."""

  def __init__(self, workdir: str, step: int | None = None):
    config = workdir_lib.saved_config(workdir)
    if not tasks.TASKS[config.task].classifies:
      raise workdir_lib.RunError(
          f'{workdir} is a task={config.task} run, not a '
          'classifier; fine-tune one with python -m '
          'lm.finetune')
    corpus = corpus_lib.load_corpus(config.data,
                                    config.model.max_len,
                                    tokenizer=tokenizer_lib.load(workdir),
                                    seed=config.seed)
    self.config = config
    self.task = tasks.get(config, corpus)
    self.trainer = train_lib.Trainer(config, sharding.make_mesh(config.mesh))
    if step is None:
      best, _ = self.task.best_metric
      ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True,
                                         best_metric=best, best_mode='max')
      step = ckpt.best_step() or ckpt.latest_step()
    self.step = step
    self.params = workdir_lib.load_params(self.trainer.abstract_state['params'],
                                          workdir, step)

  def evaluate(self, split: str) -> dict:
    if split not in self.task.corpus.texts:
      raise config_lib.ConfigError(
          f'--split={split}: this run has no such split; it has '
          f'{", ".join(self.task.corpus.texts)}')
    if (self.task.sentences(split).labels < 0).any():
      raise config_lib.ConfigError(f'--split={split} is unlabelled; '
                                   'evaluate validation')
    return self.task.classify_split(self.trainer, self.params, split)

  def predict(self, lines: list[str]):
    """(label, probability of it) per sentence, and how many were cut."""
    sentences = encoder_data.Sentences.encode(
        self.task.tok, lines, [-1] * len(lines), self.task.seq_len)
    probs = self.task.predict(self.trainer, self.params, sentences)
    return ([(int(p.argmax()), float(p.max())) for p in probs],
            sentences.truncated)


def evaluate(workdir: str, split: str, step: int | None) -> None:
  model = Classifier(workdir, step)
  results = {'step': model.step, 'split': split, **model.evaluate(split)}
  path = os.path.join(workdir, f'evaluation_{split}.json')
  with open(path, 'w') as f:
    json.dump(results, f, indent=2)
  matrix = results['confusion']
  print(f'{split} at step {model.step}: accuracy {results["accuracy"]:.4f}, '
        f'F1 {results["f1"]:.4f} over {results["examples"]} sentences '
        f'({results["truncated"]} truncated)')
  print('confusion (rows: true, columns: predicted)')
  print('\t' + '\t'.join(str(j) for j in range(len(matrix))))
  for i, row in enumerate(matrix):
    print(f'{i}\t' + '\t'.join(str(x) for x in row))
  print(f'written to {path}')


def read_sentences(path: str) -> list[str]:
  """Sentences, one per line, from `path` or stdin; empty lines refused."""
  if path:
    if not os.path.isfile(path):
      raise config_lib.ConfigError(f'--input={path}: no such file')
    with open(path, encoding='utf-8', errors='replace') as f:
      text = f.read()
  else:
    text = sys.stdin.read()
  lines = text.splitlines()
  for n, line in enumerate(lines, 1):
    if not line.strip():
      raise config_lib.ConfigError(f'{path or "stdin"} line {n} is empty; '
                                   'give one sentence per line')
  if not lines:
    raise config_lib.ConfigError(f'{path or "stdin"} holds no sentences')
  return lines


def predict(workdir: str, path: str, step: int | None) -> None:
  lines = read_sentences(path)
  model = Classifier(workdir, step)
  labels, truncated = model.predict(lines)
  for line, (label, p) in zip(lines, labels):
    print(f'{label}\t{p:.4f}\t{line}')
  if truncated:
    print(f'{truncated} of {len(lines)} sentences were longer than '
          f'{model.task.seq_len - 2} pieces and were cut', file=sys.stderr)


def main(argv):
  command = argv[1] if len(argv) > 1 else 'train'
  if command not in COMMANDS:
    cli.usage_error(f'unknown command {command!r}; use one of '
                    f'{", ".join(COMMANDS)} (or none: train)')
  cli.start(argv[:1] + argv[2:], logging.ERROR)
  if not FLAGS.workdir:
    cli.usage_error('--workdir is required')
  if command == 'train':
    if FLAGS.config is None:
      cli.usage_error('--config is required to train (e.g. '
                      '--config=configs/sst2.py:mini)')
    cli.exit_on_user_error(train, FLAGS.config, FLAGS.workdir)
  elif command == 'evaluate':
    cli.exit_on_user_error(evaluate, FLAGS.workdir, FLAGS.split, FLAGS.step)
  else:
    cli.exit_on_user_error(predict, FLAGS.workdir, FLAGS.input, FLAGS.step)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
