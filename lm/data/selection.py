"""A selection split for model selection: a held-out slice of the training
sentences, by whole sentences.

Choosing the best step (and stopping early) by dev accuracy, then reporting
that same dev accuracy, flatters a classifier: the figure is a maximum over
evaluations, not an estimate. `data.selection_split='heldout'` (the default
for classification) holds `data.selection_fraction` of the training
sentences out of training; the best step is chosen on them, and dev is
scored once, at the end, for the chosen step.

"By whole sentences": SST-2's training items are the phrases of its
training sentences' parse trees (67,349 phrases of 6,920 sentences), so a
random slice of items would hold out phrases whose sentence, and sibling
phrases, stay in training. Here a seeded draw of items picks sentences: the
longest training item containing the drawn one (on word boundaries) is its
sentence, and every training item inside a held-out sentence is held out
with it. For a corpus of independent sentences this is a seeded random
slice.
"""

from __future__ import annotations

import numpy as np

def _spans(sentence: str) -> set[str]:
  """Every run of whole words of the sentence, as text."""
  w = sentence.split()
  return {' '.join(w[i:j]) for i in range(len(w))
          for j in range(i + 1, len(w) + 1)}


def held_out(texts: list[str], fraction: float, seed: int) -> np.ndarray:
  """A mask of the items to hold out: whole sentences (with every item
  inside them) drawn at random until at least `fraction` of the items are
  held out."""
  n = len(texts)
  norm = [' '.join(t.split()) for t in texts]
  by_length = sorted(range(n), key=lambda i: -len(norm[i]))
  where: dict[str, list[int]] = {}
  for i, t in enumerate(norm):
    where.setdefault(t, []).append(i)
  mask = np.zeros(n, bool)
  rng = np.random.default_rng(seed)
  target = max(1, int(np.ceil(fraction * n)))
  held = 0
  for i in rng.permutation(n):
    if held >= target:
      break
    if mask[i] or not norm[i]:
      continue
    padded = f' {norm[i]} '
    # The longest item containing it: its sentence (first in length order).
    sentence = next(norm[j] for j in by_length
                    if len(norm[j]) >= len(norm[i]) and
                    padded in f' {norm[j]} ')
    for span in _spans(sentence):
      for j in where.get(span, ()):
        held += not mask[j]
        mask[j] = True
  return mask


def sentences(texts: list[str]) -> int:
  """How many sentences a held-out slice's items come from: the items that
  are not a shorter run of words inside another item."""
  norm = {' '.join(t.split()) for t in texts} - {''}
  inside = set()
  for t in norm:
    w = t.split()
    inside |= {' '.join(w[i:j]) for i in range(len(w))
               for j in range(i + 1, len(w) + 1) if j - i < len(w)}
  return len(norm - inside)
