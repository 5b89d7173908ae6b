"""Tests of lm.data.tokenizer."""

import json
import random

from conftest import SHARED_DATA
import numpy as np
import pytest

from lm.data import subword
from lm.data import tokenizer as tokenizer_lib
from lm.data import vocabulary

WIKITEXT2 = SHARED_DATA / 'wikitext-2'
NON_ASCII = 'naïve café — 東京\n  two  spaces,\ttab\n'


def corpus(num_lines=300, seed=0):
  """A few hundred lines of made-up words: enough text to train subwords."""
  rng = random.Random(seed)
  words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz')
                   for _ in range(rng.randint(2, 9))) for _ in range(120)]
  return [' '.join(rng.choice(words) for _ in range(rng.randint(3, 15))) +
          rng.choice('.,!?') for _ in range(num_lines)]


@pytest.fixture(scope='module')
def tokenizers():
  """One trained tokenizer of each kind (SentencePiece both ways)."""
  texts = corpus()
  return {
      'char': tokenizer_lib.train('char', texts),
      'word': tokenizer_lib.train('word', texts),
      'bpe': tokenizer_lib.train('sentencepiece', texts, vocab_size=400),
      'unigram': tokenizer_lib.train('sentencepiece', texts, vocab_size=400,
                                     model_type='unigram'),
      'byte': tokenizer_lib.train('byte', texts),
  }


def test_round_trip_and_sorted_ids(tmp_path):
  tok = tokenizer_lib.CharTokenizer.from_text('hello world')
  assert tok.vocab_size == 8 and tok.chars == ' dehlorw'
  ids = tok.encode('hold')
  assert ids.tolist() == [3, 5, 4, 1] and tok.decode(ids) == 'hold'
  tok.save(tmp_path / 't.json')
  again = tokenizer_lib.CharTokenizer.load(tmp_path / 't.json')
  assert again.chars == tok.chars


def test_unknown_characters_are_named():
  tok = tokenizer_lib.CharTokenizer.from_text('abc')
  with pytest.raises(vocabulary.TokenizerError, match="'xz'"):
    tok.encode('axbz')


def test_load_missing_or_foreign_file(tmp_path):
  with pytest.raises(vocabulary.TokenizerError, match='no tokenizer'):
    tokenizer_lib.CharTokenizer.load(tmp_path / 'missing.json')
  (tmp_path / 'bpe.json').write_text('{"type": "bpe"}')
  with pytest.raises(vocabulary.TokenizerError,
                     match="unknown tokenizer "
                     "type 'bpe'"):
    tokenizer_lib.CharTokenizer.load(tmp_path / 'bpe.json')


def test_char_file_and_directory_layouts(tmp_path):
  (tmp_path / 'old.json').write_text('{"type": "char", "chars": "abc"}')
  assert tokenizer_lib.load(tmp_path / 'old.json').chars == 'abc'
  tok = tokenizer_lib.CharTokenizer('abc')
  tok.save(tmp_path)  # An existing directory: tokenizer.json inside it.
  assert json.loads((tmp_path / 'tokenizer.json').read_text()) == {
      'type': 'char', 'chars': 'abc'}
  assert tokenizer_lib.CharTokenizer.load(tmp_path).chars == 'abc'
  assert tok.special_ids == {} and tok.eos_id is None and tok.kind == 'char'


@pytest.mark.parametrize('name', ['char', 'word', 'bpe', 'unigram', 'byte'])
def test_save_load_keeps_encodings_and_fingerprint(tokenizers, name,
                                                   tmp_path):
  tok = tokenizers[name]
  text = corpus(5, seed=1)[0] + '\n' + corpus(5, seed=2)[1]
  if name == 'char':
    text = ''.join(ch for ch in text if ch in tok.chars)
  tokenizer_lib.save(tok, tmp_path / 'run')
  again = tokenizer_lib.load(tmp_path / 'run')
  assert type(again) is type(tok) and again.kind == tok.kind
  assert again.vocab_size == tok.vocab_size
  assert again.special_ids == tok.special_ids and again.eos_id == tok.eos_id
  np.testing.assert_array_equal(again.encode(text), tok.encode(text))
  assert again.fingerprint() == tok.fingerprint()
  assert tok.encode(text).dtype == np.int32


@pytest.mark.parametrize('name', ['bpe', 'unigram', 'byte'])
def test_subwords_and_bytes_round_trip_any_text(tokenizers, name):
  tok = tokenizers[name]
  for text in (NON_ASCII, '', ' leading', 'trailing \n\n', corpus(3)[2]):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.min(initial=0) >= 0 and ids.max(initial=0) < tok.vocab_size


