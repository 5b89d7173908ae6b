"""Tests of lm.data: corpora through TFDS, streams, windows, packed rows."""

from conftest import SHARED_DATA
import numpy as np
import pytest

from lm import config as config_lib
from lm.data import corpus as corpus_lib
from lm.data import rows as rows_lib
from lm.data import tokenizer as tokenizer_lib

WIKITEXT = SHARED_DATA / 'wikitext-2'


def data_config(**kw):
  d = config_lib.default().data
  d.update(**kw)
  return d


def test_tiny_shakespeare_split_is_nanogpt_90_10():
  corpus = corpus_lib.load_corpus(data_config(), 64)
  assert corpus.tokenizer.vocab_size == 65
  assert len(corpus.train) == 1_003_854 and len(corpus.val) == 111_540
  assert 'test' not in corpus.texts  # No test split: skipped.


@pytest.mark.skipif(not WIKITEXT.is_dir(), reason='no ../shared/data')
def test_wikitext2_word_stream_has_published_sizes():
  corpus = corpus_lib.load_corpus(
      data_config(name='wikitext2', path=str(WIKITEXT), tokenizer='word'), 64)
  assert corpus.tokenizer.vocab_size == 33278
  assert len(corpus.train) == 2_088_628
  assert len(corpus.streams['validation']) == 217_646
  assert len(corpus.streams['test']) == 245_569


def test_extra_text_follows_the_training_split(tmp_path):
  (tmp_path / 'main').mkdir()
  (tmp_path / 'extra').mkdir()
  (tmp_path / 'main' / 'a.train.txt').write_text('alpha beta\n' * 5)
  (tmp_path / 'main' / 'a.valid.txt').write_text('alpha\n' * 3)
  (tmp_path / 'extra' / 'b.train.txt').write_text('Gamma Delta\n' * 4)
  (tmp_path / 'extra' / 'b.valid.txt').write_text('never read\n')
  d = data_config(name='text_files', path=str(tmp_path / 'main'),
                  tokenizer='word', lowercase=True, extra_name='text_files',
                  extra_path=str(tmp_path / 'extra'))
  corpus = corpus_lib.load_corpus(d, 4)
  # Lowercased like the rest; only its train split; the tokenizer knows it.
  assert corpus.texts['train'] == ['alpha beta\n'] * 5 + ['gamma delta\n'] * 4
  assert corpus.texts['validation'] == ['alpha\n'] * 3
  assert {'gamma', 'delta'} <= set(corpus.tokenizer.words)
  assert 'never' not in set(corpus.tokenizer.words)


def test_missing_validation_is_held_out_of_train(tmp_path):
  (tmp_path / 'notes.txt').write_text(''.join(f'line {i}\n' for i in range(50)))
  corpus = corpus_lib.load_corpus(
      data_config(name='text_files', path=str(tmp_path)), 8)
  assert corpus.splits == {'train': 'train[:45]', 'validation': 'train[45:]',
                           'test': ''}
  assert corpus.texts['validation'][0] == 'line 45\n'


def test_encode_document_marks_ends_per_tokenizer():
  texts = ['ab c\n', 'd\n']
  word = tokenizer_lib.train('word', texts)
  assert word.decode(corpus_lib.encode_stream(word, texts)) == 'ab c\nd\n'
  char = tokenizer_lib.train('char', texts)
  assert char.decode(corpus_lib.encode_stream(char, texts)) == 'ab c\nd\n'
  byte = tokenizer_lib.train('byte', texts)
  ids = corpus_lib.encode_stream(byte, texts)
  assert ids.tolist() == list(b'ab c') + [byte.eos_id, ord('d'), byte.eos_id]
  assert byte.decode(ids) == 'ab c\nd\n'  # <eos> reads back as a newline.


def test_windows_shift_targets_by_one():
  w = rows_lib.Windows(np.arange(10, dtype=np.int32), 4)
  assert len(w) == 6
  assert w[2]['inputs'].tolist() == [2, 3, 4, 5]
  assert w[2]['targets'].tolist() == [3, 4, 5, 6]


