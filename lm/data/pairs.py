"""Translation pairs as model rows, batched by token count in length buckets.

A pair becomes a source row `pieces EOS` and, for teacher forcing, decoder
inputs `BOS pieces` and targets `pieces EOS`. Empty pairs (either side
blank) are skipped and long ones cut to `max_len` tokens a side, both
counted per split (`Pairs.notes`). With `target_len` (summarization: long
sources, short targets) targets are cut to it instead, and every decoder row
is `target_len` wide, whatever the source's width.

Batches hold about `max_tokens` tokens (fairseq's `--max-tokens`): a pair
goes to the narrowest bucket width (a multiple of `bucket`, at most
`max_len`) that holds both its sides (its source alone, with
`target_len`), and a batch of width w has `max_tokens // w` rows (rounded
down to a multiple of the devices), so XLA compiles one program per width
and little of each batch is padding.
Batch i is a function of i alone (exact resume): epoch e shuffles each
bucket's pairs and the order of all batches with a generator seeded by
(seed, e); a bucket's last partial batch waits for a later epoch.

Rows: {'source', 'source_segments' (1 real, 0 padding), 'inputs',
'targets', 'weights' (1 on real target tokens)}.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from lm.data import corpus as corpus_lib
from lm.data import rows as rows_lib


@dataclasses.dataclass(frozen=True)
class Pairs:
  """A split's encoded pairs: each side's ids flat, with offsets."""
  source: np.ndarray  # All source rows' ids (pieces EOS), concatenated.
  source_offsets: np.ndarray  # [N + 1]
  target: np.ndarray  # All target pieces (no BOS/EOS), concatenated.
  target_offsets: np.ndarray  # [N + 1]
  index: np.ndarray  # [N] each kept pair's position in the split.
  empty: int  # Pairs skipped: a side is blank.
  cut: int  # Pairs cut (a side longer than its limit).
  size: int  # Pairs in the split, kept or not.
  target_len: int = 0  # Decoder rows' width; 0: the source row's width.
  cut_sources: int = 0  # Pairs whose source was cut to max_len.

  @classmethod
  def encode(cls, tok, pairs, max_len: int, target_len: int = 0) -> Pairs:
    """`pairs` [(source text, target text)] encoded by `tok` (with BOS and
    EOS ids), each side cut to `max_len` tokens with its marker (the
    target to `target_len`, if given)."""
    eos = tok.eos_id
    sources, targets, index = [], [], []
    empty = cut = cut_sources = 0
    t_max = target_len or max_len
    for i, (s, t) in enumerate(pairs):
      if not s.strip() or not t.strip():
        empty += 1
        continue
      s_ids, t_ids = tok.encode(s.strip()), tok.encode(t.strip())
      cut_sources += len(s_ids) + 1 > max_len
      if len(s_ids) + 1 > max_len or len(t_ids) + 1 > t_max:
        cut += 1
      sources.append(np.append(s_ids[:max_len - 1], eos).astype(np.int32))
      targets.append(np.asarray(t_ids[:t_max - 1], np.int32))
      index.append(i)

    def flat(parts):
      offsets = np.zeros(len(parts) + 1, np.int64)
      np.cumsum([len(p) for p in parts], out=offsets[1:])
      ids = np.concatenate(parts) if parts else np.zeros((0,), np.int32)
      return ids, offsets

    return cls(*flat(sources), *flat(targets), np.asarray(index, np.int64),
               empty, cut, len(pairs), target_len, cut_sources)

  def __len__(self) -> int:
    return len(self.index)

  @property
  def lengths(self) -> np.ndarray:
    """[N] the row width each pair needs: its longer side, markers counted
    (its source, when decoder rows have their own width `target_len`)."""
    if self.target_len:
      return np.diff(self.source_offsets)
    return np.maximum(np.diff(self.source_offsets),
                      np.diff(self.target_offsets) + 1)

  def notes(self, split: str, max_len: int) -> list[str]:
    """Lines on the pairs skipped or cut, if any."""
    lines = []
    if self.empty:
      lines.append(f'{split}: {self.empty:,} of {self.size:,} pairs have an '
                   'empty side and were skipped')
    if self.cut and self.target_len:
      lines.append(
          f'{split}: {self.cut_sources:,} of {self.size:,} sources are longer '
          f'than {max_len} tokens (model.max_len) and '
          f'{self.cut - self.cut_sources:,} more pairs\' targets longer than '
          f'{self.target_len} (data.target_len); they were cut')
    elif self.cut:
      lines.append(f'{split}: {self.cut:,} of {self.size:,} pairs are longer '
                   f'than {max_len} tokens (model.max_len) and were cut')
    return lines

  def rows(self, index: np.ndarray, width: int, bos: int) -> dict:
    """Rows of pairs `index`, sources padded to `width` (targets to
    `target_len`, if set); index -1 is an empty row (weight 0)."""
    n, t_width = len(index), self.target_len or width
    source = np.zeros((n, width), np.int32)
    segments = np.zeros((n, width), np.int32)
    inputs = np.zeros((n, t_width), np.int32)
    targets = np.zeros((n, t_width), np.int32)
    weights = np.zeros((n, t_width), np.float32)
    eos = None
    for r, i in enumerate(index):
      if i < 0:
        continue
      s = self.source[self.source_offsets[i]:self.source_offsets[i + 1]]
      t = self.target[self.target_offsets[i]:self.target_offsets[i + 1]]
      eos = s[-1]  # Every source row ends in EOS.
      source[r, :len(s)] = s
      segments[r, :len(s)] = 1
      inputs[r, :len(t) + 1] = np.append(bos, t)
      targets[r, :len(t) + 1] = np.append(t, eos)
      weights[r, :len(t) + 1] = 1.0
    return {'source': source, 'source_segments': segments, 'inputs': inputs,
            'targets': targets, 'weights': weights}


def bucket_widths(max_len: int, bucket: int) -> np.ndarray:
  """The row widths: multiples of `bucket` up to max_len (and max_len)."""
  widths = list(range(bucket, max_len, bucket)) + [max_len]
  return np.asarray(sorted(set(widths)), np.int64)


def rows_per_batch(width: int, max_tokens: int) -> int:
  """Rows of a batch of `width`: max_tokens // width, a multiple of the
  devices (at least one row each)."""
  devices = jax.device_count()
  return max(devices, (max_tokens // width) // devices * devices)


@dataclasses.dataclass
class TokenBatches:
  """Random-access global batches of about `max_tokens` tokens, endless.

  Items are this process's rows of each global batch. See the module's
  docstring for the order.
  """
  pairs: Pairs
  max_len: int
  max_tokens: int
  bucket: int
  seed: int
  bos: int
  EPOCHS = 10**6  # The length grain sees: endless for any real run.

  def __post_init__(self):
    widths = bucket_widths(self.max_len, self.bucket)
    lengths = self.pairs.lengths
    self._bucket_of = np.searchsorted(widths, lengths)  # Narrowest that fits.
    self._widths = widths
    self._rows = [rows_per_batch(int(w), self.max_tokens) for w in widths]
    counts = np.bincount(self._bucket_of, minlength=len(widths))
    self._per_bucket = [int(c) // r for c, r in zip(counts, self._rows)]
    self.batches_per_epoch = sum(self._per_bucket)
    if self.batches_per_epoch == 0:
      raise corpus_lib.DataError(
          f'{len(self.pairs)} training pairs fill no batch of '
          f'data.max_tokens={self.max_tokens}; lower data.max_tokens')
    self._cached = (None, None)

  def __len__(self) -> int:
    return self.batches_per_epoch * self.EPOCHS

  def _epoch(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """The (width, pair indices) of each batch of an epoch, in order."""
    if self._cached[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      batches = []
      for b, width in enumerate(self._widths):
        members = rng.permutation(np.flatnonzero(self._bucket_of == b))
        rows = self._rows[b]
        for k in range(self._per_bucket[b]):
          batches.append((int(width), members[k * rows:(k + 1) * rows]))
      order = rng.permutation(len(batches))
      self._cached = (epoch, [batches[k] for k in order])
    return self._cached[1]

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    epoch, b = divmod(int(i), self.batches_per_epoch)
    width, index = self._epoch(epoch)[b]
    return self.pairs.rows(index[rows_lib.local_rows(len(index))], width,
                           self.bos)

  def padding_share(self, batches: int = 200) -> float:
    """The share of padding among the source and target positions of the
    first `batches` batches."""
    source_len = np.diff(self.pairs.source_offsets)
    target_len = np.diff(self.pairs.target_offsets) + 1  # BOS or EOS added.
    real = total = 0
    for width, index in self._epoch(0)[:batches]:
      real += int(source_len[index].sum() + target_len[index].sum())
      total += (width + (self.pairs.target_len or width)) * len(index)
    return 1.0 - real / max(total, 1)


def sorted_batches(pairs: Pairs, max_len: int, max_tokens: int, bucket: int,
                   bos: int, limit: int = 0):
  """Every pair once (the first `limit` in split order, if given), in
  global batches by width; a bucket's last batch is filled with empty rows
  of weight 0. For evaluation."""
  count = min(len(pairs), limit) if limit else len(pairs)
  widths = bucket_widths(max_len, bucket)
  bucket_of = np.searchsorted(widths, pairs.lengths[:count])
  for b, width in enumerate(widths):
    members = np.flatnonzero(bucket_of == b)
    rows = rows_per_batch(int(width), max_tokens)
    for start in range(0, len(members), rows):
      index = np.full(rows, -1, np.int64)
      part = members[start:start + rows]
      index[:len(part)] = part
      yield pairs.rows(index, int(width), bos)