def test_word_round_trip_of_canonical_text(tokenizers):
  tok = tokenizers['word']
  text = '\n'.join(corpus(20, seed=0)[:20]) + '\n'
  assert tok.decode(tok.encode(text)) == text
  ids = tok.encode(text)
  np.testing.assert_array_equal(tok.encode(tok.decode(ids)), ids)


def test_fingerprint_tells_vocabularies_apart(tokenizers):
  prints = {name: tok.fingerprint() for name, tok in tokenizers.items()}
  assert len(set(prints.values())) == len(prints)
  assert (tokenizer_lib.CharTokenizer('abc').fingerprint() !=
          tokenizer_lib.CharTokenizer('abd').fingerprint())
  assert prints['word'].startswith('word:') and len(prints['word']) < 30


def test_word_lines_eos_and_unknown_words():
  tok = tokenizer_lib.train('word', ['b a\n', ' c  a \n\nd'])
  assert tok.words == ['b', 'a', '<eos>', 'c', 'd', '<unk>']
  assert tok.special_ids == {'unk': 5, 'eos': 2} and tok.eos_id == 2
  assert tok.encode(' a b \n').tolist() == [1, 0, 2]
  assert tok.encode(' ').tolist() == [2]
  assert tok.encode('\n').tolist() == [2]
  assert tok.encode('').tolist() == []
  assert tok.encode('a\n\nzebra d').tolist() == [1, 2, 2, 5, 4, 2]
  assert tok.decode([1, 0, 2, 3]) == 'a b\nc'


def test_word_min_count_and_max_size():
  texts = ['x y x z x y <unk> w']
  assert tokenizer_lib.train('word', texts, min_count=2).words == [
      'x', 'y', '<unk>', '<eos>']
  # <eos> and <unk> count towards max_size; 'x' is the most frequent.
  tok = tokenizer_lib.train('word', texts, max_size=3)
  assert tok.words == ['x', '<unk>', '<eos>']
  assert tok.encode('z x').tolist() == [1, 0, 2]
  assert tokenizer_lib.train('word', texts, vocab_size=3).words == tok.words


def test_wikitext2_word_vocabulary_and_lengths():
  if not WIKITEXT2.is_dir():
    pytest.skip(f'no WikiText-2 at {WIKITEXT2}')

  def lines(split):
    with open(WIKITEXT2 / f'wiki.{split}.tokens', encoding='utf-8') as f:
      return list(f)

  train = lines('train')
  tok = tokenizer_lib.train('word', train)
  assert tok.vocab_size == 33_278
  assert sum(len(tok.encode(line)) for line in train) == 2_088_628
  valid = lines('valid')
  ids = np.concatenate([tok.encode(line) for line in valid])
  assert len(ids) == 217_646
  literal_unks = sum(line.split().count('<unk>') for line in valid)
  assert (ids == tok.unk_id).sum() == literal_unks  # No other OOV words.


@pytest.mark.parametrize('name', ['bpe', 'unigram'])
def test_sentencepiece_vocabulary_and_specials(tokenizers, name):
  tok = tokenizers[name]
  assert tok.kind == 'sentencepiece' and tok.vocab_size == 400
  assert tok.special_ids == {'unk': 0, 'bos': 1, 'eos': 2}
  assert tok.eos_id == 2
  ids = tok.encode('abc def').tolist()
  assert ids and 1 not in ids and 2 not in ids  # encode adds no bos/eos.


def test_bert_specials_are_control_tokens_text_never_makes(tmp_path):
  tok = tokenizer_lib.train('sentencepiece', corpus(), vocab_size=400,
                            specials='bert')
  assert tok.special_ids == {'unk': 0, 'pad': 1, 'cls': 2, 'sep': 3,
                             'mask': 4}
  assert tok.eos_id is None
  text = 'abc [MASK] def [CLS] [SEP] [PAD] [UNK]'
  ids = tok.encode(text)
  assert not set(ids.tolist()) & {1, 2, 3, 4}  # Literal text stays text.
  assert tok.decode(ids) == text
  framed = np.concatenate([[2], ids, [3], [1, 1]])
  assert tok.decode(framed) == text  # Controls and padding decode to nothing.
  tok.save(str(tmp_path))
  again = tokenizer_lib.load(str(tmp_path))
  assert again.special_ids == tok.special_ids
  with pytest.raises(vocabulary.TokenizerError, match='unknown specials'):
    tokenizer_lib.train('sentencepiece', corpus(), vocab_size=400,
                        specials='gpt')


