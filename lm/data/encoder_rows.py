"""Encoder input pipelines (BERT's input format): `[CLS] tokens [SEP]` rows.

- Masked-LM pretraining reads a split as one token stream (documents ended
  by [SEP], see `lm.data.encode_document`): row i is [CLS], the
  `max_len - 2` tokens from offset i, [SEP], at shuffled offsets (every
  offset once per epoch), masked in the grain pipeline by
  `lm.data.masking.MaskTokens` (dynamic masking: a row read in another epoch is
  masked anew; deterministic from the seed, so resuming repeats it exactly).
- Classification reads labelled sentences: each becomes [CLS] its pieces
  [SEP], cut to `max_len` (truncation is counted, never silent) and padded
  with [PAD] in segment 0, which no real token attends to.

Rows are {'inputs', 'targets', 'weights'} (+ 'segment_ids' for sentences),
what `lm.train.Trainer` consumes for every task.
"""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np

from lm.data import corpus as corpus_lib
from lm.data import masking
from lm.data import rows as rows_lib
from lm.data import vocabulary


def mask_spec(tok, rate: float, whole_word: bool = False
              ) -> masking.MaskSpec:
  """BERT's masking over the tokenizer's vocabulary: specials never chosen;
  whole words chosen if `whole_word`."""
  ids, kinds = tok.special_ids, None
  if whole_word:
    kinds = tok.word_kinds()
    if kinds is None:
      raise vocabulary.TokenizerError(
          'data.whole_word_mask needs pieces that mark words (sentencepiece, '
          f'word or a WordPiece hf tokenizer), not this {tok.kind} one')
  return masking.MaskSpec(mask_id=ids['mask'], vocab_size=tok.vocab_size,
                          special_ids=tuple(sorted(set(ids.values()))),
                          rate=rate, word_kinds=kinds)


@dataclasses.dataclass(frozen=True)
class StreamRows:
  """Random-access source: row i is [CLS] tokens[i : i + max_len - 2] [SEP]."""
  tokens: np.ndarray
  max_len: int
  cls_id: int
  sep_id: int

  def __len__(self) -> int:
    return max(0, len(self.tokens) - (self.max_len - 2) + 1)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    body = self.tokens[i:i + self.max_len - 2]
    return {'inputs': np.concatenate(
        [[self.cls_id], body, [self.sep_id]]).astype(np.int32)}


def _stream_rows(tokens, max_len, tok) -> grain.MapDataset:
  ids = tok.special_ids
  return grain.MapDataset.source(StreamRows(tokens, max_len, ids['cls'],
                                            ids['sep']))


def mlm_dataset(tokens: np.ndarray, max_len: int, global_batch: int,
                seed: int, tok, rate: float, shard: bool = True,
                whole_word: bool = False) -> grain.MapDataset:
  """Masked stream rows at shuffled offsets, endless, this process's share
  in local batches (shard=False: all rows, in global batches)."""
  ds = _stream_rows(tokens, max_len, tok).shuffle(seed=seed).repeat()
  if shard:
    ds = ds[jax.process_index()::jax.process_count()]
    global_batch = rows_lib.local_batch_size(global_batch)
  ds = ds.random_map(masking.MaskTokens(mask_spec(tok, rate, whole_word)),
                     seed=seed)
  return ds.batch(global_batch, drop_remainder=True)


def mlm_train_dataset(tokens, max_len, global_batch, seed, tok, rate,
                      prefetch: int = 2, whole_word: bool = False
                      ) -> grain.IterDataset:
  """`mlm_dataset` prepared ahead by a grain thread (its state checkpointed)."""
  return mlm_dataset(tokens, max_len, global_batch, seed, tok, rate,
                     whole_word=whole_word).to_iter_dataset(
                         rows_lib.read_options(prefetch))


def mlm_tiles(tokens: np.ndarray, max_len: int, batch_size: int, tok,
              rate: float, seed: int, whole_word: bool = False):
  """The whole split cut into consecutive rows of up to `max_len - 2`
  tokens, each masked with a generator seeded by (seed, row), in global
  batches; rows and the last batch are filled with weight 0. Every token is
  in exactly one row, so the masked-token figures cover the split."""
  spec, ids = mask_spec(tok, rate, whole_word), tok.special_ids
  body = max_len - 2
  rows = []
  for i, start in enumerate(range(0, len(tokens), body)):
    row = np.concatenate([[ids['cls']], tokens[start:start + body],
                          [ids['sep']]]).astype(np.int32)
    masked = masking.mask_tokens(row, np.random.default_rng((seed, i)), spec)
    rows.append({'inputs': _pad_to(masked['inputs'], max_len, ids['pad']),
                 'targets': _pad_to(masked['targets'], max_len, ids['pad']),
                 'weights': _pad_to(masked['weights'], max_len, 0.0)})
  for start in range(0, len(rows), batch_size):
    batch = rows[start:start + batch_size]
    batch += [{**rows[0], 'weights': np.zeros(max_len, np.float32)}
              ] * (batch_size - len(batch))
    yield {k: np.stack([r[k] for r in batch]) for k in batch[0]}


def _pad_to(x: np.ndarray, length: int, fill) -> np.ndarray:
  """`x` padded at the end with `fill` to `length`."""
  return np.pad(x, (0, length - len(x)), constant_values=fill)


