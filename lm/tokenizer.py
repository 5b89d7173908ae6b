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
  encodes; the text is not normalised (lm.preprocess does that, explicitly).
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
import hashlib
import io
import itertools
import json
import os
from typing import Iterable, Sequence

import numpy as np

TOKENIZER_FILE = 'tokenizer.json'
SPM_MODEL_FILE = 'tokenizer.model'
HF_TOKENIZER_FILE = 'hf_tokenizer.json'
KINDS = ('char', 'word', 'sentencepiece', 'byte', 'hf')
UNK, EOS = '<unk>', '<eos>'
# BERT's special tokens, in id order after [UNK] and [PAD]: special_ids names.
# A piece's place in a word (`Tokenizer.word_kinds`, for whole-word
# masking): inside one (it joins the piece before it), beginning one, or a
# word by itself that also ends the one before (a newline, a special piece).
WORD_CONTINUES, WORD_STARTS, WORD_ALONE = 0, 1, 2
BERT_CONTROLS = {'cls': '[CLS]', 'sep': '[SEP]', 'mask': '[MASK]'}
SPECIALS = ('', 'bert')
# SentencePiece trains with a fixed thread count: the unigram trainer's
# result depends on it (its EM sums are split per thread), BPE's does not.
_SPM_THREADS = 16


class TokenizerError(ValueError):
  """Text the tokenizer cannot encode, or a tokenizer file it cannot read."""


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _write_atomic(path: str, data: bytes) -> None:
  with open(path + '.tmp', 'wb') as f:
    f.write(data)
  os.replace(path + '.tmp', path)  # Never a half-written file.


def _read_checked(directory: str, name: str, sha256: str, fix: str) -> bytes:
  """The bytes of file `name` that tokenizer.json refers to, checked against
  the sha256 it recorded; `fix` says what to do when the file is missing."""
  # Only a file name: tokenizer.json cannot point outside its directory.
  path = os.path.join(directory, os.path.basename(str(name)))
  if not os.path.exists(path):
    raise TokenizerError(f'{path} is missing; tokenizer.json needs it: {fix}')
  with open(path, 'rb') as f:
    data = f.read()
  if _sha256(data) != sha256:
    raise TokenizerError(f'{path} differs from the file tokenizer.json was '
                         'saved with (sha256); restore the original file')
  return data


