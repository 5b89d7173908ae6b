"""Train/test contamination: which evaluation documents share a word n-gram
with the training split, and how much of each they cover (the GPT-3 paper's
analysis, Brown et al. 2020, appendix C: 13-grams of normalised words).

Words are those of `lm.data.duplicates.words` (lowercased runs of letters and
digits), so the check does not depend on the model's tokenizer: a character
model's 13-grams would be 13 letters. Each n-gram is hashed to 64 bits
(random 64-bit codes per word, combined polynomially, in numpy over a whole
split at once); a false match needs two of the split's n-grams to collide,
about one chance in 10^7 for WikiText-2's two million.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lm.data import duplicates

_MULT = np.uint64(0x9E3779B97F4A7C15)


class Words:
  """Documents as one flat array of word codes and offsets; the codes of
  one `Words` vocabulary are shared by every split given to it."""

  def __init__(self):
    self._codes: dict[str, int] = {}
    self._rng = np.random.default_rng(0)
    self._table = np.zeros((0,), np.uint64)  # Each word's random odd code.

  def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
    """(codes [words], offsets [documents + 1]) of `texts`."""
    ids, offsets = [], [0]
    for t in texts:
      for w in duplicates.words(t):
        ids.append(self._codes.setdefault(w, len(self._codes)))
      offsets.append(len(ids))
    more = len(self._codes) - len(self._table)
    if more:
      self._table = np.concatenate([self._table, self._rng.integers(
          0, 2**63, more, dtype=np.uint64) * np.uint64(2) + np.uint64(1)])
    return (self._table[np.asarray(ids, np.int64)],
            np.asarray(offsets, np.int64))


def ngram_hashes(codes: np.ndarray, offsets: np.ndarray, n: int):
  """(hashes, starts): the 64-bit hash of every n-gram that lies inside one
  document, and its first word's index in `codes`."""
  L = len(codes)
  if L < n:
    return np.zeros((0,), np.uint64), np.zeros((0,), np.int64)
  h = np.zeros(L - n + 1, np.uint64)
  with np.errstate(over='ignore'):
    for j in range(n):
      h = h * _MULT + codes[j:L - n + 1 + j]
  starts = np.arange(L - n + 1)
  # Keep n-grams whose last word is in the same document as the first.
  doc = np.searchsorted(offsets, starts, side='right') - 1
  inside = starts + n <= offsets[doc + 1]
  return h[inside], starts[inside]


@dataclasses.dataclass
class Contamination:
  """Per evaluation document: its words, the words covered by an n-gram
  found in training, and whether any is (documents shorter than n cannot
  be checked: `checkable` False)."""
  words: np.ndarray
  covered: np.ndarray
  checkable: np.ndarray

  @property
  def contaminated(self) -> np.ndarray:
    return self.covered > 0

  def summary(self) -> dict:
    checked = int(self.checkable.sum())
    dirty = int(self.contaminated.sum())
    return {
        'documents_checked': checked,
        'documents_too_short': int((~self.checkable & (self.words > 0)).sum()),
        'documents_contaminated': dirty,
        'documents_contaminated_share': dirty / checked if checked else 0.0,
        'words': int(self.words.sum()),
        'words_contaminated': int(self.covered.sum()),
        'words_contaminated_share': (float(self.covered.sum() /
                                           self.words.sum())
                                     if self.words.sum() else 0.0),
    }

  def worst(self, k: int) -> list[tuple[int, float]]:
    """(document, share of its words covered) of the k most contaminated."""
    share = np.where(self.words > 0, self.covered / np.maximum(self.words, 1),
                     0.0)
    order = np.lexsort((-self.words, -share))
    return [(int(i), float(share[i])) for i in order[:k] if share[i] > 0]


def check_ngram(n: int, longest: int) -> None:
  """A ValueError unless 1 <= n <= `longest`, the longest document's word
  count."""
  if n < 1:
    raise ValueError(f'n-gram size {n}: give a size of at least 1')
  if n > longest:
    raise ValueError(f'n-gram size {n} is longer than every document (the '
                     f'longest has {longest} words); give a smaller size')


class NgramIndex:
  """The word n-grams of `train_texts`, to check other documents against."""

  def __init__(self, train_texts, n: int = 13):
    self.n, self.vocab = n, Words()
    codes, offsets = self.vocab.encode(train_texts)
    self._seen = np.unique(ngram_hashes(codes, offsets, n)[0])

  def check(self, texts) -> Contamination:
    """Which of `texts` share a word n-gram with the training texts."""
    n = self.n
    codes, offsets = self.vocab.encode(texts)
    hashes, starts = ngram_hashes(codes, offsets, n)
    hit = np.isin(hashes, self._seen)
    # Words covered by a matching n-gram: +1 where one starts, -1 past its
    # end.
    delta = np.zeros(len(codes) + 1, np.int64)
    np.add.at(delta, starts[hit], 1)
    np.add.at(delta, starts[hit] + n, -1)
    covered_word = np.append(np.cumsum(delta)[:-1] > 0, False)
    words_per = np.diff(offsets)
    covered = (np.add.reduceat(covered_word.astype(np.int64),
                               np.minimum(offsets[:-1], len(codes)))
               if len(words_per) else np.zeros((0,), np.int64))
    covered = np.where(words_per > 0, covered, 0)
    return Contamination(words_per, covered, words_per >= n)
