"""The selection split: whole sentences held out, with every item inside
them; the share reached; seeded."""

import random

import numpy as np

from conftest import SHARED_DATA
from lm.data import selection


def _phrases(rng, sentences=60):
  """Sentences and, as SST-2 has, many of their phrases (word spans)."""
  items = []
  for _ in range(sentences):
    words = [f'w{rng.randrange(300)}' for _ in range(rng.randint(4, 15))]
    items.append(' '.join(words))
    for _ in range(rng.randint(0, 8)):
      i = rng.randrange(len(words))
      j = rng.randint(i + 1, len(words))
      items.append(' '.join(words[i:j]))
  rng.shuffle(items)
  return items


def _leaks(texts, mask):
  """Kept items that sit inside a held-out item (on word boundaries)."""
  held = [f' {t} ' for t, h in zip(texts, mask) if h]
  return [t for t, h in zip(texts, mask)
          if not h and any(f' {t} ' in s for s in held)]


def test_whole_sentences_are_held_out():
  texts = _phrases(random.Random(0))
  mask = selection.held_out(texts, 0.1, seed=0)
  assert mask.sum() >= 0.1 * len(texts)
  assert mask.sum() < 0.5 * len(texts)
  assert not _leaks(texts, mask)


def test_seeded():
  texts = _phrases(random.Random(1))
  a = selection.held_out(texts, 0.1, seed=3)
  assert (a == selection.held_out(texts, 0.1, seed=3)).all()
  assert (a != selection.held_out(texts, 0.1, seed=4)).any()


def test_independent_sentences_are_a_random_slice():
  texts = [f'sentence {i} alone' for i in range(200)]
  mask = selection.held_out(texts, 0.05, seed=0)
  assert mask.sum() == 10


def test_sst2_training_phrases_hold_out_without_leaks():
  rows = (SHARED_DATA / 'sst2' / 'train.tsv').read_text().splitlines()[1:]
  texts = [r.split('\t')[0] for r in rows][:8000]
  mask = selection.held_out(texts, 0.05, seed=0)
  assert 0.05 <= mask.mean() < 0.07
  norm = [' '.join(t.split()) for t in texts]
  assert not _leaks(norm, np.asarray(mask))


def test_sentences_counts_the_items_no_other_item_contains():
  items = ['a good film', 'good film', 'good', 'a  good film',
           'dull', 'it was dull', 'dull plot']
  # 'a good film', 'it was dull', 'dull plot': 'dull' is inside two of them.
  assert selection.sentences(items) == 3
  assert selection.sentences(['x y', 'y x']) == 2  # Words, not letters.
  assert selection.sentences([]) == 0
