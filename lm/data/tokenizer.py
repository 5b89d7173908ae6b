"""Tokenizers behind one small interface: char, word, SentencePiece and byte.

Every tokenizer has `kind`, `vocab_size`, `special_ids` (name -> id),
`eos_id` (or None), `encode(text) -> int32 ids`, `decode(ids) -> text`,
`save(directory)` and `fingerprint()`. `train` builds one from the training
split's texts; `load` reads one back from a run directory, which holds
`tokenizer.json` (`{"type": ..., ...}`) and, for SentencePiece, the model file
`tokenizer.model` whose sha256 tokenizer.json records.

- 'char': one id per distinct character of the training text, sorted.
- 'word': WikiText conventions, as pytorch/examples word_language_model: each
  line is split on whitespace and ends in `<eos>`; unknown words are `<unk>`.
- 'sentencepiece': BPE or unigram subwords with byte fallback, so any text
  encodes; the text is not normalised (lm.data.preprocess does that, explicitly).
  With `specials='bert'` (encoders) it has BERT's `[UNK]` 0, `[PAD]` 1 and
  control tokens `[CLS]` 2, `[SEP]` 3, `[MASK]` 4 (no bos/eos), which text
  never encodes to and decoding drops.
- 'byte': the UTF-8 bytes 0..255, and `<eos>` = 256.
- 'hf': a Hugging Face `tokenizers` tokenizer (GPT-2's byte-level BPE,
  BERT's WordPiece, ...) imported with a checkpoint by `lm.convert`; its
  `tokenizer.json` is kept as `hf_tokenizer.json`. It is never trained here.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable
from typing import Sequence

import numpy as np

from lm.data import subword
from lm.data import vocabulary

KINDS = ('char', 'word', 'sentencepiece', 'byte', 'hf')


class CharTokenizer(vocabulary.Tokenizer):
  """Maps each character of a fixed alphabet to an id (sorted order)."""

  kind = 'char'

  def __init__(self, chars: str):
    self.chars = chars
    self._ids = {ch: i for i, ch in enumerate(chars)}

  @classmethod
  def from_text(cls, text: str) -> 'CharTokenizer':
    return cls(''.join(sorted(set(text))))

  @property
  def vocab_size(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    unknown = sorted(set(text) - self._ids.keys())
    if unknown:
      raise vocabulary.TokenizerError(
          f'characters not in the vocabulary: {"".join(unknown)!r}; the model '
          f'knows only {self.chars!r}')
    return np.fromiter((self._ids[ch] for ch in text), np.int32, len(text))

  def decode(self, ids) -> str:
    return ''.join(
        self.chars[i] for i in vocabulary.checked_ids(ids, self.vocab_size))

  def spec(self) -> dict:
    return {'type': 'char', 'chars': self.chars}

  def save(self, path: str) -> None:
    """Writes the tokenizer into run directory `path`, or to file `path`.

    An existing directory gets tokenizer.json; any other path is the JSON
    file itself (how runs saved it before there were other kinds).
    """
    if os.path.isdir(path):
      super().save(path)
    else:
      vocabulary.write_atomic(os.fspath(path),
                               json.dumps(self.spec()).encode())

  @classmethod
  def load(cls, path: str) -> 'CharTokenizer':
    """The char tokenizer in run directory or tokenizer file `path`."""
    tok = load(path)
    if not isinstance(tok, cls):
      raise vocabulary.TokenizerError(
          f'{path} holds a {tok.kind} tokenizer, not a char '
          'one; read it with lm.data.tokenizer.load')
    return tok

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'CharTokenizer':
    del directory  # Everything is in the spec.
    return cls(str(spec['chars']))


class WordTokenizer(vocabulary.Tokenizer):
  """Whitespace-separated words; every line ends in `<eos>`.

  `decode` joins a line's words with single spaces and turns `<eos>` into a
  newline, so it inverts `encode` up to runs of whitespace and `<unk>`.

  An encoder's vocabulary (trained with specials='bert') also holds
  `[PAD]`, `[CLS]`, `[SEP]` and `[MASK]`, and ends no line in `<eos>`: a
  sentence's end is its row's [SEP]. Its words are those of the training
  sentences (lowercase them with data.lowercase for GloVe 6B).
  """

  kind = 'word'
  BERT = ('[PAD]', '[CLS]', '[SEP]', '[MASK]')

  def __init__(self, words: Sequence[str]):
    self.words = list(words)
    self._ids = {w: i for i, w in enumerate(self.words)}
    self.encoder = all(w in self._ids for w in self.BERT)
    missing = [
        w for w in (vocabulary.UNK, vocabulary.EOS) if w not in self._ids
    ]
    if len(self._ids) != len(self.words) or missing:
      raise vocabulary.TokenizerError(
          f'a word vocabulary needs {vocabulary.UNK} and {vocabulary.EOS} '
          'and no repeated words; train the tokenizer again')
    self.unk_id, self.eos_id = self._ids[vocabulary.UNK], self._ids[
        vocabulary.EOS]

  @classmethod
  def train(cls, texts: Iterable[str], min_count: int = 1,
            max_size: int = 0, specials: str = '') -> 'WordTokenizer':
    """The words of `texts` in order of first appearance, as pytorch's
    Dictionary, with `<unk>` added if absent (and, with specials='bert',
    BERT's [PAD], [CLS], [SEP] and [MASK] first).

    Words seen fewer than `min_count` times, and beyond the `max_size` most
    frequent (the size counts `<eos>` and `<unk>`; 0: no limit), are left out
    and so encode to `<unk>`. Ties in frequency keep the earlier word.
    """
    if max_size and max_size < 2:
      raise vocabulary.TokenizerError(
          f'a word vocabulary of max_size={max_size} cannot hold '
          f'{vocabulary.EOS} and {vocabulary.UNK}; use at least 2 or 0 (all)')
    counts = collections.Counter()
    for text in texts:
      for line in vocabulary.split_lines(text):
        counts.update(line.split())
        counts[vocabulary.EOS] += 1
    words = [w for w, n in counts.items()
             if n >= min_count and w not in (vocabulary.EOS, vocabulary.UNK)]
    if max_size:
      # sorted() is stable: among equally frequent words the first seen wins.
      words = sorted(words, key=lambda w: -counts[w])[:max_size - 2]
    keep = set(words) | {vocabulary.EOS, vocabulary.UNK}
    vocab = [w for w in counts if w in keep]  # Back in first-seen order.
    if vocabulary.UNK not in counts:
      vocab.append(vocabulary.UNK)
    if vocabulary.EOS not in counts:
      vocab.append(vocabulary.EOS)
    if specials not in ('', 'bert'):
      raise vocabulary.TokenizerError(
          f'a word vocabulary has no {specials} specials; use '
          'data.tokenizer=sentencepiece')
    if specials == 'bert':
      vocab = list(cls.BERT) + [w for w in vocab if w not in cls.BERT]
    return cls(vocab)

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  @property
  def special_ids(self) -> dict[str, int]:
    ids = {'unk': self.unk_id, 'eos': self.eos_id}
    if self.encoder:
      ids.update(pad=self._ids['[PAD]'],
                 **{k: self._ids[v] for k, v in vocabulary.BERT_CONTROLS.items()})
    return ids

  def encode(self, text: str) -> np.ndarray:
    get, unk, eos = self._ids.get, self.unk_id, self.eos_id
    ids = []
    for line in vocabulary.split_lines(text):
      ids.extend([get(w, unk) for w in line.split()])
      if not self.encoder:
        ids.append(eos)
    return np.array(ids, np.int32)

  def decode(self, ids) -> str:
    out, line = [], []
    for i in vocabulary.checked_ids(ids, self.vocab_size):
      if i == self.eos_id:
        out.append(' '.join(line) + '\n')
        line = []
      else:
        line.append(self.words[i])
    out.append(' '.join(line))
    return ''.join(out)

  def spec(self) -> dict:
    return {'type': 'word', 'words': self.words}

  def word_kinds(self) -> np.ndarray:
    return np.full(self.vocab_size, vocabulary.WORD_STARTS, np.int8)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'WordTokenizer':
    del directory  # Everything is in the spec.
    return cls([str(w) for w in spec['words']])


class ByteTokenizer(vocabulary.Tokenizer):
  """The UTF-8 bytes of the text (ids 0..255), and `<eos>` = 256.

  `encode` never emits `<eos>` (callers add it between documents); `decode`
  writes it as a newline, and bytes that are not valid UTF-8 (a sequence cut
  by a sample's end, say) as U+FFFD.
  """

  kind = 'byte'
  eos_id = 256

  @property
  def vocab_size(self) -> int:
    return 257

  @property
  def special_ids(self) -> dict[str, int]:
    return {'eos': self.eos_id}

  def encode(self, text: str) -> np.ndarray:
    try:
      data = text.encode('utf-8')
    except UnicodeEncodeError as e:
      raise vocabulary.TokenizerError(
          f'text is not encodable as UTF-8 ({e})') from None
    return np.frombuffer(data, np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    data = bytes(10 if i == self.eos_id else i
                 for i in vocabulary.checked_ids(ids, self.vocab_size))
    return data.decode('utf-8', errors='replace')

  def spec(self) -> dict:
    return {'type': 'byte'}

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'ByteTokenizer':
    del spec, directory  # Nothing to read.
    return cls()


_CLASSES = {
    'char': CharTokenizer,
    'word': WordTokenizer,
    'sentencepiece': subword.SentencePieceTokenizer,
    'byte': ByteTokenizer,
    'hf': subword.HFTokenizer
}


def train(kind: str, texts: Iterable[str], *, vocab_size: int = 0,
          directory: str | None = None, model_type: str = 'bpe',
          min_count: int = 1, max_size: int = 0,
          input_sentence_size: int = 1_000_000, seed: int = 0,
          specials: str = '') -> vocabulary.Tokenizer:
  """A tokenizer of `kind` built from the training split's `texts`.

  `vocab_size` is required for 'sentencepiece' (with `model_type`,
  `input_sentence_size`, `seed` and `specials`), caps the 'word' vocabulary like
  `max_size` (with `min_count`), and must be 0 for 'char' (the text decides)
  and 0 or 257 for 'byte'. The tokenizer is saved in `directory` if given.
  """
  if kind == 'char':
    if vocab_size:
      raise vocabulary.TokenizerError(
          f'vocab_size={vocab_size}: a char vocabulary is '
          'the training text\'s characters; set it to 0')
    chars = set()
    for text in texts:
      chars.update(text)
    tok = CharTokenizer(''.join(sorted(chars)))
  elif kind == 'word':
    if vocab_size and max_size and vocab_size != max_size:
      raise vocabulary.TokenizerError(
          f'vocab_size={vocab_size} and max_size={max_size} '
          'both cap the word vocabulary; give one')
    tok = WordTokenizer.train(texts, min_count, max_size or vocab_size,
                              specials)
  elif kind == 'sentencepiece':
    tok = subword.SentencePieceTokenizer.train(texts, vocab_size, model_type,
                                               input_sentence_size, seed,
                                               specials)
  elif kind == 'byte':
    if vocab_size not in (0, 257):
      raise vocabulary.TokenizerError(
          f'vocab_size={vocab_size}: the byte vocabulary is '
          'always 257; set it to 0')
    tok = ByteTokenizer()
  elif kind == 'hf':
    raise vocabulary.TokenizerError(
        'data.tokenizer=hf is the tokenizer of a Hugging '
        'Face checkpoint and is not trained: import one with '
        'python -m lm.convert from-hf and start from it with '
        '--config.init_from=RUN')
  else:
    raise vocabulary.TokenizerError(
        f'unknown tokenizer kind {kind!r}; use one of '
        f'{", ".join(KINDS)}')
  if directory is not None:
    tok.save(directory)
  return tok


def save(tok: vocabulary.Tokenizer, directory: str) -> None:
  """Writes `tok` into run directory `directory` (see `load`)."""
  vocabulary.Tokenizer.save(tok, directory)


def load(path: str) -> vocabulary.Tokenizer:
  """The tokenizer saved in run directory `path` (or tokenizer file `path`)."""
  file = os.path.join(
      path, vocabulary.TOKENIZER_FILE) if os.path.isdir(path) else path
  if not os.path.exists(file):
    raise vocabulary.TokenizerError(
        f'no tokenizer at {path}; is this a run directory?')
  try:
    with open(file, encoding='utf-8') as f:
      spec = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise vocabulary.TokenizerError(
        f'{file} is not valid JSON ({e}); restore it or '
        'train the tokenizer again') from None
  kind = spec.get('type') if isinstance(spec, dict) else None
  if kind not in _CLASSES:
    raise vocabulary.TokenizerError(
        f'{file}: unknown tokenizer type {kind!r}; expected '
        f'one of {", ".join(KINDS)}')
  try:
    return _CLASSES[kind].from_spec(spec, os.path.dirname(os.fspath(file)))
  except vocabulary.TokenizerError:
    raise
  except (KeyError, TypeError, ValueError) as e:
    raise vocabulary.TokenizerError(
        f'{file}: malformed {kind} tokenizer '
        f'({type(e).__name__}: {e}); restore it or train the '
        'tokenizer again') from None
