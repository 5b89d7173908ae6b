"""Contamination: word n-gram overlap with training against brute force."""

import random

import numpy as np
import pytest

from lm.data import contamination
from lm.data import duplicates


def _check(train, texts, n):
  return contamination.NgramIndex(train, n).check(texts)


def _brute(train, texts, n):
  """(words, covered words) of each text, by set lookup."""
  seen = set()
  for t in train:
    w = duplicates.words(t)
    seen |= {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
  out = []
  for t in texts:
    w = duplicates.words(t)
    cover = [False] * len(w)
    for i in range(len(w) - n + 1):
      if tuple(w[i:i + n]) in seen:
        cover[i:i + n] = [True] * n
    out.append((len(w), sum(cover)))
  return out


@pytest.mark.parametrize('n', [1, 3, 13])
def test_matches_brute_force_with_planted_leaks(n):
  rng = random.Random(n)
  vocab = [f'w{i}' for i in range(30)]
  train = [' '.join(rng.choice(vocab) for _ in range(rng.randint(0, 60)))
           for _ in range(40)]
  texts = [' '.join(rng.choice(vocab) for _ in range(rng.randint(0, 60)))
           for _ in range(40)]
  for k in range(0, 40, 4):  # Leaked passages: a training span inside.
    w = train[k].split()
    texts[k] = 'Intro WORDS ' + ' '.join(w[5:5 + 20]) + ' outro'
  found = _check(train, texts, n)
  brute = _brute(train, texts, n)
  assert found.words.tolist() == [w for w, _ in brute]
  assert found.covered.tolist() == [c for _, c in brute]
  summary = found.summary()
  assert summary['documents_contaminated'] == sum(
      c > 0 for w, c in brute)
  assert summary['documents_checked'] == sum(w >= n for w, _ in brute)
  assert summary['words_contaminated'] == sum(c for _, c in brute)


def test_ngrams_never_span_two_documents():
  train = ['a b c', 'd e f']
  assert not _check(train, ['c d e'], 3).covered.any()
  assert _check(train, ['x d e f'], 3).covered[0] == 3


def test_case_and_punctuation_do_not_hide_a_leak():
  train = ['The quick brown fox jumps over the lazy dog near the river bank']
  found = _check(train, ['THE quick, brown fox -- jumps over the LAZY dog '
                         'near the river bank!'], 13)
  assert found.covered.tolist() == [13]


def test_worst_documents_first():
  train = ['a b c d e f']
  found = _check(train, ['a b c x y z', 'a b c d e f', 'q r s t', 'x b c d'],
                 3)
  worst = found.worst(5)
  assert [i for i, _ in worst] == [1, 3, 0]
  assert [s for _, s in worst] == [1.0, 0.75, 0.5]


@pytest.mark.parametrize('n,message', [(0, 'at least 1'),
                                       (50, 'longer than every document')])
def test_bad_ngram_sizes(n, message):
  with pytest.raises(ValueError, match=message):
    contamination.check_ngram(n, 12)


def test_hashes_are_stable_across_splits():
  vocab = contamination.Words()
  a, oa = vocab.encode(['x y z'])
  b, ob = vocab.encode(['z y x'])
  assert a[0] == b[2] and a[2] == b[0]
  ha, _ = contamination.ngram_hashes(a, oa, 2)
  hb, _ = contamination.ngram_hashes(np.concatenate([a, a]),
                                     np.array([0, 3, 6]), 2)
  assert len(hb) == 4 and set(hb.tolist()) == set(ha.tolist())