def test_t5_specials_are_a_hundred_consecutive_sentinels(tmp_path):
  tok = tokenizer_lib.train('sentencepiece', corpus(), vocab_size=400,
                            specials='t5')
  ids = tok.special_ids
  assert (ids['unk'], ids['bos'], ids['eos']) == (0, 1, 2)
  first = ids['sentinel']
  assert [tok._sp.id_to_piece(first + k) for k in (0, 1, 99)] == [
      '<extra_id_0>', '<extra_id_1>', '<extra_id_99>']
  assert all(tok._sp.is_control(first + k) for k in range(100))
  text = 'abc <extra_id_0> def'
  assert first not in tok.encode(text).tolist()
  assert tok.decode(np.concatenate([[first], tok.encode(text)])) == text


def words_by_kinds(tok, text):
  """`text`'s pieces grouped into words by `tok.word_kinds()`."""
  from lm.data import masking  # pylint: disable=g-import-not-at-top
  ids = tok.encode(text)
  starts = masking.word_starts(ids, tok.word_kinds())
  return [tok.decode(w) for w in np.split(ids, np.flatnonzero(starts)[1:])]


@pytest.mark.parametrize('name', ['bpe', 'unigram', 'word'])
def test_word_kinds_group_pieces_into_the_texts_words(tokenizers, name):
  tok = tokenizers[name]
  text = '\n'.join(corpus(40))
  words = words_by_kinds(tok, text)
  if name == 'word':  # One id a word, <eos> between lines.
    assert [w.strip() for w in words if w.strip()] == text.split()
  else:  # A word keeps its space; a newline stands alone.
    assert words == [w for line in text.split('\n')
                     for w in [line.split(' ')[0]] +
                     [' ' + x for x in line.split(' ')[1:]] + ['\n']][:-1]
  kinds = tok.word_kinds()
  assert kinds.shape == (tok.vocab_size,)
  assert (kinds[list(tok.special_ids.values())] == (
      vocabulary.WORD_STARTS if name == 'word' else
      vocabulary.WORD_ALONE)).all()


def test_word_kinds_of_wordpiece_and_of_tokenizers_without_words(
    tokenizers):
  specials = {'cls': '[CLS]', 'sep': '[SEP]', 'mask': '[MASK]',
              'pad': '[PAD]', 'unk': '[UNK]'}
  tok = subword.HFTokenizer(hf_wordpiece(corpus()), specials)
  text = corpus(3, seed=1)[0]  # WordPiece splits off the final '.'.
  assert [w.replace(' ', '') for w in words_by_kinds(tok, text)
          ] == text[:-1].split() + [text[-1]]
  assert tokenizers['char'].word_kinds() is None
  assert tokenizers['byte'].word_kinds() is None


def test_sentencepiece_training_is_deterministic(tokenizers):
  again = tokenizer_lib.train('sentencepiece', corpus(), vocab_size=400,
                              model_type='unigram')
  assert again.fingerprint() == tokenizers['unigram'].fingerprint()


def test_sentencepiece_model_file_missing_or_altered(tokenizers, tmp_path):
  tokenizers['bpe'].save(tmp_path)
  model = tmp_path / vocabulary.SPM_MODEL_FILE
  spec = json.loads((tmp_path / 'tokenizer.json').read_text())
  assert spec['model_file'] == 'tokenizer.model' and len(spec['sha256']) == 64
  model.write_bytes(model.read_bytes() + b'\0')
  with pytest.raises(vocabulary.TokenizerError, match='differs'):
    tokenizer_lib.load(tmp_path)
  model.unlink()
  with pytest.raises(vocabulary.TokenizerError, match='is missing'):
    tokenizer_lib.load(tmp_path)


def test_byte_vocabulary_and_decode():
  tok = tokenizer_lib.train('byte', ['anything'])
  assert tok.vocab_size == 257 and tok.special_ids == {'eos': 256}
  assert tok.encode('é').tolist() == [0xC3, 0xA9]
  assert tok.decode([104, 105, 256, 33]) == 'hi\n!'
  assert tok.decode([104, 0xC3]) == 'h\ufffd'  # A cut UTF-8 sequence.


@pytest.mark.parametrize('name', ['char', 'word', 'bpe', 'byte'])
def test_decode_refuses_ids_outside_the_vocabulary(tokenizers, name):
  tok = tokenizers[name]
  with pytest.raises(vocabulary.TokenizerError, match='outside'):
    tok.decode([0, tok.vocab_size])
  with pytest.raises(vocabulary.TokenizerError, match='outside'):
    tok.decode([-1])


