"""Subword tokenizers: SentencePiece (BPE or unigram) trained on the
training split, and a Hugging Face `tokenizers` file (imported models)."""

from __future__ import annotations

import io
import itertools
import os
from typing import Iterable

import numpy as np

from lm.data import vocabulary

# SentencePiece trains with a fixed thread count: the unigram trainer's
# result depends on it (its EM sums are split per thread), BPE's does not.
_SPM_THREADS = 16


def _sentencepiece():
  try:
    import sentencepiece  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise vocabulary.TokenizerError(
        'the sentencepiece tokenizer needs the sentencepiece '
        'package; pip install sentencepiece') from None
  return sentencepiece


class SentencePieceTokenizer(vocabulary.Tokenizer):
  """A SentencePiece model; `encode` adds no bos/eos (see `eos_id`)."""

  kind = 'sentencepiece'

  def __init__(self, model: bytes):
    self.model = model
    try:
      self._sp = _sentencepiece().SentencePieceProcessor(model_proto=model)
    except RuntimeError as e:
      raise vocabulary.TokenizerError(
          f'not a SentencePiece model ({e}); train the '
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
      raise vocabulary.TokenizerError(
          f'unknown SentencePiece model_type {model_type!r}; '
          "use 'bpe' or 'unigram'")
    if vocab_size <= 0:
      raise vocabulary.TokenizerError(
          'a sentencepiece tokenizer needs vocab_size > 0 '
          '(e.g. 8000)')
    if specials not in vocabulary.SPECIALS:
      raise vocabulary.TokenizerError(
          f'unknown specials {specials!r}; use one of '
          f'{", ".join(map(repr, vocabulary.SPECIALS))}')
    ids = (dict(unk_id=0, pad_id=1, bos_id=-1, eos_id=-1, unk_piece='[UNK]',
                pad_piece='[PAD]',
                control_symbols=list(vocabulary.BERT_CONTROLS.values()))
           if specials == 'bert' else
           dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                control_symbols=list(vocabulary.SENTINELS))
           if specials == 't5' else
           dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    lines = [line for text in texts for line in text.split('\n')
             if line.strip()]
    if not lines:
      raise vocabulary.TokenizerError(
          'no text to train SentencePiece on (every line is '
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
      raise vocabulary.TokenizerError(
          f'SentencePiece training failed: {message}') from None
    return cls(model.getvalue())

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  @property
  def special_ids(self) -> dict[str, int]:
    ids = {'unk': self._sp.unk_id(), 'bos': self._sp.bos_id(),
           'eos': self._sp.eos_id(), 'pad': self._sp.pad_id()}
    for name, piece in (*vocabulary.BERT_CONTROLS.items(),
                        ('sentinel', vocabulary.SENTINELS[0])):
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
    return self._sp.decode(vocabulary.checked_ids(ids, self.vocab_size))

  def spec(self) -> dict:
    return {
        'type': 'sentencepiece',
        'model_file': vocabulary.SPM_MODEL_FILE,
        'sha256': vocabulary.file_sha256(self.model)
    }

  def word_kinds(self) -> np.ndarray:
    """'\u2581' (a space) begins a word; a whitespace byte (newline: no
    piece holds one) and a special piece stand alone; other pieces,
    other bytes included, continue the word before them."""
    sp, kinds = self._sp, np.zeros(self.vocab_size, np.int8)
    for i in range(self.vocab_size):
      piece = sp.id_to_piece(i)
      if sp.is_byte(i):
        kinds[i] = vocabulary.WORD_ALONE if chr(int(
            piece[3:-1], 16)).isspace() else (vocabulary.WORD_CONTINUES)
      elif sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
        kinds[i] = vocabulary.WORD_ALONE
      elif piece.startswith('\u2581'):
        kinds[i] = vocabulary.WORD_STARTS
    return kinds

  def _save_files(self, directory: str) -> None:
    vocabulary.write_atomic(os.path.join(directory, vocabulary.SPM_MODEL_FILE),
                             self.model)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'SentencePieceTokenizer':
    return cls(
        vocabulary.read_checked(directory, spec['model_file'], spec['sha256'],
                                 'copy it back from where the run was trained'))


class HFTokenizer(vocabulary.Tokenizer):
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
      raise vocabulary.TokenizerError(
          'not a Hugging Face tokenizer.json: '
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

  def token(self, i: int) -> str | None:
    """The token string of id `i` (None if there is no such id)."""
    return self._tok.id_to_token(i)

  def decode(self, ids) -> str:
    return self._tok.decode(vocabulary.checked_ids(ids, self.vocab_size),
                            skip_special_tokens=True)

  def word_kinds(self) -> np.ndarray | None:
    """WordPiece (BERT): '##' continues a word; other models: None."""
    prefix = getattr(self._tok.model, 'continuing_subword_prefix', None)
    if type(self._tok.model).__name__ != 'WordPiece' or not prefix:
      return None
    kinds = np.full(self.vocab_size, vocabulary.WORD_STARTS, np.int8)
    for piece, i in self._tok.get_vocab(with_added_tokens=True).items():
      if piece.startswith(prefix):
        kinds[i] = vocabulary.WORD_CONTINUES
    for i in self.special_ids.values():
      kinds[i] = vocabulary.WORD_ALONE
    return kinds

  def spec(self) -> dict:
    return {
        'type': 'hf',
        'file': vocabulary.HF_TOKENIZER_FILE,
        'sha256': vocabulary.file_sha256(self.content),
        'specials': self.specials
    }

  def _save_files(self, directory: str) -> None:
    vocabulary.write_atomic(
        os.path.join(directory, vocabulary.HF_TOKENIZER_FILE), self.content)

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'HFTokenizer':
    return cls(
        vocabulary.read_checked(
            directory, spec['file'], spec['sha256'],
            'import the checkpoint again (lm.convert '
            'from-hf)'), dict(spec['specials']))
