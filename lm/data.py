"""Input pipelines: TFDS data sources, tokenized, windowed or packed, by grain.

Every corpus is a TFDS builder (`lm.builders`) read through a random-access
data source. Two ways to cut it into training rows (`data.pack`):

- 'stream': the split's documents are tokenized and concatenated into one
  token stream; rows are windows of `max_len + 1` tokens at shuffled start
  offsets (every offset once per epoch), as nanoGPT and the WikiText
  literature read a corpus. Attention may cross document boundaries.
- 'segments': documents are shuffled, shifted into (inputs, targets) and
  packed concat-then-split into rows with segment ids and positions;
  attention never crosses a document (the model masks it).

Evaluation always reads a split as one stream, so perplexities are those of
the split's text. Iterators are deterministic from the seed; their state is
saved with each checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from lm import builders
from lm import preprocess
from lm import tokenizer as tokenizer_lib

DataError = builders.DataError


def resolve_splits(builder, d) -> dict[str, str]:
  """TFDS split expressions for 'train', 'validation' and 'test' ('' none).

  A corpus without a validation split holds out the last `data.val_fraction`
  of its training examples (whole examples, in file order); a test split the
  corpus lacks is skipped.
  """
  names = {'train': d.train_split, 'validation': d.eval_split,
           'test': d.test_split}
  available = set(builder.info.splits)
  if (names['validation'] == 'validation' and names['train'] == 'train'
      and 'validation' not in available):
    n = builder.info.splits['train'].num_examples
    held = max(1, int(round(n * d.val_fraction)))
    if n - held < 1:
      raise DataError(f'{builder.name} has {n} training example(s), too few '
                      'to hold out a validation split; add a validation file')
    names['train'] = f'train[:{n - held}]'
    names['validation'] = f'train[{n - held}:]'
  if names['test'] and names['test'].split('[')[0] not in available:
    names['test'] = ''
  return names


def read_texts(source, chunk: int = 4096) -> list[str]:
  """All texts of a data source, in order (read in chunks: 4x faster)."""
  texts = []
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    texts.extend(ex['text'].decode('utf-8') for ex in rows)
  return texts


def read_labels(source, chunk: int = 4096) -> np.ndarray:
  """All labels of a labelled data source, in order."""
  labels = []
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    labels.extend(int(ex['label']) for ex in rows)
  return np.asarray(labels, np.int64)


def encode_document(tok, text: str) -> np.ndarray:
  """One document's ids, its end marked once.

  The word tokenizer ends each line with <eos> itself; the character
  tokenizer keeps the text's own newlines; SentencePiece and bytes end the
  document with <eos> in place of its final newline (an encoder's
  SentencePiece, which has no <eos>, with [SEP]).
  """
  if tok.kind in ('sentencepiece', 'byte'):
    body = text[:-1] if text.endswith('\n') else text
    end = tok.special_ids['sep'] if tok.eos_id is None else tok.eos_id
    return np.append(tok.encode(body), np.int32(end)).astype(np.int32)
  return tok.encode(text).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Documents:
  """Tokenized documents as one flat id array and offsets (random access).

  `tokens` is the split as one stream; document i is
  tokens[offsets[i]:offsets[i + 1]]. Tokenizing a split once, in bulk, makes
  a packed epoch cost array slicing instead of a record read and a
  tokenization per document (5x the rate; see BENCHMARKS.md).
  """
  tokens: np.ndarray
  offsets: np.ndarray

  @classmethod
  def encode(cls, tok, texts) -> 'Documents':
    parts = [encode_document(tok, t) for t in texts]
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    tokens = np.concatenate(parts) if parts else np.zeros((0,), np.int32)
    return cls(tokens, offsets)

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def __getitem__(self, i: int) -> np.ndarray:
    return self.tokens[self.offsets[i]:self.offsets[i + 1]]


def encode_stream(tok, texts) -> np.ndarray:
  """The documents' ids concatenated in order: a split as one stream."""
  return Documents.encode(tok, texts).tokens