def _checked_ids(ids, vocab_size: int) -> list[int]:
  """`ids` as a list of ints, each a valid id of a `vocab_size` vocabulary."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  bad = ids[(ids < 0) | (ids >= vocab_size)]
  if bad.size:
    raise TokenizerError(f'ids outside the vocabulary of {vocab_size}: '
                         f'{sorted(set(bad.tolist()))[:10]}')
  return ids.tolist()


class Tokenizer:
  """What every tokenizer has; subclasses define the vocabulary."""

  kind: str = ''
  eos_id: int | None = None

  @property
  def vocab_size(self) -> int:
    raise NotImplementedError

  @property
  def special_ids(self) -> dict[str, int]:
    return {}

  def encode(self, text: str) -> np.ndarray:
    raise NotImplementedError

  def decode(self, ids) -> str:
    raise NotImplementedError

  def spec(self) -> dict:
    """The JSON-able content of tokenizer.json."""
    raise NotImplementedError

  def word_kinds(self) -> np.ndarray | None:
    """Each id's place in a word (lm.masking.WORD_*), for whole-word
    masking; None where the pieces do not mark words."""
    return None

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'Tokenizer':
    """The tokenizer of tokenizer.json content `spec`, read in `directory`."""
    raise NotImplementedError

  def fingerprint(self) -> str:
    """A short string that differs between any two different vocabularies."""
    canonical = json.dumps(self.spec(), sort_keys=True, ensure_ascii=True)
    return f'{self.kind}:{_sha256(canonical.encode())[:16]}'

  def save(self, directory: str) -> None:
    """Writes tokenizer.json (and any model file) into `directory`."""
    os.makedirs(directory, exist_ok=True)
    self._save_files(directory)
    _write_atomic(os.path.join(directory, TOKENIZER_FILE),
                  json.dumps(self.spec(), ensure_ascii=False).encode())

  def _save_files(self, directory: str) -> None:
    """Writes files that tokenizer.json refers to (none by default)."""


class CharTokenizer(Tokenizer):
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
      raise TokenizerError(
          f'characters not in the vocabulary: {"".join(unknown)!r}; the model '
          f'knows only {self.chars!r}')
    return np.fromiter((self._ids[ch] for ch in text), np.int32, len(text))

  def decode(self, ids) -> str:
    return ''.join(self.chars[i] for i in _checked_ids(ids, self.vocab_size))

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
      _write_atomic(os.fspath(path), json.dumps(self.spec()).encode())

  @classmethod
  def load(cls, path: str) -> 'CharTokenizer':
    """The char tokenizer in run directory or tokenizer file `path`."""
    tok = load(path)
    if not isinstance(tok, cls):
      raise TokenizerError(f'{path} holds a {tok.kind} tokenizer, not a char '
                           'one; read it with lm.tokenizer.load')
    return tok

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'CharTokenizer':
    del directory  # Everything is in the spec.
    return cls(str(spec['chars']))


def _lines(text: str) -> list[str]:
  """The lines of `text`; a final newline ends the last line, not a new one."""
  if not text:
    return []
  return (text[:-1] if text.endswith('\n') else text).split('\n')


class WordTokenizer(Tokenizer):
  """Whitespace-separated words; every line ends in `<eos>`.

  `decode` joins a line's words with single spaces and turns `<eos>` into a
  newline, so it inverts `encode` up to runs of whitespace and `<unk>`.
  """

  kind = 'word'

  def __init__(self, words: Sequence[str]):
    self.words = list(words)
    self._ids = {w: i for i, w in enumerate(self.words)}
    missing = [w for w in (UNK, EOS) if w not in self._ids]
    if len(self._ids) != len(self.words) or missing:
      raise TokenizerError(f'a word vocabulary needs {UNK} and {EOS} and no '
                           'repeated words; train the tokenizer again')
    self.unk_id, self.eos_id = self._ids[UNK], self._ids[EOS]

  @classmethod
  def train(cls, texts: Iterable[str], min_count: int = 1,
            max_size: int = 0) -> 'WordTokenizer':
    """The words of `texts` in order of first appearance, as pytorch's
    Dictionary, with `<unk>` added if absent.

    Words seen fewer than `min_count` times, and beyond the `max_size` most
    frequent (the size counts `<eos>` and `<unk>`; 0: no limit), are left out
    and so encode to `<unk>`. Ties in frequency keep the earlier word.
    """
    if max_size and max_size < 2:
      raise TokenizerError(f'a word vocabulary of max_size={max_size} cannot '
                           f'hold {EOS} and {UNK}; use at least 2 or 0 (all)')
    counts = collections.Counter()
    for text in texts:
      for line in _lines(text):
        counts.update(line.split())
        counts[EOS] += 1
    words = [w for w, n in counts.items()
             if n >= min_count and w not in (EOS, UNK)]
    if max_size:
      # sorted() is stable: among equally frequent words the first seen wins.
      words = sorted(words, key=lambda w: -counts[w])[:max_size - 2]
    keep = set(words) | {EOS, UNK}
    vocab = [w for w in counts if w in keep]  # Back in first-seen order.
    if UNK not in counts:
      vocab.append(UNK)
    if EOS not in counts:
      vocab.append(EOS)
    return cls(vocab)

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  @property
  def special_ids(self) -> dict[str, int]:
    return {'unk': self.unk_id, 'eos': self.eos_id}

  def encode(self, text: str) -> np.ndarray:
    get, unk, eos = self._ids.get, self.unk_id, self.eos_id
    ids = []
    for line in _lines(text):
      ids.extend([get(w, unk) for w in line.split()])
      ids.append(eos)
    return np.array(ids, np.int32)

  def decode(self, ids) -> str:
    out, line = [], []
    for i in _checked_ids(ids, self.vocab_size):
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
    return np.full(self.vocab_size, WORD_STARTS, np.int8)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'WordTokenizer':
    del directory  # Everything is in the spec.
    return cls([str(w) for w in spec['words']])


def _sentencepiece():
  try:
    import sentencepiece  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise TokenizerError('the sentencepiece tokenizer needs the sentencepiece '
                         'package; pip install sentencepiece') from None
  return sentencepiece


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model; `encode` adds no bos/eos (see `eos_id`)."""

  kind = 'sentencepiece'

  def __init__(self, model: bytes):
    self.model = model
    try:
      self._sp = _sentencepiece().SentencePieceProcessor(model_proto=model)
    except RuntimeError as e:
      raise TokenizerError(f'not a SentencePiece model ({e}); train the '
                           'tokenizer again') from None
    self.eos_id = self.special_ids.get('eos')

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int,
            model_type: str = 'bpe', input_sentence_size: int = 1_000_000,
            seed: int = 0, specials: str = '') -> 'SentencePieceTokenizer':
    """A `model_type` ('bpe' or 'unigram') model of `vocab_size` pieces
    trained on the non-blank lines of `texts`.

    At most `input_sentence_size` lines are used (a seeded random sample when
    there are more; WikiText-2 train has 23,767, all used). Two trainings of
    the same lines give the same model: the sample's seed and the thread
    count are fixed.
    """
    spm = _sentencepiece()
    if model_type not in ('bpe', 'unigram'):
      raise TokenizerError(f'unknown SentencePiece model_type {model_type!r}; '
                           "use 'bpe' or 'unigram'")
    if vocab_size <= 0:
      raise TokenizerError('a sentencepiece tokenizer needs vocab_size > 0 '
                           '(e.g. 8000)')
    if specials not in SPECIALS:
      raise TokenizerError(f'unknown specials {specials!r}; use one of '
                           f'{", ".join(map(repr, SPECIALS))}')
    ids = (dict(unk_id=0, pad_id=1, bos_id=-1, eos_id=-1, unk_piece='[UNK]',
                pad_piece='[PAD]',
                control_symbols=list(BERT_CONTROLS.values()))
           if specials == 'bert' else
           dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    lines = [line for text in texts for line in text.split('\n')
             if line.strip()]
    if not lines:
      raise TokenizerError('no text to train SentencePiece on (every line is '
                           'blank); check the training split')
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(lines), model_writer=model,
          model_type=model_type, vocab_size=vocab_size,
          character_coverage=1.0, byte_fallback=True, **ids,
          # Lossless: keep the text's own characters and whitespace, and
          # invent no space before a text's first word (no dummy prefix).
          normalization_rule_name='identity', remove_extra_whitespaces=False,
          add_dummy_prefix=False,
          input_sentence_size=input_sentence_size,
          shuffle_input_sentence=True,
          # Longer lines are skipped; the default, 4,192 bytes, would drop
          # long paragraphs (WikiText-2's longest line has 3,841).
          max_sentence_length=1 << 16,
          num_threads=_SPM_THREADS, minloglevel=2)
    except RuntimeError as e:
      # The last line, without the C++ source location and failed check.
      message = str(e).strip().splitlines()[-1].rsplit('] ', 1)[-1]
      raise TokenizerError(
          f'SentencePiece training failed: {message}') from None
    return cls(model.getvalue())

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  @property
  def special_ids(self) -> dict[str, int]:
    ids = {'unk': self._sp.unk_id(), 'bos': self._sp.bos_id(),
           'eos': self._sp.eos_id(), 'pad': self._sp.pad_id()}
    for name, piece in BERT_CONTROLS.items():
      i = self._sp.piece_to_id(piece)
      ids[name] = i if self._sp.is_control(i) else -1
    return {name: i for name, i in ids.items() if i >= 0}

  def encode(self, text: str) -> np.ndarray:
    # Line by line: no piece holds a newline (training reads lines, and there
    # is no dummy prefix), so this equals encoding the whole text, but is
    # linear in its length: one long string is slow (11 s for WikiText-2
    # train, against 1.6 s), and unigram then segments a few words
    # differently from the line-by-line optimum.
    lines = text.split('\n')
    parts = [line + '\n' for line in lines[:-1]] + lines[-1:]
    ids = self._sp.encode(parts)
    return np.fromiter(itertools.chain.from_iterable(ids), np.int32)

  def decode(self, ids) -> str:
    return self._sp.decode(_checked_ids(ids, self.vocab_size))

  def spec(self) -> dict:
    return {'type': 'sentencepiece', 'model_file': SPM_MODEL_FILE,
            'sha256': _sha256(self.model)}

  def word_kinds(self) -> np.ndarray:
    """'\u2581' (a space) begins a word; a whitespace byte (newline: no
    piece holds one) and a special piece stand alone; other pieces,
    other bytes included, continue the word before them."""
    sp, kinds = self._sp, np.zeros(self.vocab_size, np.int8)
    for i in range(self.vocab_size):
      piece = sp.id_to_piece(i)
      if sp.is_byte(i):
        kinds[i] = WORD_ALONE if chr(int(piece[3:-1], 16)).isspace() else (
            WORD_CONTINUES)
      elif sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
        kinds[i] = WORD_ALONE
      elif piece.startswith('\u2581'):
        kinds[i] = WORD_STARTS
    return kinds

  def _save_files(self, directory: str) -> None:
    _write_atomic(os.path.join(directory, SPM_MODEL_FILE), self.model)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'SentencePieceTokenizer':
    return cls(_read_checked(directory, spec['model_file'], spec['sha256'],
                             'copy it back from where the run was trained'))


