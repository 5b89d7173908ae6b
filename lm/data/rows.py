"""Causal-LM training and evaluation rows: stream windows, packed documents
and the tiles of whole splits, as grain datasets of global batches."""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from lm.data import corpus as corpus_lib
from lm.data import prepare as prepare_lib


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


def local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise corpus_lib.DataError(
        f'data.batch_size={global_batch} must divide evenly over '
        f'{jax.process_count()} processes')
  return global_batch // jax.process_count()


def local_rows(global_batch: int) -> slice:
  """This process's rows of a global batch."""
  n = local_batch_size(global_batch)
  return slice(jax.process_index() * n, (jax.process_index() + 1) * n)


def _batched_windows(tokens: np.ndarray, max_len: int, global_batch: int,
                     seed: int) -> grain.MapDataset:
  """Shuffled windows, endless, this process's share, in local batches."""
  ds = grain.MapDataset.source(Windows(tokens, max_len))
  ds = ds.shuffle(seed=seed).repeat()
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.batch(local_batch_size(global_batch), drop_remainder=True)


def read_options(prefetch: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)


def train_dataset(tokens: np.ndarray, max_len: int, global_batch: int,
                  seed: int, prefetch: int = 2) -> grain.IterDataset:
  """Endless shuffled stream windows, prepared ahead by a grain thread."""
  return _batched_windows(tokens, max_len, global_batch, seed).to_iter_dataset(
      read_options(prefetch))


@dataclasses.dataclass
class PackedRows:
  """Random-access packed rows: row i of an endless concat-then-split stream.

  Epoch e shuffles the documents (a permutation seeded by (seed, e)), shifts
  each into inputs and targets, concatenates them and cuts the result into
  rows of `max_len` (the tail that does not fill a row is dropped). A row
  holds `segment_ids` (1, 2, ... per document piece in the row) and
  `positions` that restart at 0 where a document, or a row, starts. All in
  numpy over the epoch at once: packing costs slicing, not Python per
  document, and any row can be read back from its index (exact resume).
  """
  documents: corpus_lib.Documents
  max_len: int
  seed: int
  EPOCHS = 10**6  # The length grain sees: endless for any real run.

  def __post_init__(self):
    lengths = np.diff(self.documents.offsets) - 1  # Targets per document.
    self._docs = np.flatnonzero(lengths > 0)  # One-token documents: none.
    self._lengths = lengths[self._docs]
    self.rows_per_epoch = int(self._lengths.sum()) // self.max_len
    if self.rows_per_epoch == 0:
      raise corpus_lib.DataError(
          f'the documents hold {self._lengths.sum()} targets, '
          f'fewer than one packed row of {self.max_len}; use more '
          'text or a smaller model.max_len')
    self._cached = (None, None)

  def __len__(self) -> int:
    return self.rows_per_epoch * self.EPOCHS

  def _epoch(self, epoch: int):
    if self._cached[0] != epoch:
      order = np.random.default_rng((self.seed, epoch)).permutation(
          len(self._docs))
      lengths = self._lengths[order]
      starts = self.documents.offsets[self._docs[order]]
      ends = np.cumsum(lengths)
      # Position of each target inside its document, then its stream index.
      doc = np.repeat(np.arange(len(order)), lengths)
      pos = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)
      index = starts[doc] + pos
      self._cached = (epoch, (index, doc, pos))
    return self._cached[1]

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    epoch, row = divmod(int(i), self.rows_per_epoch)
    index, doc, pos = (a[row * self.max_len:(row + 1) * self.max_len]
                       for a in self._epoch(epoch))
    first = doc == doc[0]  # A document continued from the previous row.
    tokens = self.documents.tokens
    return {'inputs': tokens[index], 'targets': tokens[index + 1],
            'segment_ids': (doc - doc[0] + 1).astype(np.int32),
            'positions': np.where(first, pos - pos[0], pos).astype(np.int32),
            'weights': np.ones(self.max_len, np.float32)}


def packed_dataset(documents: corpus_lib.Documents,
                   max_len: int,
                   global_batch: int,
                   seed: int,
                   prefetch: int = 2) -> grain.IterDataset:
  """Endless batches of shuffled documents packed into rows with segment ids
  (see PackedRows); `documents` are this process's (`process_documents`)."""
  ds = grain.MapDataset.source(PackedRows(documents, max_len, seed))
  return ds.batch(local_batch_size(global_batch), drop_remainder=True
                  ).to_iter_dataset(read_options(prefetch))


def process_documents(corpus: corpus_lib.Corpus,
                      split: str = 'train') -> corpus_lib.Documents:
  """This process's share of a split (tfds.split_for_jax_process: equal
  contiguous parts across hosts), tokenized."""
  if jax.process_count() == 1:
    return corpus.documents[split]
  source = prepare_lib.source(corpus.builder,
                              tfds.split_for_jax_process(corpus.splits[split]))
  return corpus_lib.Documents.encode(
      corpus.tokenizer,
      [corpus.transform(t) for t in corpus_lib.read_texts(source)])


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