@dataclasses.dataclass
class Corpus:
  """A prepared corpus: its builder, split names, tokenizer and text."""
  builder: tfds.core.DatasetBuilder
  splits: dict[str, str]
  tokenizer: object
  transform: object  # Preprocessing applied to every text.
  texts: dict[str, list[str]]  # Preprocessed texts of each split, in order.
  # Each split's labels, in order, for a labelled corpus (SST-2); else {}.
  labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def documents(self) -> dict[str, Documents]:
    return {s: Documents.encode(self.tokenizer, t)
            for s, t in self.texts.items()}

  @property
  def streams(self) -> dict[str, np.ndarray]:
    return {s: d.tokens for s, d in self.documents.items()}

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


def load_corpus(d, max_len: int, tokenizer=None, splits=None,
                specials: str = '') -> Corpus:
  """Prepares and reads the corpus of data config `d`, and its tokenizer.

  `tokenizer` (a run's saved one, when resuming) is used as is; otherwise one
  of kind `d.tokenizer` is trained on the training split, with `specials`
  ('bert': [CLS], [SEP], [MASK], [PAD], [UNK] for encoders). `splits`
  overrides the split expressions (cross-validation folds). With
  `d.extra_name`, that corpus's `d.extra_split` texts join the training
  split's (after them), labels dropped.
  """
  builder = prepare(d)
  names = splits or resolve_splits(builder, d)
  transform = preprocess.make(d.normalize, d.lowercase, d.remove_stopwords)
  texts = {s: [transform(t) for t in read_texts(builders.source(builder, n))]
           for s, n in names.items() if n}
  labels = ({s: read_labels(builders.source(builder, n))
             for s, n in names.items() if n}
            if 'label' in builder.info.features else {})
  if d.extra_name:  # Unlabelled text after the training split's.
    extra = builders.prepare(d.extra_name, path=d.extra_path,
                             data_dir=d.tfds_dir)
    texts['train'] = texts['train'] + [
        transform(t) for t in read_texts(builders.source(extra,
                                                         d.extra_split))]
  if tokenizer is None:
    tokenizer = tokenizer_lib.train(
        d.tokenizer, texts['train'], vocab_size=d.vocab_size,
        model_type=d.spm_model_type, specials=specials)
  corpus = Corpus(builder, names, tokenizer, transform, texts, labels)
  # A labelled corpus is read as sentences (lm.encoder_data), not streams:
  # tokenizing it as streams too would only cost time.
  for split in ('train', 'validation') if not labels else ():
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
  documents: Documents
  max_len: int
  seed: int
  EPOCHS = 10**6  # The length grain sees: endless for any real run.

  def __post_init__(self):
    lengths = np.diff(self.documents.offsets) - 1  # Targets per document.
    self._docs = np.flatnonzero(lengths > 0)  # One-token documents: none.
    self._lengths = lengths[self._docs]
    self.rows_per_epoch = int(self._lengths.sum()) // self.max_len
    if self.rows_per_epoch == 0:
      raise DataError(f'the documents hold {self._lengths.sum()} targets, '
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


def packed_dataset(documents: Documents, max_len: int, global_batch: int,
                   seed: int, prefetch: int = 2) -> grain.IterDataset:
  """Endless batches of shuffled documents packed into rows with segment ids
  (see PackedRows); `documents` are this process's (`process_documents`)."""
  ds = grain.MapDataset.source(PackedRows(documents, max_len, seed))
  return ds.batch(local_batch_size(global_batch), drop_remainder=True
                  ).to_iter_dataset(read_options(prefetch))


def process_documents(corpus: Corpus, split: str = 'train') -> Documents:
  """This process's share of a split (tfds.split_for_jax_process: equal
  contiguous parts across hosts), tokenized."""
  if jax.process_count() == 1:
    return corpus.documents[split]
  source = builders.source(corpus.builder,
                           tfds.split_for_jax_process(corpus.splits[split]))
  return Documents.encode(corpus.tokenizer,
                          [corpus.transform(t) for t in read_texts(source)])


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
