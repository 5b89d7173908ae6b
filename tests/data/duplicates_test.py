"""Exact and near duplicates against brute force on a corpus with planted
copies; near-duplicate recall at the threshold."""

import itertools
import random

import pytest

from lm.data import duplicates

WORDS = [f'w{i}' for i in range(400)]


def jaccard(a: set, b: set) -> float:
  """Brute force: the Jaccard similarity of two sets."""
  return len(a & b) / len(a | b) if a or b else 0.0


def near_across(reference, texts, threshold, **kwargs):
  return duplicates.NearIndex(reference, threshold, **kwargs).query(texts)


def _doc(rng, n=60):
  return ' '.join(rng.choice(WORDS) for _ in range(n))


def _edit(rng, text, changes):
  """The text with `changes` words replaced."""
  w = text.split()
  for i in rng.sample(range(len(w)), changes):
    w[i] = rng.choice(WORDS) + 'x'
  return ' '.join(w)


def test_normalisation():
  assert duplicates.normalize('  The\tCAT\n sat ') == 'the cat sat'
  assert duplicates.normalize('ﬁne') == 'fine'  # NFKC ligature.
  assert duplicates.words('Don\'t stop — 42!') == ['don', 't', 'stop', '42']


def test_exact_groups_match_brute_force():
  rng = random.Random(0)
  base = [_doc(rng, rng.randint(1, 20)) for _ in range(50)]
  texts = base + [rng.choice(base).upper() + '  ' for _ in range(30)] + [
      '', '   ', 'a b', 'a  B']
  groups = duplicates.exact_groups(texts)
  brute = {}
  for i, t in enumerate(texts):
    key = ' '.join(t.lower().split())
    if key:
      brute.setdefault(key, []).append(i)
  assert sorted(groups) == sorted(g for g in brute.values() if len(g) > 1)
  # min_words leaves short documents out.
  short = duplicates.exact_groups(texts, min_words=3)
  assert sorted(short) == sorted(
      g for k, g in brute.items() if len(g) > 1 and len(k.split()) >= 3)


def test_exact_in_another_split():
  train = ['one two three', 'Four five six', '']
  texts = ['four  FIVE six', 'seven', '', 'one two three four']
  seen = duplicates.text_keys(train)
  assert duplicates.exact_in(seen, texts) == [0]
  assert duplicates.exact_in(duplicates.text_keys(train, 4), texts, 4) == []


def test_near_duplicates_recall_and_precision_at_the_threshold():
  rng = random.Random(1)
  threshold = 0.8
  train = [_doc(rng) for _ in range(300)]
  texts = [_doc(rng) for _ in range(100)]  # Unrelated.
  # Planted: copies of training documents with a few words changed, their
  # Jaccard with the original from just above the threshold to 1.
  planted = []
  for j in rng.sample(range(len(train)), 100):
    texts.append(_edit(rng, train[j], rng.randint(0, 2)))
    planted.append((len(texts) - 1, j))
  brute = set()
  sets = [duplicates.shingles(t) for t in train]
  for i, t in enumerate(texts):
    s = duplicates.shingles(t)
    for j, r in enumerate(sets):
      if jaccard(s, r) >= threshold:
        brute.add((i, j))
  at_threshold = [p for p in planted if p in brute]
  assert len(at_threshold) >= 60
  assert min(jaccard(duplicates.shingles(texts[i]), sets[j])
             for i, j in at_threshold) < 0.9
  found = {(i, j) for i, j, _ in near_across(train, texts,
                                                         threshold)}
  assert found <= brute  # Every pair reported is scored exactly.
  recall = len(found & brute) / len(brute)
  assert recall >= 0.95


def test_near_pairs_are_scored_and_sorted():
  train = ['a b c d e f g h i j', 'k l m n o p q r s t']
  texts = ['a b c d e f g h i j', 'a b c d e f g h i z', 'k l m n o']
  pairs = near_across(train, texts, 0.5, shingle=2)
  assert [(i, j) for i, j, _ in pairs] == [(0, 0), (1, 0)]
  assert pairs[0][2] == 1.0 and pairs[1][2] == pytest.approx(8 / 10)


@pytest.mark.parametrize('threshold', [0.0, -0.1, 1.5])
def test_threshold_outside_the_unit_interval(threshold):
  with pytest.raises(ValueError, match=r'outside \(0, 1\]'):
    duplicates.NearIndex(['a b c'], threshold)


def test_jaccard_and_shingles():
  assert duplicates.shingles('a b c d', 3) == {'a b c', 'b c d'}
  assert duplicates.shingles('a b', 3) == {'a b'}
  assert duplicates.shingles('  ', 3) == set()
  for a, b in itertools.product([set(), {'x'}, {'x', 'y'}], repeat=2):
    assert 0 <= jaccard(a, b) <= 1
