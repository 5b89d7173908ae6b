"""Tests of lm.data: the corpus, its split, and the grain pipeline."""

import numpy as np
import pytest

from lm import data as data_lib

from conftest import SHARED_DATA

SHAKESPEARE = str(SHARED_DATA / 'tinyshakespeare' / 'input.txt')


@pytest.mark.skipif(not (SHARED_DATA / 'tinyshakespeare').exists(),
                    reason='the shared data folder is not beside the repo')
def test_embedded_copy_equals_shared_data():
  embedded = data_lib.read_corpus('tiny_shakespeare')
  assert embedded == open(SHAKESPEARE).read()
  assert len(embedded) == 1_115_394


def test_split_is_nanogpt_90_10():
  corpus = data_lib.load_corpus('tiny_shakespeare', '', 0.1, 64)
  assert corpus.tokenizer.vocab_size == 65
  assert len(corpus.train) == 1_003_854 and len(corpus.val) == 111_540


def test_windows_shift_targets_by_one():
  w = data_lib.Windows(np.arange(10, dtype=np.int32), 4)
  assert len(w) == 6
  assert w[2]['inputs'].tolist() == [2, 3, 4, 5]
  assert w[2]['targets'].tolist() == [3, 4, 5, 6]


def test_train_batches_are_deterministic_and_resume_exactly():
  tokens = np.arange(1000, dtype=np.int32)
  ds = data_lib.train_dataset(tokens, 8, 4, seed=3)
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  rest = [next(it)['inputs'] for _ in range(3)]
  again = iter(data_lib.train_dataset(tokens, 8, 4, seed=3))
  np.testing.assert_array_equal(next(again)['inputs'], first[0]['inputs'])
  resumed = iter(data_lib.train_dataset(tokens, 8, 4, seed=3))
  resumed.set_state(state)
  for want in rest:
    np.testing.assert_array_equal(next(resumed)['inputs'], want)
  other = next(iter(data_lib.train_dataset(tokens, 8, 4, seed=4)))
  assert not np.array_equal(other['inputs'], first[0]['inputs'])
  assert first[0]['inputs'].shape == (4, 8)


def test_eval_batches_are_fixed():
  tokens = np.arange(500, dtype=np.int32)
  a = data_lib.eval_batches(tokens, 8, 4, 3, seed=1)
  b = data_lib.eval_batches(tokens, 8, 4, 3, seed=1)
  assert len(a) == 3
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['inputs'], y['inputs'])


@pytest.mark.parametrize('content, message', [
    (None, 'data file not found'),
    ('', 'is empty'),
    ('   \n', 'is empty'),
    (b'\xff\xfe', 'is not UTF-8'),
])
def test_bad_files_give_one_line(tmp_path, content, message):
  path = tmp_path / 'corpus.txt'
  if isinstance(content, bytes):
    path.write_bytes(content)
  elif content is not None:
    path.write_text(content)
  with pytest.raises(data_lib.DataError, match=message):
    data_lib.load_corpus('text_file', str(path), 0.1, 8)


def test_directory_and_too_short_corpus(tmp_path):
  with pytest.raises(data_lib.DataError, match='cannot read'):
    data_lib.read_corpus('text_file', str(tmp_path))
  (tmp_path / 'short.txt').write_text('abcdefghij' * 3)
  with pytest.raises(data_lib.DataError, match='validation split has 3 '
                     'tokens'):
    data_lib.load_corpus('text_file', str(tmp_path / 'short.txt'), 0.1, 8)
