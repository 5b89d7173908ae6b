"""Tests of lm.data.embeddings: GloVe/word2vec text vectors into the token table."""

import numpy as np
import pytest

from conftest import SHARED_DATA
from lm.data import embeddings
from lm.data import tokenizer as tokenizer_lib
from lm.train import checkpoint as checkpoint_lib
from lm.train import loop


def write_vectors(path, rows, header=False):
  lines = [f'{len(rows)} {len(next(iter(rows.values())))}'] if header else []
  lines += [w + ' ' + ' '.join(f'{v:.6f}' for v in vec)
            for w, vec in rows.items()]
  path.write_text('\n'.join(lines) + '\n')


@pytest.mark.parametrize('header', [False, True])
def test_known_vectors_land_at_their_rows(tmp_path, header):
  rng = np.random.default_rng(0)
  rows = {w: rng.normal(size=4).astype(np.float32)
          for w in ('the', 'Cat', 'sat', 'absent')}
  write_vectors(tmp_path / 'v.txt', rows, header)
  tokens = ['<eos>', 'the', 'cat', 'sat', 'dog']
  vectors = embeddings.read_vectors(str(tmp_path / 'v.txt'), set(tokens))
  assert 'absent' not in vectors  # Only words of the vocabulary are kept.
  init = rng.normal(size=(6, 4)).astype(np.float32)  # One padding row.
  table, coverage = embeddings.initialise(init, tokens, vectors)
  np.testing.assert_allclose(table[1], rows['the'], atol=1e-6)
  np.testing.assert_allclose(table[2], rows['Cat'], atol=1e-6)  # Lower case.
  np.testing.assert_allclose(table[3], rows['sat'], atol=1e-6)
  for unknown in (0, 4, 5):  # Unknown words and padding keep their init.
    np.testing.assert_array_equal(table[unknown], init[unknown])
  assert (coverage.found, coverage.vocab_size) == (3, 5)
  assert '3 of 5 vocabulary entries (60.0%)' in str(coverage)


def test_vectors_rescaled_to_the_table_init_std():
  rng = np.random.default_rng(1)
  vectors = {w: rng.normal(0, 0.7, size=8).astype(np.float32)
             for w in ('a', 'b', 'c')}
  init = rng.normal(0, 0.02, size=(5, 8)).astype(np.float32)
  tokens = ['a', 'b', 'c', 'unk', 'pad']
  table, coverage = embeddings.initialise(init, tokens, vectors, std=0.02)
  placed = table[:3]
  assert placed.std() == pytest.approx(0.02, rel=1e-4)
  # One factor for all: directions and relative lengths are kept.
  np.testing.assert_allclose(placed / coverage.scale,
                             np.stack([vectors[w] for w in 'abc']), atol=1e-5)
  np.testing.assert_array_equal(table[3:], init[3:])
  assert f'vectors scaled by {coverage.scale:.4g}' in str(coverage)
  _, unscaled = embeddings.initialise(init, tokens, vectors)
  assert unscaled.scale == 1.0 and 'scaled' not in str(unscaled)


def test_bad_files_are_one_line(tmp_path):
  with pytest.raises(embeddings.EmbeddingError, match='cannot read'):
    embeddings.read_vectors(str(tmp_path / 'missing.txt'))
  (tmp_path / 'ragged.txt').write_text('a 1 2 3\nb 1 2\n')
  with pytest.raises(embeddings.EmbeddingError, match=':2 has 2 numbers'):
    embeddings.read_vectors(str(tmp_path / 'ragged.txt'))
  (tmp_path / 'nan.txt').write_text('a 1 x 3\n')
  with pytest.raises(embeddings.EmbeddingError, match='not a number'):
    embeddings.read_vectors(str(tmp_path / 'nan.txt'))
  write_vectors(tmp_path / 'wide.txt', {'a': np.ones(8)})
  with pytest.raises(embeddings.EmbeddingError, match='8 wide but '
                     'model.embed_dim is 4'):
    embeddings.initialise(np.zeros((2, 4)),
                          ['a', 'b'],
                          embeddings.read_vectors(str(tmp_path / 'wide.txt')))


