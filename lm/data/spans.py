"""T5's span corruption (Raffel et al., 2020): rows of an encoder-decoder
pretraining task, built from a token stream.

A row's raw tokens are split into alternating kept and noise spans, starting
with a kept one: round(n x noise_density) noise tokens in round(noise /
mean_span) spans (at least one), the span lengths drawn uniformly among
the ways to cut each total into that many non-empty parts. The encoder reads
the kept tokens with each noise span replaced by one sentinel (sentinel k
for the k-th span), then EOS; the decoder predicts each sentinel followed by
the span it stands for, then EOS. So every raw token is in the inputs or in
the targets, and the sentinels appear in order in both.

`raw_length` is the longest raw row whose inputs fit the encoder's width;
its targets' length is `target_length`. Rows are a function of their index
alone (`SpanRows`): the raw window and its corruption are drawn from a
generator seeded by (seed, index), so a resumed run sees the same rows.

Rows: {'source', 'source_segments' (1 real, 0 padding), 'inputs' (BOS,
then the targets shifted right), 'targets', 'weights' (1 on real targets)},
as the translation task's (`lm.data.pairs`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lm.data import corpus as corpus_lib
from lm.data import rows as rows_lib


def counts(length: int, density: float, mean_span: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of a raw row of `length` tokens."""
  noise = min(max(int(round(length * density)), 1), length - 1)
  spans = min(max(int(round(noise / mean_span)), 1), noise)
  return noise, spans


def input_length(length: int, density: float, mean_span: float) -> int:
  """The encoder's tokens for a raw row: kept, a sentinel a span, EOS."""
  noise, spans = counts(length, density, mean_span)
  return length - noise + spans + 1


def target_length(length: int, density: float, mean_span: float) -> int:
  """The decoder's targets for a raw row: a sentinel a span, the noise,
  EOS."""
  noise, spans = counts(length, density, mean_span)
  return noise + spans + 1


def raw_length(max_inputs: int, density: float, mean_span: float) -> int:
  """The longest raw row whose inputs hold at most `max_inputs` tokens."""
  length = 2
  while input_length(length + 1, density, mean_span) <= max_inputs:
    length += 1
  if input_length(length, density, mean_span) > max_inputs:
    raise ValueError(f'no raw row fits inputs of {max_inputs} tokens')
  return length


def _segments(total: int, parts: int, rng) -> np.ndarray:
  """`parts` positive lengths summing to `total`, uniform over such cuts."""
  cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
  return np.diff(np.concatenate([[0], cuts, [total]]))


def noise_mask(length: int, density: float, mean_span: float,
               rng) -> np.ndarray:
  """[length] bools, True on noise: kept and noise spans alternating,
  starting with a kept span."""
  noise, spans = counts(length, density, mean_span)
  noise_lengths = _segments(noise, spans, rng)
  kept_lengths = _segments(length - noise, spans, rng)
  lengths = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)
  is_noise = np.tile([False, True], spans)
  return np.repeat(is_noise, lengths)


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinel: int,
            eos: int) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) of `tokens` with noise `mask`; sentinel ids are
  `sentinel`, `sentinel` + 1, ..."""
  starts = mask & ~np.concatenate([[False], mask[:-1]])
  span_id = np.cumsum(starts) - 1  # Index of the noise span a token is in.
  sentinels = (sentinel + span_id).astype(np.int32)
  # Inputs: kept tokens, and a noise span's first token as its sentinel.
  keep_in = ~mask | starts
  inputs = np.where(starts, sentinels, tokens)[keep_in]
  # Targets: the noise tokens, each span's sentinel before its first.
  targets = np.insert(tokens[mask], np.flatnonzero(starts[mask]),
                      sentinels[starts])
  return (np.append(inputs, eos).astype(np.int32),
          np.append(targets, eos).astype(np.int32))


@dataclasses.dataclass
class SpanRows:
  """Random-access global batches of corrupted windows of a token stream,
  endless. Batch i holds rows i * batch_size ...; row r is the window at a
  start drawn from (seed, r), corrupted by a generator seeded the same.
  Items are this process's rows of each global batch."""
  stream: np.ndarray
  batch_size: int
  max_len: int  # The encoder's width.
  target_len: int  # The decoder's width.
  density: float
  mean_span: float
  sentinel: int
  eos: int
  bos: int
  seed: int
  EPOCHS = 10**6

  def __post_init__(self):
    self.raw = raw_length(self.max_len, self.density, self.mean_span)
    need = target_length(self.raw, self.density, self.mean_span)
    if need > self.target_len:
      raise corpus_lib.DataError(
          f'span corruption of {self.raw}-token windows (inputs of '
          f'model.max_len={self.max_len}) makes targets of {need} tokens; '
          f'set data.target_len to at least {need}')
    if len(self.stream) <= self.raw:
      raise corpus_lib.DataError(
          f'the training text has {len(self.stream)} tokens, fewer than one '
          f'window of {self.raw + 1}; use more text or a smaller '
          'model.max_len')

  def __len__(self) -> int:
    return self.EPOCHS

  def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of row `r`."""
    rng = np.random.default_rng((self.seed, r))
    start = int(rng.integers(0, len(self.stream) - self.raw + 1))
    tokens = self.stream[start:start + self.raw]
    mask = noise_mask(self.raw, self.density, self.mean_span, rng)
    return corrupt(tokens, mask, self.sentinel, self.eos)

  def rows(self, index) -> dict[str, np.ndarray]:
    """Padded model rows of rows `index`."""
    n, L, T = len(index), self.max_len, self.target_len
    out = {'source': np.zeros((n, L), np.int32),
           'source_segments': np.zeros((n, L), np.int32),
           'inputs': np.zeros((n, T), np.int32),
           'targets': np.zeros((n, T), np.int32),
           'weights': np.zeros((n, T), np.float32)}
    for k, r in enumerate(index):
      inputs, targets = self.row(int(r))
      out['source'][k, :len(inputs)] = inputs
      out['source_segments'][k, :len(inputs)] = 1
      out['inputs'][k, :len(targets)] = np.append(self.bos, targets[:-1])
      out['targets'][k, :len(targets)] = targets
      out['weights'][k, :len(targets)] = 1.0
    return out

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    index = np.arange(i * self.batch_size, (i + 1) * self.batch_size)
    return self.rows(index[rows_lib.local_rows(self.batch_size)])
