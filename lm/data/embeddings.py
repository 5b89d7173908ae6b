"""Pretrained word vectors (GloVe / word2vec text format) for the token table.

The text format is one word per line followed by its floats, separated by
spaces, plain or gzip-compressed (`.gz`, GloVe's own release is zipped
text); word2vec's optional first line "COUNT DIM" is skipped. Vectors are
mapped through the run's vocabulary: a token whose string has a vector gets
it; else one whose lowercase form has (GloVe 6B is lowercased, so a cased
vocabulary's "Paris" takes the vector of "paris", counted apart); every
other row keeps its random initialisation. Vectors of another width than
the model's are refused (a learned projection would be a new layer of
random weights between the vectors and the model, which defeats the point):
the error names both widths.

Only the words of the vocabulary are parsed: the 100,000 x 50 GloVe file
into WikiText-2's 33,278 words loads in about a second (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np

from lm import errors


class EmbeddingError(errors.UserError):
  """A vectors file that cannot be used, as one line."""


def _open(path: str):
  """The file as text lines, gunzipped when it is gzip (by its magic)."""
  try:
    with open(path, 'rb') as f:
      magic = f.read(2)
    if magic == b'\x1f\x8b':
      return gzip.open(path, 'rt', encoding='utf-8')
    return open(path, encoding='utf-8')
  except OSError as e:
    raise EmbeddingError(f'cannot read word vectors {path}: {e.strerror}; '
                         'set model.init_embeddings to a GloVe/word2vec '
                         'text file (plain or .gz)') from None


def read_vectors(path: str, vocabulary: set[str] | None = None
                 ) -> dict[str, np.ndarray]:
  """word -> float32 vector; with `vocabulary`, only the words that match
  one of its words ignoring case."""
  lower = None if vocabulary is None else {w.lower() for w in vocabulary}
  vectors, dim = {}, None
  try:
    with _open(path) as f:
      for n, line in enumerate(f, 1):
        line = line.rstrip('\n').rstrip(' ')
        word, _, rest = line.partition(' ')
        if n == 1 and rest.isdigit() and word.isdigit():
          continue  # word2vec header: count and width.
        width = rest.count(' ') + 1 if rest else 0
        if dim is None:
          dim = width
        if width != dim or not dim:
          raise EmbeddingError(f'{path}:{n} has {width} numbers, the file '
                               f'started with {dim}; is it a GloVe/word2vec '
                               'text file?')
        if lower is not None and word not in vocabulary and (
            word.lower() not in lower):
          continue
        try:
          vectors[word] = np.asarray(rest.split(' '), np.float32)
        except ValueError:
          raise EmbeddingError(f'{path}:{n} holds a value that is not a '
                               'number') from None
  except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
    raise EmbeddingError(f'{path} is not UTF-8 text or gzip of it ({e}); '
                         'give a GloVe/word2vec text file') from None
  if dim is None:
    raise EmbeddingError(f'{path} holds no vectors')
  return vectors


@dataclasses.dataclass
class Coverage:
  """How much of the vocabulary (and of the training tokens) the vectors
  covered: `exact` entries by their own string, `lowercase` by their
  lowercase form."""
  exact: int
  lowercase: int
  vocab_size: int
  tokens_found: int = 0
  tokens: int = 0
  scale: float = 1.0  # The factor the vectors were multiplied by.

  @property
  def found(self) -> int:
    return self.exact + self.lowercase

  @property
  def fraction(self) -> float:
    return self.found / max(self.vocab_size, 1)

  def __str__(self) -> str:
    text = (f'{self.found:,} of {self.vocab_size:,} vocabulary entries '
            f'({self.fraction:.1%}) initialised from pretrained vectors '
            f'({self.lowercase:,} by their lowercase form)')
    if self.tokens:
      text += (f', {self.tokens_found / self.tokens:.1%} of the training '
               'tokens')
    if self.scale != 1.0:
      text += f'; vectors scaled by {self.scale:.4g}'
    return text


def initialise(table_VxD: np.ndarray, tokens: list[str],
               vectors: dict[str, np.ndarray], counts=None, std: float = 0.0
               ) -> tuple[np.ndarray, Coverage]:
  """The table with row i set to the vector of tokens[i] where one exists;
  `counts` (optional, [V]) each token's count in the training text, for the
  coverage of tokens. `std` > 0: the vectors placed are first scaled (one
  factor for all) so that their entries have this standard deviation, the
  scale of a freshly drawn table (directions and relative lengths kept)."""
  table = np.array(table_VxD, np.float32, copy=True)
  some = next(iter(vectors.values()), None)
  if some is not None and some.shape[0] != table.shape[1]:
    raise EmbeddingError(f'the vectors are {some.shape[0]} wide but '
                         f'model.embed_dim is {table.shape[1]}; use vectors '
                         'of that width or change model.embed_dim')
  lower = {}
  for word, vec in vectors.items():
    lower.setdefault(word.lower(), vec)
  exact = lowercase = 0
  hit = np.zeros(len(tokens), bool)
  for i, token in enumerate(tokens):
    vec = vectors.get(token)
    if vec is not None:
      exact += 1
    else:
      vec = lower.get(token.lower())
      lowercase += vec is not None
    if vec is not None:
      table[i] = vec
      hit[i] = True
  coverage = Coverage(exact, lowercase, len(tokens))
  if std > 0 and hit.any():
    coverage.scale = float(std / max(table[hit].std(), 1e-12))
    table[hit] *= coverage.scale
  if counts is not None:
    counts = np.asarray(counts)[:len(tokens)]
    coverage.tokens = int(counts.sum())
    coverage.tokens_found = int(counts[hit[:len(counts)]].sum())
  if not coverage.found:
    raise EmbeddingError(f'none of the {len(tokens):,} vocabulary words has '
                         'a vector; is the file in the corpus\'s language '
                         'and case?')
  return table, coverage
