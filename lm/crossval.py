"""K-fold cross-validation of a language model on its training corpus.

  python -m lm.crossval --config=configs/wikitext2_word.py:cpu --folds=5 \
      --workdir=/tmp/cv

The training split is cut into K contiguous folds of whole examples (lines or
documents, in corpus order). Run k trains on the other K-1 folds and holds
fold k out: its tokenizer is trained on its own training folds, its periodic
and final evaluations read the held-out fold as one stream. Each run is an
ordinary training run in WORKDIR/fold_k (so an interrupted study resumes, and
finished folds are skipped); a character vocabulary is the whole training
split's alphabet (see `_alphabet`); the mean and standard deviation of held-out
perplexity go to WORKDIR/crossval.json and WORKDIR/crossval.md.
"""

from __future__ import annotations

import json
import math
import os

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from lm import cli
from lm import config as config_lib
from lm.data import corpus as corpus_lib
from lm.data import prepare as prepare_lib
from lm.data import preprocess
from lm.data import tokenizer as tokenizer_lib
from lm.train import loop
from lm.train import workdir as workdir_lib

config_flags.DEFINE_config_file(
    'config', None, 'Config file (configs/NAME.py[:VARIANT]).',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Study directory: one run per fold and '
                    'the summary.')
flags.DEFINE_integer('folds', 5, 'Number of folds K (at least 2).')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS

METRICS = ('loss', 'perplexity', 'word_perplexity', 'bits_per_byte')


def fold_bounds(num_examples: int, k: int) -> list[tuple[int, int]]:
  """[start, end) of each of k contiguous folds covering 0..num_examples."""
  if k < 2:
    raise config_lib.ConfigError(f'--folds must be at least 2, got {k}')
  if num_examples < k:
    raise corpus_lib.DataError(
        f'the training split has {num_examples} example(s), fewer than '
        f'{k} folds; use fewer folds or a corpus of many lines/documents')
  edges = [round(i * num_examples / k) for i in range(k + 1)]
  return list(zip(edges[:-1], edges[1:]))


def fold_splits(base: str, start: int, end: int, n: int) -> dict[str, str]:
  """TFDS split expressions: train on all but [start, end), hold it out."""
  parts = ([f'{base}[:{start}]'] if start else []) + (
      [f'{base}[{end}:{n}]'] if end < n else [])
  return {'train': '+'.join(parts), 'validation': f'{base}[{start}:{end}]'}


def fold_configs(config, k: int):
  """(name, config) of each fold's run."""
  builder = corpus_lib.prepare(config.data)
  train = corpus_lib.resolve_splits(builder, config.data)['train']
  # A corpus without a validation split was carved as train[:m]: fold that.
  base, _, rest = train.partition('[')
  n = (int(rest.strip(':]')) if rest else
       builder.info.splits[base].num_examples)
  out = []
  for i, (start, end) in enumerate(fold_bounds(n, k)):
    c = config.copy_and_resolve_references()
    s = fold_splits(base, start, end, n)
    c.data.update(train_split=s['train'], eval_split=s['validation'],
                  test_split='')
    out.append((f'fold_{i}', c))
  return out


def summarize(results: dict[str, dict[str, float]]) -> dict:
  """Mean and sample standard deviation of each held-out metric."""
  summary = {}
  for m in METRICS:
    values = [r[m] for r in results.values() if m in r]
    if values:
      summary[m] = {'mean': float(np.mean(values)),
                    'std': float(np.std(values, ddof=1)) if len(values) > 1
                    else 0.0}
  return summary


def markdown(results, summary) -> str:
  cols = [m for m in METRICS if m in summary]
  lines = ['| fold | ' + ' | '.join(cols) + ' |',
           '| --- |' + ' ---: |' * len(cols)]
  for name, r in results.items():
    lines.append(f'| {name} | ' + ' | '.join(f'{r[m]:.4g}' for m in cols)
                 + ' |')
  lines.append('| **mean ± std** | ' + ' | '.join(
      f'{summary[m]["mean"]:.4g} ± {summary[m]["std"]:.2g}' for m in cols)
               + ' |')
  return '\n'.join(lines) + '\n'


def cross_validate(config, workdir: str, k: int) -> dict:
  """Trains the k fold runs (skipping finished ones); writes the summary."""
  config_lib.validate(config)
  if k < 2:
    raise config_lib.ConfigError(f'--folds must be at least 2, got {k}')
  os.makedirs(workdir, exist_ok=True)
  results = {}
  alphabet = _alphabet(config) if config.data.tokenizer == 'char' else None
  for i, (name, c) in enumerate(fold_configs(config, k)):
    fold_dir = os.path.join(workdir, name)
    done = _finished(fold_dir, c.train.num_steps)
    print(f'{name} ({i + 1}/{k}): train {c.data.train_split}, hold out '
          f'{c.data.eval_split}' + (' — done, skipped' if done else ''),
          flush=True)
    if done is None:
      c.eval.final = True
      if alphabet and not os.path.exists(
          os.path.join(fold_dir, workdir_lib.TOKENIZER_FILE)):
        tokenizer_lib.save(alphabet, fold_dir)
      done = loop.train_to_end(c, fold_dir).final['validation']
    results[name] = done
  summary = summarize(results)
  record = {'folds': k, 'held_out': results, 'summary': summary}
  with open(os.path.join(workdir, 'crossval.json'), 'w') as f:
    json.dump(record, f, indent=2)
  with open(os.path.join(workdir, 'crossval.md'), 'w') as f:
    f.write(markdown(results, summary))
  return record


def _alphabet(config):
  """A char tokenizer of the whole training split, for every fold.

  Words and subwords are learned from the training folds only (a held-out
  word becomes <unk>, SentencePiece falls back to bytes), but a character
  vocabulary has no unknown symbol: a character seen only in the held-out
  fold could not be scored. The alphabet is not a statistic of the text's
  sequence, so taking it from all folds leaks nothing the model learns.
  """
  builder = corpus_lib.prepare(config.data)
  split = corpus_lib.resolve_splits(builder, config.data)['train']
  transform = preprocess.make(config.data.normalize, config.data.lowercase)
  texts = map(transform,
              corpus_lib.read_texts(prepare_lib.source(builder, split)))
  return tokenizer_lib.train('char', texts)


def _finished(fold_dir: str, num_steps: int):
  """A finished fold's held-out metrics, or None."""
  path = os.path.join(fold_dir, workdir_lib.RESULTS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  if saved.get('step') != num_steps or 'validation' not in saved:
    return None
  return saved['validation']


def main(argv):
  cli.start(argv)
  record = cli.exit_on_user_error(cross_validate, FLAGS.config, FLAGS.workdir,
                                  FLAGS.folds)
  ppl = record['summary'].get('perplexity', {})
  word = record['summary'].get('word_perplexity', {})
  print(f'held-out perplexity {ppl.get("mean", math.nan):.2f} ± '
        f'{ppl.get("std", math.nan):.2f} (word-level '
        f'{word.get("mean", math.nan):.2f} ± {word.get("std", math.nan):.2f}) '
        f'over {FLAGS.folds} folds; table in '
        f'{os.path.join(FLAGS.workdir, "crossval.md")}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
