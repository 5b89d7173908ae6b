"""Pretrained word vectors (GloVe / word2vec text format) for the token table.

The text format is one word per line followed by its floats, separated by
spaces; word2vec's optional first line "COUNT DIM" is skipped. Vectors are
mapped through the run's vocabulary: a token whose string has a vector gets
it (exact match first, then lower-cased), every other row keeps its random
initialisation. Vectors of another width than the model's are refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lm import errors


class EmbeddingError(errors.UserError):
  """A vectors file that cannot be used, as one line."""


def read_vectors(path: str, vocabulary: set[str] | None = None
                 ) -> dict[str, np.ndarray]:
  """word -> float32 vector; only words in `vocabulary` when it is given."""
  vectors, dim = {}, None
  try:
    f = open(path, encoding='utf-8')
  except OSError as e:
    raise EmbeddingError(f'cannot read word vectors {path}: {e.strerror}; '
                         'set model.init_embeddings to a GloVe/word2vec '
                         'text file') from None
  with f:
    for n, line in enumerate(f, 1):
      parts = line.rstrip('\n').rstrip(' ').split(' ')
      if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
        continue  # word2vec header: count and width.
      word, values = parts[0], parts[1:]
      if dim is None:
        dim = len(values)
      if len(values) != dim or not dim:
        raise EmbeddingError(f'{path}:{n} has {len(values)} numbers, the file '
                             f'started with {dim}; is it a GloVe/word2vec '
                             'text file?')
      if vocabulary is not None and word not in vocabulary and (
          word.lower() not in vocabulary):
        continue
      try:
        vectors[word] = np.asarray(values, np.float32)
      except ValueError:
        raise EmbeddingError(f'{path}:{n} holds a value that is not a number'
                             ) from None
  if dim is None:
    raise EmbeddingError(f'{path} holds no vectors')
  return vectors


@dataclasses.dataclass
class Coverage:
  """How much of the vocabulary the vectors covered."""
  found: int
  vocab_size: int

  @property
  def fraction(self) -> float:
    return self.found / max(self.vocab_size, 1)

  def __str__(self) -> str:
    return (f'{self.found:,} of {self.vocab_size:,} vocabulary entries '
            f'({self.fraction:.1%}) initialised from pretrained vectors')


def initialise(table_VxD: np.ndarray, tokens: list[str],
               vectors: dict[str, np.ndarray]) -> tuple[np.ndarray, Coverage]:
  """The table with row i set to the vector of tokens[i] where one exists."""
  table = np.array(table_VxD, np.float32, copy=True)
  some = next(iter(vectors.values()), None)
  if some is not None and some.shape[0] != table.shape[1]:
    raise EmbeddingError(f'the vectors are {some.shape[0]} wide but '
                         f'model.embed_dim is {table.shape[1]}; use vectors '
                         'of that width or change model.embed_dim')
  lower = {}
  for word, vec in vectors.items():
    lower.setdefault(word.lower(), vec)
  found = 0
  for i, token in enumerate(tokens):
    vec = vectors.get(token)
    if vec is None:
      vec = lower.get(token.lower())
    if vec is not None:
      table[i] = vec
      found += 1
  return table, Coverage(found, len(tokens))