def test_train_batches_are_deterministic_and_resume_exactly():
  tokens = np.arange(1000, dtype=np.int32)
  ds = rows_lib.train_dataset(tokens, 8, 4, seed=3)
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  rest = [next(it)['inputs'] for _ in range(3)]
  again = iter(rows_lib.train_dataset(tokens, 8, 4, seed=3))
  np.testing.assert_array_equal(next(again)['inputs'], first[0]['inputs'])
  resumed = iter(rows_lib.train_dataset(tokens, 8, 4, seed=3))
  resumed.set_state(state)
  for want in rest:
    np.testing.assert_array_equal(next(resumed)['inputs'], want)
  other = next(iter(rows_lib.train_dataset(tokens, 8, 4, seed=4)))
  assert not np.array_equal(other['inputs'], first[0]['inputs'])
  assert first[0]['inputs'].shape == (4, 8)


def packed(tmp_path, seed=0):
  lines = [' '.join(f'w{i}' for i in range(n)) + '\n'
           for n in (3, 17, 1, 40, 5, 9, 2, 30, 11, 6)]
  (tmp_path / 'train.txt').write_text(''.join(lines))
  (tmp_path / 'valid.txt').write_text(''.join(lines[:3]))
  corpus = corpus_lib.load_corpus(
      data_config(name='text_files', path=str(tmp_path), tokenizer='word'), 8)
  return corpus, rows_lib.packed_dataset(rows_lib.process_documents(corpus),
                                         16,
                                         4,
                                         seed=seed)


def test_packed_rows_keep_documents_apart(tmp_path):
  corpus, ds = packed(tmp_path)
  docs = corpus.documents['train']
  rows = rows_lib.PackedRows(docs, 16, seed=0)
  pieces = {}
  for r in range(rows.rows_per_epoch):  # One epoch, row by row.
    row = rows[r]
    seg, pos = row['segment_ids'], row['positions']
    assert seg[0] == 1 and np.all(np.diff(seg) >= 0)
    for s in np.unique(seg):
      at = seg == s
      # Each piece counts positions from 0, and is a run of one document.
      np.testing.assert_array_equal(pos[at], np.arange(at.sum()))
      pieces.setdefault(r, []).append((row['inputs'][at], row['targets'][at]))
  stream = docs.tokens.tolist()
  for row_pieces in pieces.values():
    for inputs, targets in row_pieces:
      np.testing.assert_array_equal(inputs[1:], targets[:-1])
      n = len(inputs)
      starts = [i for i in range(len(stream) - n)
                if stream[i:i + n] == inputs.tolist()
                and stream[i + 1:i + n + 1] == targets.tolist()]
      # The piece lies inside one document (never across an end).
      assert any(np.searchsorted(docs.offsets, i, 'right') ==
                 np.searchsorted(docs.offsets, i + n, 'right')
                 for i in starts), (inputs, targets)
  # An epoch uses every target of the kept documents once, but the last
  # partial row.
  targets = int((np.diff(docs.offsets) - 1).clip(0).sum())
  assert rows.rows_per_epoch == targets // 16
  b = next(iter(ds))
  assert b['inputs'].shape == b['segment_ids'].shape == (4, 16)
  assert b['weights'].dtype == np.float32


def test_packed_iterator_resumes_at_the_next_batch(tmp_path):
  _, ds = packed(tmp_path, seed=5)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(4)]
  resumed = iter(ds)
  resumed.set_state(state)
  for w in want:
    got = next(resumed)
    for k in w:
      np.testing.assert_array_equal(got[k], w[k])


def test_eval_batches_are_fixed():
  tokens = np.arange(500, dtype=np.int32)
  a = rows_lib.eval_batches(tokens, 8, 4, 3, seed=1)
  b = rows_lib.eval_batches(tokens, 8, 4, 3, seed=1)
  assert len(a) == 3
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['inputs'], y['inputs'])


def test_bad_corpora_give_one_line(tmp_path):
  with pytest.raises(corpus_lib.DataError, match='does not exist'):
    corpus_lib.load_corpus(
        data_config(name='text_files', path=str(tmp_path / 'missing.txt')), 8)
  (tmp_path / 'bad.txt').write_bytes(b'\xff\xfe')
  with pytest.raises(corpus_lib.DataError, match='is not valid UTF-8'):
    corpus_lib.load_corpus(
        data_config(name='text_files', path=str(tmp_path / 'bad.txt')), 8)
  (tmp_path / 'short.txt').write_text('abcdefghij\n' * 20)
  with pytest.raises(corpus_lib.DataError,
                     match='validation split has 22 '
                     'tokens'):
    corpus_lib.load_corpus(
        data_config(name='text_files', path=str(tmp_path / 'short.txt')), 64)
