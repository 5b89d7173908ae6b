"""The `Tokenizer` interface every tokenizer kind implements, its errors,
and the checked files tokenizers are saved in."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from lm import errors

TOKENIZER_FILE = 'tokenizer.json'


SPM_MODEL_FILE = 'tokenizer.model'


HF_TOKENIZER_FILE = 'hf_tokenizer.json'


UNK, EOS = '<unk>', '<eos>'


# BERT's special tokens, in id order after [UNK] and [PAD]: special_ids names.
# A piece's place in a word (`Tokenizer.word_kinds`, for whole-word
# masking): inside one (it joins the piece before it), beginning one, or a
# word by itself that also ends the one before (a newline, a special piece).
WORD_CONTINUES, WORD_STARTS, WORD_ALONE = 0, 1, 2


BERT_CONTROLS = {'cls': '[CLS]', 'sep': '[SEP]', 'mask': '[MASK]'}


# T5's sentinels, which stand for the spans span corruption removes
# (`lm.data.spans`): '<extra_id_0>' ... '<extra_id_99>', consecutive ids.
SENTINELS = tuple(f'<extra_id_{i}>' for i in range(100))


SPECIALS = ('', 'bert', 't5')


class TokenizerError(errors.UserError):
  """Text the tokenizer cannot encode, or a tokenizer file it cannot read."""


def file_sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def write_atomic(path: str, data: bytes) -> None:
  with open(path + '.tmp', 'wb') as f:
    f.write(data)
  os.replace(path + '.tmp', path)  # Never a half-written file.


def read_checked(directory: str, name: str, sha256: str, fix: str) -> bytes:
  """The bytes of file `name` that tokenizer.json refers to, checked against
  the sha256 it recorded; `fix` says what to do when the file is missing."""
  # Only a file name: tokenizer.json cannot point outside its directory.
  path = os.path.join(directory, os.path.basename(str(name)))
  if not os.path.exists(path):
    raise TokenizerError(f'{path} is missing; tokenizer.json needs it: {fix}')
  with open(path, 'rb') as f:
    data = f.read()
  if file_sha256(data) != sha256:
    raise TokenizerError(f'{path} differs from the file tokenizer.json was '
                         'saved with (sha256); restore the original file')
  return data


def checked_ids(ids, vocab_size: int) -> list[int]:
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
    """Each id's place in a word (lm.data.masking.WORD_*), for whole-word
    masking; None where the pieces do not mark words."""
    return None

  @classmethod
  def from_spec(cls, spec: dict, directory: str) -> 'Tokenizer':
    """The tokenizer of tokenizer.json content `spec`, read in `directory`."""
    raise NotImplementedError

  def fingerprint(self) -> str:
    """A short string that differs between any two different vocabularies."""
    canonical = json.dumps(self.spec(), sort_keys=True, ensure_ascii=True)
    return f'{self.kind}:{file_sha256(canonical.encode())[:16]}'

  def save(self, directory: str) -> None:
    """Writes tokenizer.json (and any model file) into `directory`."""
    os.makedirs(directory, exist_ok=True)
    self._save_files(directory)
    write_atomic(os.path.join(directory, TOKENIZER_FILE),
                  json.dumps(self.spec(), ensure_ascii=False).encode())

  def _save_files(self, directory: str) -> None:
    """Writes files that tokenizer.json refers to (none by default)."""


def split_lines(text: str) -> list[str]:
  """The lines of `text`; a final newline ends the last line, not a new one."""
  if not text:
    return []
  return (text[:-1] if text.endswith('\n') else text).split('\n')
