"""Input pipelines: TFDS data sources, tokenized, windowed or packed, by grain.

Every corpus is a TFDS builder (`lm.data.builders`) read through a random-access
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

import numpy as np
import tensorflow_datasets as tfds

from lm.data import builders
from lm.data import filters
from lm.data import prepare as prepare_lib
from lm.data import preprocess
from lm.data import selection
from lm.data import tokenizer as tokenizer_lib

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


def other_splits(builder, names: dict[str, str]) -> list[str]:
  """The corpus's splits that `names` (split expressions) do not read:
  further evaluation sets (Multi30k's test2017, mscoco2017, test2018)."""
  used = {n.split('[')[0] for expr in names.values() if expr
          for n in expr.split('+')}
  return [s for s in builder.info.splits if s not in used]


def read_split(builder, split: str, transform) -> list:
  """A split's texts (or, of a parallel corpus, its (source, target)
  pairs), each through `transform`."""
  source = prepare_lib.source(builder, split)
  if 'source' in builder.info.features:
    return [(transform(a), transform(b)) for a, b in read_pairs(source)]
  return [transform(t) for t in read_texts(source)]


def read_texts(source, chunk: int = 4096) -> list[str]:
  """All texts of a data source, in order (read in chunks: 4x faster)."""
  texts = []
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    texts.extend(ex['text'].decode('utf-8') for ex in rows)
  return texts


def read_documents(source) -> list[str]:
  """The texts of a data source; of a corpus of pairs, its sources (each
  once: a document's consecutive repeats, one per reference, dropped)."""
  if 'source' not in source.dataset_info.features:
    return read_texts(source)
  sources = [s for s, _ in read_pairs(source)]
  return [s for i, s in enumerate(sources) if i == 0 or s != sources[i - 1]]


def read_pairs(source, chunk: int = 4096) -> list[tuple[str, str]]:
  """All (source, target) texts of a parallel data source, in order."""
  pairs = []
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    pairs.extend((ex['source'].decode('utf-8'), ex['target'].decode('utf-8'))
                 for ex in rows)
  return pairs


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
  # What data.decontaminate, dedup and scrub_pii changed (lm.data.filters).
  filtered: dict = dataclasses.field(default_factory=dict)

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
  """The prepared TFDS builder of data config `d` (see lm.data.builders.prepare)."""
  return prepare_lib.prepare(d.name,
                             config=d.config,
                             path=d.path,
                             data_dir=d.tfds_dir)


def load_corpus(d, max_len: int, tokenizer=None, splits=None,
                specials: str = '', seed: int = 0) -> Corpus:
  """Prepares and reads the corpus of data config `d`, and its tokenizer.

  `tokenizer` (a run's saved one, when resuming) is used as is; otherwise one
  of kind `d.tokenizer` is trained on the training split, with `specials`
  ('bert': [CLS], [SEP], [MASK], [PAD], [UNK] for encoders). `splits`
  overrides the split expressions (cross-validation folds). With
  `d.extra_name`, that corpus's `d.extra_split` texts join the training
  split's (after them), labels dropped. A labelled corpus with
  `d.selection_split='heldout'` gets a 'selection' split of training
  sentences held out (`lm.data.selection`, drawn from `seed`).
  """
  builder = prepare(d)
  names = splits or resolve_splits(builder, d)
  transform = preprocess.make(d.normalize, d.lowercase, d.remove_stopwords)
  if 'source' in builder.info.features:
    return _load_pairs(d, builder, names, transform, tokenizer, specials)
  texts = {
      s: [transform(t) for t in read_texts(prepare_lib.source(builder, n))]
      for s, n in names.items()
      if n
  }
  labels = ({
      s: read_labels(prepare_lib.source(builder, n))
      for s, n in names.items()
      if n
  } if 'label' in builder.info.features else {})
  if d.extra_name:  # Unlabelled text after the training split's.
    extra = prepare_lib.prepare(d.extra_name,
                                path=d.extra_path,
                                data_dir=d.tfds_dir)
    texts['train'] = texts['train'] + [
        transform(t)
        for t in read_documents(prepare_lib.source(extra, d.extra_split))
    ]
  texts, labels, filtered = _filtered(d, builder, names, transform, texts,
                                      labels)
  if labels and d.selection_split == 'heldout' and 'train' in labels:
    held = selection.held_out(texts['train'], d.selection_fraction, seed)
    texts['selection'] = [t for t, h in zip(texts['train'], held) if h]
    texts['train'] = [t for t, h in zip(texts['train'], held) if not h]
    labels['selection'] = labels['train'][held]
    labels['train'] = labels['train'][~held]
  if tokenizer is None:
    tokenizer = tokenizer_lib.train(
        d.tokenizer, texts['train'], vocab_size=d.vocab_size,
        model_type=d.spm_model_type, specials=specials)
  corpus = Corpus(builder, names, tokenizer, transform, texts, labels,
                  filtered)
  # A labelled corpus is read as sentences (lm.data.encoder_rows), not streams:
  # tokenizing it as streams too would only cost time.
  for split in ('train', 'validation') if not labels else ():
    n = len(corpus.streams[split])
    if n <= max_len:
      raise DataError(f'the {split} split has {n} tokens, fewer than one '
                      f'window of {max_len + 1}; use more text or a smaller '
                      'model.max_len')
  return corpus


def _load_pairs(d, builder, names, transform, tokenizer, specials) -> Corpus:
  """A parallel corpus: `texts` holds each split's (source, target) pairs;
  the tokenizer (one vocabulary for both languages) is trained on the
  training split's sources and targets."""
  texts = {s: [(transform(a), transform(b)) for a, b in
               read_pairs(prepare_lib.source(builder, n))]
           for s, n in names.items() if n}
  texts, _, filtered = _filtered(d, builder, names, transform, texts, {})
  if tokenizer is None:
    tokenizer = tokenizer_lib.train(
        d.tokenizer, [t for pair in texts['train'] for t in pair],
        vocab_size=d.vocab_size, model_type=d.spm_model_type,
        specials=specials)
  return Corpus(builder, names, tokenizer, transform, texts,
                filtered=filtered)


def _filtered(d, builder, names, transform, texts, labels):
  """(texts, labels, what changed) after data config `d`'s filters
  (`lm.data.filters`); decontamination also reads the corpus's other
  splits, evaluation splits too."""
  if not filters.active(d):
    return texts, labels, {}
  others = ({s: read_split(builder, s, transform)
             for s in other_splits(builder, names)}
            if d.decontaminate else {})
  return filters.apply(d, texts, labels, others)
