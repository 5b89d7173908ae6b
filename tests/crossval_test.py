"""Tests of lm.crossval: folds, their splits, and a whole K-fold run."""

import json

from conftest import run_cli
import pytest

from lm import crossval
from lm.data import corpus as corpus_lib
from lm.data import prepare as prepare_lib


@pytest.mark.parametrize('n, k', [(10, 2), (10, 3), (7, 7), (36718, 5)])
def test_folds_are_contiguous_disjoint_and_cover(n, k):
  bounds = crossval.fold_bounds(n, k)
  assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
  for (_, end), (start, _) in zip(bounds, bounds[1:]):
    assert end == start
  sizes = [e - s for s, e in bounds]
  assert max(sizes) - min(sizes) <= 1


def test_too_few_examples_or_folds():
  with pytest.raises(corpus_lib.DataError, match='fewer than 5 folds'):
    crossval.fold_bounds(3, 5)
  with pytest.raises(ValueError, match='at least 2'):
    crossval.fold_bounds(10, 1)


def corpus(tmp_path, lines=40):
  folder = tmp_path / 'corpus'
  folder.mkdir()
  # Line 3 holds the only '$': a char-level fold holding it out must still
  # score it (the alphabet comes from the whole training split).
  (folder / 'lines.txt').write_text(''.join(
      f'line {i} says {"abc"[i % 3] * (i % 7 + 1)}{" $" * (i == 3)}\n'
      for i in range(lines)))
  return folder


def test_fold_splits_read_back_disjoint_and_complete(tmp_path, test_config):
  c = test_config
  c.data.update(name='text_files', path=str(corpus(tmp_path)))
  builder = corpus_lib.prepare(c.data)
  everything = corpus_lib.read_texts(prepare_lib.source(builder, 'train[:36]'))
  held = []
  for _, fold in crossval.fold_configs(c, 3):
    train = corpus_lib.read_texts(
        prepare_lib.source(builder, fold.data.train_split))
    out = corpus_lib.read_texts(
        prepare_lib.source(builder, fold.data.eval_split))
    assert not set(train) & set(out) and sorted(train +
                                                out) == sorted(everything)
    held += out
  # The held-out folds, in order, are the (non-validation) corpus.
  assert held == everything


def test_crossval_cli_trains_each_fold_and_resumes(tmp_path):
  folder = corpus(tmp_path, lines=60)
  args = ['lm.crossval', '--config=configs/shakespeare_char.py:test',
          f'--workdir={tmp_path / "cv"}', '--folds=2',
          '--config.data.name=text_files', f'--config.data.path={folder}',
          '--config.train.num_steps=2', '--config.model.max_len=8']
  p = run_cli(*args)
  assert p.returncode == 0, p.stderr[-2000:]
  assert 'held-out perplexity' in p.stdout
  record = json.loads((tmp_path / 'cv' / 'crossval.json').read_text())
  assert set(record['held_out']) == {'fold_0', 'fold_1'}
  assert record['summary']['perplexity']['std'] >= 0
  table = (tmp_path / 'cv' / 'crossval.md').read_text()
  assert '| fold_1 |' in table and 'mean ± std' in table
  again = run_cli(*args)
  assert again.returncode == 0 and again.stdout.count('done, skipped') == 2


def test_bad_folds_flag_is_one_line(tmp_path):
  # --folds=1: tests/cli_test.py's table of bad inputs.
  p = run_cli('lm.crossval', '--config=configs/shakespeare_char.py:test',
              f'--workdir={tmp_path}', '--folds=3')
  assert p.returncode == 2 and 'fewer than 3 folds' in p.stderr
  assert run_cli('lm.crossval', '--help').returncode == 0