def test_a_run_starts_from_the_vectors(tmp_path, test_config):
  c = test_config
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  (corpus / 'train.txt').write_text('the cat sat on the mat\n' * 40)
  (corpus / 'valid.txt').write_text('the cat sat\n' * 10)
  vec = {'cat': np.full(32, 0.5, np.float32), 'mat': np.full(32, -0.25,
                                                             np.float32)}
  write_vectors(tmp_path / 'glove.txt', vec)
  c.data.update(name='text_files', path=str(corpus), tokenizer='word')
  c.model.init_embeddings = str(tmp_path / 'glove.txt')
  c.model.max_len = 8
  c.optim.update(lr=1e-9, min_lr=0.0)  # Training must not move the rows.
  c.train.num_steps = 1
  c.eval.final = False
  loop.train_and_evaluate(c, str(tmp_path / 'run'))
  tok = tokenizer_lib.load(str(tmp_path / 'run'))
  state, _ = checkpoint_lib.Checkpointer(str(tmp_path / 'run'),
                                         read_only=True).restore(
                                             1, None, with_data=False)
  table = np.asarray(state['params']['wte'])
  np.testing.assert_allclose(table[tok.words.index('cat')], 0.5, atol=1e-5)
  np.testing.assert_allclose(table[tok.words.index('mat')], -0.25, atol=1e-5)
  assert np.abs(table[tok.words.index('the')]).max() < 0.2  # Random init.


def test_gzip_and_plain_read_the_same(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  rows = {'a': np.arange(3, dtype=np.float32), 'b': -np.ones(3, np.float32)}
  write_vectors(tmp_path / 'v.txt', rows, header=True)
  with gzip.open(tmp_path / 'v.txt.gz', 'wb') as f:
    f.write((tmp_path / 'v.txt').read_bytes())
  plain = embeddings.read_vectors(str(tmp_path / 'v.txt'))
  packed = embeddings.read_vectors(str(tmp_path / 'v.txt.gz'))
  assert plain.keys() == packed.keys() == rows.keys()
  for w in rows:
    np.testing.assert_array_equal(plain[w], packed[w])


GLOVE = SHARED_DATA / 'glove' / 'glove.6B.50d.100k.txt.gz'


def test_real_glove_cased_words_take_the_lowercase_vector():
  import gzip  # pylint: disable=g-import-not-at-top
  with gzip.open(GLOVE, 'rt', encoding='utf-8') as f:
    first = {}
    for line in f:
      word, *values = line.split()
      if word in ('the', 'paris', 'king'):
        first[word] = np.asarray(values, np.float32)
      if len(first) == 3:
        break
  tokens = ['<unk>', 'the', 'Paris', 'king', 'qwzxv_not_a_word']
  vectors = embeddings.read_vectors(str(GLOVE), set(tokens))
  assert set(vectors) == {'the', 'paris', 'king'}
  table, coverage = embeddings.initialise(
      np.zeros((5, 50), np.float32), tokens, vectors,
      counts=np.array([10, 50, 5, 3, 2]))
  np.testing.assert_array_equal(table[1], first['the'])
  np.testing.assert_array_equal(table[2], first['paris'])
  assert (coverage.exact, coverage.lowercase) == (2, 1)
  assert (coverage.tokens_found, coverage.tokens) == (58, 70)
  assert '3 of 5 vocabulary entries (60.0%)' in str(coverage)
  assert '(1 by their lowercase form), 82.9% of the training tokens' in str(
      coverage)


def test_vectors_that_cover_nothing_and_empty_files(tmp_path):
  write_vectors(tmp_path / 'v.txt', {'zebra': np.ones(4, np.float32)})
  vectors = embeddings.read_vectors(str(tmp_path / 'v.txt'), {'cat', 'dog'})
  with pytest.raises(embeddings.EmbeddingError, match='none of the 2 '
                     'vocabulary words has a vector'):
    embeddings.initialise(np.zeros((2, 4)), ['cat', 'dog'], vectors)
  (tmp_path / 'empty.txt').write_text('')
  with pytest.raises(embeddings.EmbeddingError, match='holds no vectors'):
    embeddings.read_vectors(str(tmp_path / 'empty.txt'))
  (tmp_path / 'bad.gz').write_bytes(b'\x1f\x8b' + b'not gzip at all')
  with pytest.raises(embeddings.EmbeddingError, match='not UTF-8 text or gzip'):
    embeddings.read_vectors(str(tmp_path / 'bad.gz'))
