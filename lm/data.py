"""Input pipelines: TFDS data sources, tokenized, windowed or packed, by grain.

Every corpus is a TFDS builder (`lm.builders`) read through a random-access
data source. Two ways to cut it into training rows (`data.pack`):

- 'stream': the split's documents are tokenized and concatenated into one
  token stream; rows are windows of `max_len + 1` tokens at shuffled start
  offsets (every offset once per epoch), as nanoGPT and the WikiText
  literature read a corpus. Attention may cross document boundaries.
- 'segments': documents are shuffled, tokenized, shifted into (inputs,
  targets) and packed by grain's concat-then-split into rows with segment ids
  and positions; attention never crosses a document (the model masks it).

Evaluation always reads a split as one stream, so perplexities are those of
the split's text. Iterators are deterministic from the seed; their state is
saved with each checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import grain.experimental
import jax
import numpy as np
import tensorflow_datasets as tfds

from lm import builders
from lm import preprocess
from lm import tokenizer as tokenizer_lib

DataError = builders.DataError


def split_names(d) -> dict[str, str]:
  """TFDS split expressions for 'train', 'validation' and 'test' ('' none).

  A corpus without a validation split holds out the last `val_fraction` of
  its training examples (whole examples, in file order).
  """
  return {'train': d.train_split, 'validation': d.eval_split,
          'test': d.test_split}


def resolve_splits(builder, d) -> dict[str, str]:
  """`split_names`, with a missing validation split carved out of train."""
  names = split_names(d)
  available = set(builder.info.splits)
  if names['validation'] and names['validation'] not in available and (
      names['validation'] == 'validation' and names['train'] == 'train'):
    n = builder.info.splits['train'].num_examples
    held = max(1, int(round(n * d.val_fraction)))
    if n - held < 1:
      raise DataError(f'{builder.name} has {n} training example(s), too few '
                      'to hold out a validation split; add a validation file')
    names['train'], names['validation'] = f'train[:{n - held}]', f'train[{n - held}:]'
  if names['test'] and names['test'].split('[')[0] not in available:
    names['test'] = ''  # No test split (e.g. a user corpus): skip it.
  return names


def read_texts(source) -> list[str]:
  """All texts of a data source, in order."""
  return [ex['text'].decode('utf-8') for ex in
          (source[i] for i in range(len(source)))]


def encode_document(tok, text: str) -> np.ndarray:
  """One document's ids: the word tokenizer ends each line with <eos> itself;
  tokenizers with an <eos> that ignore newlines get one after the document;
  the character tokenizer keeps the text's own newlines."""
  ids = tok.encode(text)
  if tok.kind in ('sentencepiece', 'byte'):
    ids = np.append(ids, np.int32(tok.eos_id))
  return ids.astype(np.int32)


def encode_stream(tok, texts) -> np.ndarray:
  """The documents' ids concatenated in order: a split as one stream."""
  parts = [encode_document(tok, t) for t in texts]
  return np.concatenate(parts) if parts else np.zeros((0,), np.int32)


@dataclasses.dataclass
class Corpus:
  """A prepared corpus: its builder, split names, tokenizer and text."""
  builder: tfds.core.DatasetBuilder
  splits: dict[str, str]
  tokenizer: object
  transform: object  # Preprocessing applied to every text.
  texts: dict[str, list[str]]  # Preprocessed texts of each split, in order.

  @functools.cached_property
  def streams(self) -> dict[str, np.ndarray]:
    return {s: encode_stream(self.tokenizer, t) for s, t in self.texts.items()}

  @property
  def train(self) -> np.ndarray:
    return self.streams['train']

  @property
  def val(self) -> np.ndarray:
    return self.streams['validation']


def prepare(d):
  """The prepared TFDS builder of data config `d` (see lm.builders.prepare)."""
  return builders.prepare(d.name, config=d.config, path=d.path,
                          data_dir=d.tfds_dir)


def load_corpus(d, max_len: int, tokenizer=None, splits=None) -> Corpus:
  """Prepares and reads the corpus of data config `d`, and its tokenizer.

  `tokenizer` (a run's saved one, when resuming) is used as is; otherwise one
  of kind `d.tokenizer` is trained on the training split. `splits` overrides
  the split expressions (cross-validation folds).
  """
  builder = prepare(d)
  names = splits or resolve_splits(builder, d)
  transform = preprocess.make(d.normalize, d.lowercase, d.remove_stopwords)
  texts = {s: [transform(t) for t in read_texts(builders.source(builder, n))]
           for s, n in names.items() if n}
  if tokenizer is None:
    tokenizer = tokenizer_lib.train(
        d.tokenizer, texts['train'], vocab_size=d.vocab_size,
        model_type=d.spm_model_type)
  corpus = Corpus(builder, names, tokenizer, transform, texts)
  for split in ('train', 'validation'):
    n = len(corpus.streams[split])
    if n <= max_len:
      raise DataError(f'the {split} split has {n} tokens, fewer than one '
                      f'window of {max_len + 1}; use more text or a smaller '
                      'model.max_len')
  return corpus


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


def _read_options(prefetch: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)


def train_dataset(tokens: np.ndarray, max_len: int, global_batch: int,
                  seed: int, prefetch: int = 2) -> grain.IterDataset:
  """Endless shuffled stream windows, prepared ahead by a grain thread."""
  return _batched_windows(tokens, max_len, global_batch, seed).to_iter_dataset(
      _read_options(prefetch))


def _shifted(tok, transform, example) -> dict[str, np.ndarray]:
  ids = encode_document(tok, transform(example['text'].decode('utf-8')))
  return {'inputs': ids[:-1], 'targets': ids[1:]}


def _row(max_len: int, packed) -> dict[str, np.ndarray]:
  """A packed row as the model reads it; padding (segment 0) has weight 0."""
  segment_ids = packed['inputs_segment_ids']
  return {'inputs': packed['inputs'].astype(np.int32),
          'targets': packed['targets'].astype(np.int32),
          'segment_ids': segment_ids.astype(np.int32),
          'positions': packed['inputs_positions'].astype(np.int32),
          'weights': (segment_ids > 0).astype(np.float32)}


def packed_dataset(source, tok, max_len: int, global_batch: int, seed: int,
                   prefetch: int = 2, transform=lambda t: t
                   ) -> grain.IterDataset:
  """Endless batches of documents packed into rows with segment ids.

  `source` is this process's data source (see `process_source`); documents
  are reshuffled every epoch, and a document longer than a row continues in
  the next row with positions starting again at 0.
  """
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.map(functools.partial(_shifted, tok, transform))
  ds = ds.filter(lambda ex: len(ex['inputs']) > 0)
  it = ds.to_iter_dataset(_read_options(prefetch))
  it = grain.experimental.ConcatThenSplitIterDataset(
      it, length_struct={'inputs': max_len, 'targets': max_len})
  it = it.map(functools.partial(_row, max_len))
  return it.batch(local_batch_size(global_batch), drop_remainder=True)


def process_source(builder, split: str):
  """This process's share of `split`: equal contiguous parts across hosts."""
  return builders.source(builder, tfds.split_for_jax_process(split))


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
