"""Input pipeline: a text corpus, tokenized, cut into windows, batched by grain.

Training batches are windows of `max_len + 1` tokens at shuffled start offsets
(every offset once per epoch), as nanoGPT draws them; inputs are the first
`max_len` tokens and targets the next-token shift. The grain iterator is
deterministic from the seed and its state is saved with each checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import grain
import jax
import numpy as np

from lm import tokenizer as tokenizer_lib

EMBEDDED = {
    'tiny_shakespeare': (
        os.path.join(os.path.dirname(__file__), 'assets', 'tinyshakespeare.txt'),
        '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'),
}


class DataError(ValueError):
  """A corpus that is missing, unreadable or unusable, as one line."""


def read_corpus(name: str, path: str = '') -> str:
  """The corpus text; an embedded corpus is checked against its checksum."""
  if not path:
    if name not in EMBEDDED:
      raise DataError(f'data.name={name!r} has no embedded copy; set data.path')
    path, sha256 = EMBEDDED[name]
  else:
    sha256 = None
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise DataError(f'data file not found: {path}; set data.path to an '
                    'existing text file') from None
  except (IsADirectoryError, PermissionError) as e:
    raise DataError(f'cannot read data file {path}: {e.strerror}') from None
  if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
    raise DataError(f'{path} does not match its sha256 {sha256}; reinstall')
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    raise DataError(f'{path} is not UTF-8 text (byte {e.start})') from None
  if not text.strip():
    raise DataError(f'data file {path} is empty')
  return text


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """First (1 - val_fraction) of the tokens to train, the rest to validate."""
  n = int(len(ids) * (1.0 - val_fraction))
  return ids[:n], ids[n:]


@dataclasses.dataclass(frozen=True)
class Windows:
  """Random-access source: window i is tokens[i : i + length + 1]."""
  tokens: np.ndarray
  length: int

  def __len__(self) -> int:
    return len(self.tokens) - self.length

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    w = self.tokens[i:i + self.length + 1]
    return {'inputs': w[:-1], 'targets': w[1:]}


@dataclasses.dataclass
class Corpus:
  """A tokenized corpus split into train and validation token arrays."""
  tokenizer: tokenizer_lib.CharTokenizer
  train: np.ndarray
  val: np.ndarray


def load_corpus(name: str, path: str, val_fraction: float,
                max_len: int) -> Corpus:
  """Reads, tokenizes and splits the corpus; both splits must hold a window."""
  text = read_corpus(name, path)
  tok = tokenizer_lib.CharTokenizer.from_text(text)
  train, val = split(tok.encode(text), val_fraction)
  for split_name, ids in (('train', train), ('validation', val)):
    if len(ids) <= max_len:
      raise DataError(f'the {split_name} split has {len(ids)} tokens, fewer '
                      f'than one window of {max_len + 1}; use more text or a '
                      'smaller model.max_len')
  return Corpus(tok, train, val)


def local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise DataError(f'data.batch_size={global_batch} must divide evenly over '
                    f'{jax.process_count()} processes')
  return global_batch // jax.process_count()


def _batched_windows(tokens: np.ndarray, max_len: int, global_batch: int,
                     seed: int) -> grain.MapDataset:
  """Shuffled windows, endless, this process's share, in local batches."""
  ds = grain.MapDataset.source(Windows(tokens, max_len))
  ds = ds.shuffle(seed=seed).repeat()
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.batch(local_batch_size(global_batch), drop_remainder=True)


def train_dataset(tokens: np.ndarray, max_len: int, global_batch: int,
                  seed: int, prefetch: int = 2) -> grain.IterDataset:
  """Endless shuffled training batches, prepared ahead by a grain thread."""
  return _batched_windows(tokens, max_len, global_batch, seed).to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))


def eval_batches(tokens: np.ndarray, max_len: int, global_batch: int,
                 num_batches: int, seed: int) -> list[dict[str, np.ndarray]]:
  """A fixed sample of validation batches, the same at every evaluation."""
  ds = _batched_windows(tokens, max_len, global_batch, seed)
  return [ds[i] for i in range(num_batches)]


def tiled_batches(tokens: np.ndarray, max_len: int, batch_size: int):
  """Non-overlapping windows covering the split, in order, in whole batches.

  Every token but the first of each window is a target once; the tail that
  does not fill a last batch is dropped.
  """
  n = (len(tokens) - 1) // max_len
  windows = Windows(tokens, max_len)
  for start in range(0, n - batch_size + 1, batch_size):
    rows = [windows[(start + i) * max_len] for i in range(batch_size)]
    yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}