@dataclasses.dataclass(frozen=True)
class Sentences:
  """Labelled sentences as padded encoder rows (all in numpy)."""
  inputs: np.ndarray  # [N, L] int32: [CLS] pieces [SEP] [PAD]...
  segment_ids: np.ndarray  # [N, L] int32: 1 on the row's tokens, 0 on padding.
  labels: np.ndarray  # [N] int32; -1 where the split is unlabelled.
  truncated: int  # Sentences cut to fit max_len.
  longest: int  # Pieces in the longest sentence, before any cut.

  @classmethod
  def encode(cls, tok, texts, labels, max_len: int) -> 'Sentences':
    ids = tok.special_ids
    inputs = np.full((len(texts), max_len), ids['pad'], np.int32)
    segment_ids = np.zeros((len(texts), max_len), np.int32)
    truncated = longest = 0
    for i, text in enumerate(texts):
      pieces = tok.encode(text.rstrip('\n'))
      longest = max(longest, len(pieces))
      truncated += len(pieces) > max_len - 2
      row = [ids['cls'], *pieces[:max_len - 2], ids['sep']]
      inputs[i, :len(row)] = row
      segment_ids[i, :len(row)] = 1
    return cls(inputs, segment_ids, np.asarray(labels, np.int32), truncated,
               longest)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {'inputs': self.inputs[i], 'segment_ids': self.segment_ids[i],
            'targets': self.labels[i], 'weights': np.float32(1.0)}

  def truncation_note(self, split: str, max_len: int) -> str:
    """One line on how many sentences were cut, or ''."""
    if not self.truncated:
      return ''
    return (f'{split}: {self.truncated:,} of {len(self):,} sentences are '
            f'longer than {max_len - 2} pieces (the longest {self.longest}) '
            f'and were cut to rows of {max_len} (data.seq_len)')


@dataclasses.dataclass
class LengthGroupedBatches:
  """Random-access batches of sentences of similar length, cut short.

  Epoch e shuffles the sentences (a permutation seeded by (seed, e)), sorts
  each pool of `pool` batches' worth by length, cuts the pools into global
  batches and shuffles the batches. A batch's rows are cut to its longest
  sentence rounded up to a multiple of `bucket` (so few shapes compile):
  short sentences cost short rows instead of `seq_len` mostly [PAD]. Batch
  i is a function of i alone: any batch can be read back (exact resume).
  Items are this process's rows of each global batch.
  """
  sentences: Sentences
  global_batch: int
  seed: int
  bucket: int
  pool: int = 64
  EPOCHS = 10**6  # The length grain sees: endless for any real run.

  def __post_init__(self):
    self.batches_per_epoch = len(self.sentences) // self.global_batch
    if self.batches_per_epoch == 0:
      raise corpus_lib.DataError(
          f'{len(self.sentences)} training sentences are fewer than one batch '
          f'of data.batch_size={self.global_batch}')
    self._lengths = self.sentences.segment_ids.sum(1)
    self._rows = rows_lib.local_rows(self.global_batch)
    self._cached = (None, None)

  def __len__(self) -> int:
    return self.batches_per_epoch * self.EPOCHS

  def _epoch(self, epoch: int) -> np.ndarray:
    """[batches_per_epoch, global_batch] sentence indices of an epoch."""
    if self._cached[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      order = rng.permutation(len(self.sentences))
      order = order[:self.batches_per_epoch * self.global_batch]
      size = self.pool * self.global_batch
      for start in range(0, len(order), size):
        part = order[start:start + size]
        order[start:start + size] = part[np.argsort(self._lengths[part],
                                                    kind='stable')]
      batches = order.reshape(self.batches_per_epoch, self.global_batch)
      self._cached = (epoch, batches[rng.permutation(len(batches))])
    return self._cached[1]

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    epoch, b = divmod(int(i), self.batches_per_epoch)
    index = self._epoch(epoch)[b]
    longest = int(self._lengths[index].max())
    width = min(-(-longest // self.bucket) * self.bucket,
                self.sentences.inputs.shape[1])
    index = index[self._rows]
    s = self.sentences
    return {'inputs': s.inputs[index, :width],
            'segment_ids': s.segment_ids[index, :width],
            'targets': s.labels[index],
            'weights': np.ones(len(index), np.float32)}


def sentence_train_dataset(sentences: Sentences, global_batch: int, seed: int,
                           prefetch: int = 2, bucket: int = 0, tok=None,
                           token_dropout: float = 0.0) -> grain.IterDataset:
  """Shuffled sentences, endless (reshuffled each epoch), in local batches;
  with `bucket`, batched by length and cut short (LengthGroupedBatches);
  with `token_dropout`, that share of the pieces (never [CLS], [SEP] or
  [PAD]) read as `tok`'s [MASK] (`masking.DropTokens`, seeded)."""
  if bucket:
    ds = grain.MapDataset.source(LengthGroupedBatches(
        sentences, global_batch, seed, bucket))
  else:
    ds = grain.MapDataset.source(sentences).shuffle(seed=seed).repeat()
    ds = ds[jax.process_index()::jax.process_count()]
    ds = ds.batch(rows_lib.local_batch_size(global_batch), drop_remainder=True)
  if token_dropout:
    ids = tok.special_ids
    ds = ds.random_map(masking.DropTokens(
        ids['mask'], sorted(set(ids.values())), token_dropout), seed=seed)
  return ds.to_iter_dataset(rows_lib.read_options(prefetch))


def sentence_batches(sentences: Sentences, batch_size: int):
  """Every sentence once, in order, in global batches; the last is filled
  with rows of weight 0."""
  n = len(sentences)
  for start in range(0, n, batch_size):
    index = np.arange(start, start + batch_size)
    real = index < n
    index = np.where(real, index, 0)
    yield {'inputs': sentences.inputs[index],
           'segment_ids': sentences.segment_ids[index],
           'targets': sentences.labels[index],
           'weights': real.astype(np.float32)}