class ByteTokenizer(Tokenizer):
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
      raise TokenizerError(f'text is not encodable as UTF-8 ({e})') from None
    return np.frombuffer(data, np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    data = bytes(10 if i == self.eos_id else i
                 for i in _checked_ids(ids, self.vocab_size))
    return data.decode('utf-8', errors='replace')

  def spec(self) -> dict:
    return {'type': 'byte'}

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'ByteTokenizer':
    del spec, directory  # Nothing to read.
    return cls()


class HFTokenizer(Tokenizer):
  """A Hugging Face `tokenizers.Tokenizer` (its tokenizer.json content).

  `specials` names its special tokens as `special_ids` does (cls, sep, mask,
  pad, unk, bos, eos -> token string), as the checkpoint's tokenizer config
  gave them. `encode` adds no special tokens (callers add [CLS]/[SEP] or
  <eos>); `decode` drops them.
  """

  kind = 'hf'

  def __init__(self, content: bytes, specials: dict[str, str]):
    import tokenizers  # pylint: disable=g-import-not-at-top
    self.content = content
    try:
      self._tok = tokenizers.Tokenizer.from_str(content.decode('utf-8'))
    except Exception as e:  # pylint: disable=broad-except
      raise TokenizerError('not a Hugging Face tokenizer.json: '
                           f'{str(e).splitlines()[0][:200]}') from None
    self.specials = {name: token for name, token in specials.items()
                     if self._tok.token_to_id(token) is not None}
    self.eos_id = self.special_ids.get('eos')

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def special_ids(self) -> dict[str, int]:
    return {name: self._tok.token_to_id(token)
            for name, token in self.specials.items()}

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._tok.encode(text, add_special_tokens=False).ids,
                      np.int32)

  def decode(self, ids) -> str:
    return self._tok.decode(_checked_ids(ids, self.vocab_size),
                            skip_special_tokens=True)

  def word_kinds(self) -> np.ndarray | None:
    """WordPiece (BERT): '##' continues a word; other models: None."""
    prefix = getattr(self._tok.model, 'continuing_subword_prefix', None)
    if type(self._tok.model).__name__ != 'WordPiece' or not prefix:
      return None
    kinds = np.full(self.vocab_size, WORD_STARTS, np.int8)
    for piece, i in self._tok.get_vocab(with_added_tokens=True).items():
      if piece.startswith(prefix):
        kinds[i] = WORD_CONTINUES
    for i in self.special_ids.values():
      kinds[i] = WORD_ALONE
    return kinds

  def spec(self) -> dict:
    return {'type': 'hf', 'file': HF_TOKENIZER_FILE,
            'sha256': _sha256(self.content), 'specials': self.specials}

  def _save_files(self, directory: str) -> None:
    _write_atomic(os.path.join(directory, HF_TOKENIZER_FILE), self.content)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'HFTokenizer':
    return cls(_read_checked(directory, spec['file'], spec['sha256'],
                             'import the checkpoint again (lm.convert '
                             'from-hf)'), dict(spec['specials']))