def test_load_errors_are_one_line(tmp_path):
  cases = {'missing': None, 'corrupt': '{"type": "word", ',
           'unknown': '{"type": "wordpiece"}', 'list': '[1, 2]',
           'fieldless': '{"type": "word"}'}
  for name, content in cases.items():
    if content is not None:
      (tmp_path / name).mkdir()
      (tmp_path / name / 'tokenizer.json').write_text(content)
    with pytest.raises(vocabulary.TokenizerError) as e:
      tokenizer_lib.load(tmp_path / name)
    assert '\n' not in str(e.value) and str(tmp_path) in str(e.value), name
  tokenizer_lib.train('byte', [], directory=tmp_path / 'byte')
  with pytest.raises(vocabulary.TokenizerError, match='not a char one'):
    tokenizer_lib.CharTokenizer.load(tmp_path / 'byte')


def test_train_errors():
  errors = {
      'unknown tokenizer kind': dict(kind='wordpiece'),
      'set it to 0': dict(kind='char', vocab_size=10),
      'needs vocab_size': dict(kind='sentencepiece'),
      "use 'bpe' or 'unigram'": dict(kind='sentencepiece', vocab_size=300,
                                     model_type='wordpiece'),
      'training failed: Vocabulary size is smaller': dict(
          kind='sentencepiece', vocab_size=100),
      'no text to train': dict(kind='sentencepiece', vocab_size=300,
                               texts=['', ' \n\n']),
  }
  for message, kwargs in errors.items():
    with pytest.raises(vocabulary.TokenizerError, match=message):
      tokenizer_lib.train(**{'texts': corpus(20), **kwargs})


def hf_wordpiece(texts):
  """A small BERT WordPiece tokenizer trained with the `tokenizers` library."""
  import tokenizers as hf  # pylint: disable=g-import-not-at-top
  tok = hf.BertWordPieceTokenizer(lowercase=True)
  tok.train_from_iterator(texts, vocab_size=200, show_progress=False,
                          special_tokens=['[PAD]', '[UNK]', '[CLS]', '[SEP]',
                                          '[MASK]'])
  return tok.to_str().encode()


def test_hf_tokenizer_round_trip_specials_and_checks(tmp_path):
  content = hf_wordpiece(corpus())
  specials = {'cls': '[CLS]', 'sep': '[SEP]', 'mask': '[MASK]',
              'pad': '[PAD]', 'unk': '[UNK]', 'eos': '<absent>'}
  tok = subword.HFTokenizer(content, specials)
  # A named token the vocabulary lacks is dropped, not given a bad id.
  assert tok.special_ids == {'cls': 2, 'sep': 3, 'mask': 4, 'pad': 0,
                             'unk': 1} and tok.eos_id is None
  text = corpus(3, seed=1)[0]
  ids = tok.encode(text)
  assert ids.dtype == np.int32 and 2 not in ids  # No [CLS] added.
  assert tok.decode(np.concatenate([[2], ids, [3]])) == text.lower()
  tok.save(tmp_path)
  loaded = tokenizer_lib.load(tmp_path)
  assert loaded.kind == 'hf' and loaded.fingerprint() == tok.fingerprint()
  assert loaded.encode(text).tolist() == ids.tolist()
  other = subword.HFTokenizer(hf_wordpiece(corpus(seed=2)), specials)
  assert other.fingerprint() != tok.fingerprint()
  with pytest.raises(vocabulary.TokenizerError, match='not trained'):
    tokenizer_lib.train('hf', corpus())
  with pytest.raises(vocabulary.TokenizerError,
                     match='not a Hugging Face tokenizer.json'):
    subword.HFTokenizer(b'{"version": 1}', {})
  stored = tmp_path / vocabulary.HF_TOKENIZER_FILE
  stored.write_bytes(stored.read_bytes() + b' ')
  with pytest.raises(vocabulary.TokenizerError, match='differs'):
    tokenizer_lib.load(tmp_path)


def test_an_encoders_word_vocabulary(tmp_path):
  tok = tokenizer_lib.train('word', ['the cat sat', 'the dog\nran'],
                            specials='bert')
  ids = tok.special_ids
  assert {'cls', 'sep', 'mask', 'pad', 'unk', 'eos'} <= set(ids)
  assert tok.words[:4] == ['[PAD]', '[CLS]', '[SEP]', '[MASK]']
  # No <eos> inside an encoder's row: [SEP] ends the sentence.
  assert tok.encode('the cat\nran').tolist() == [
      tok.words.index(w) for w in ('the', 'cat', 'ran')]
  tok.save(str(tmp_path))
  again = tokenizer_lib.load(str(tmp_path))
  assert again.special_ids == ids and again.encode('dog').tolist() == [
      tok.words.index('dog')]
  plain = tokenizer_lib.train('word', ['the cat sat'])
  assert 'cls' not in plain.special_ids and plain.encode('the')[-1] == (
      plain.eos_id)
  with pytest.raises(vocabulary.TokenizerError, match='no t5 specials'):
    tokenizer_lib.train('word', ['a b'], specials='t5')