_CLASSES = {'char': CharTokenizer, 'word': WordTokenizer,
            'sentencepiece': SentencePieceTokenizer, 'byte': ByteTokenizer,
            'hf': HFTokenizer}


def train(kind: str, texts: Iterable[str], *, vocab_size: int = 0,
          directory: str | None = None, model_type: str = 'bpe',
          min_count: int = 1, max_size: int = 0,
          input_sentence_size: int = 1_000_000, seed: int = 0,
          specials: str = '') -> Tokenizer:
  """A tokenizer of `kind` built from the training split's `texts`.

  `vocab_size` is required for 'sentencepiece' (with `model_type`,
  `input_sentence_size`, `seed` and `specials`), caps the 'word' vocabulary like
  `max_size` (with `min_count`), and must be 0 for 'char' (the text decides)
  and 0 or 257 for 'byte'. The tokenizer is saved in `directory` if given.
  """
  if kind == 'char':
    if vocab_size:
      raise TokenizerError(f'vocab_size={vocab_size}: a char vocabulary is '
                           'the training text\'s characters; set it to 0')
    chars = set()
    for text in texts:
      chars.update(text)
    tok = CharTokenizer(''.join(sorted(chars)))
  elif kind == 'word':
    if vocab_size and max_size and vocab_size != max_size:
      raise TokenizerError(f'vocab_size={vocab_size} and max_size={max_size} '
                           'both cap the word vocabulary; give one')
    tok = WordTokenizer.train(texts, min_count, max_size or vocab_size)
  elif kind == 'sentencepiece':
    tok = SentencePieceTokenizer.train(texts, vocab_size, model_type,
                                       input_sentence_size, seed, specials)
  elif kind == 'byte':
    if vocab_size not in (0, 257):
      raise TokenizerError(f'vocab_size={vocab_size}: the byte vocabulary is '
                           'always 257; set it to 0')
    tok = ByteTokenizer()
  elif kind == 'hf':
    raise TokenizerError('data.tokenizer=hf is the tokenizer of a Hugging '
                         'Face checkpoint and is not trained: import one with '
                         'python -m lm.convert from-hf and start from it with '
                         '--config.init_from=RUN')
  else:
    raise TokenizerError(f'unknown tokenizer kind {kind!r}; use one of '
                         f'{", ".join(KINDS)}')
  if directory is not None:
    tok.save(directory)
  return tok


def save(tok: Tokenizer, directory: str) -> None:
  """Writes `tok` into run directory `directory` (see `load`)."""
  Tokenizer.save(tok, directory)


def load(path: str) -> Tokenizer:
  """The tokenizer saved in run directory `path` (or tokenizer file `path`)."""
  file = os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else path
  if not os.path.exists(file):
    raise TokenizerError(f'no tokenizer at {path}; is this a run directory?')
  try:
    with open(file, encoding='utf-8') as f:
      spec = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TokenizerError(f'{file} is not valid JSON ({e}); restore it or '
                         'train the tokenizer again') from None
  kind = spec.get('type') if isinstance(spec, dict) else None
  if kind not in _CLASSES:
    raise TokenizerError(f'{file}: unknown tokenizer type {kind!r}; expected '
                         f'one of {", ".join(KINDS)}')
  try:
    return _CLASSES[kind].from_spec(spec, os.path.dirname(os.fspath(file)))
  except TokenizerError:
    raise
  except (KeyError, TypeError, ValueError) as e:
    raise TokenizerError(f'{file}: malformed {kind} tokenizer '
                         f'({type(e).__name__}: {e}); restore it or train the '
                         'tokenizer again') from None
