"""BERT's masked-language-model corruption of token rows (Devlin et al., 2019).

`mask_tokens(ids_L, rng, spec)` chooses `spec.rate` (15%) of a row's maskable
positions (not padding, [CLS], [SEP] or other special tokens), as BERT's
pretraining data did: round(15% of them), at least one. Of the chosen, 80%
become [MASK], 10% a random ordinary token and 10% stay as they are. The row's
`targets` are the original ids and its `weights` are 1 at the chosen positions
only, so the loss counts nothing else.

Whole-word masking (`spec.word_kinds`, Google's BERT `--do_whole_word_mask`)
chooses words instead of pieces: every piece of a chosen word is chosen, so
the model cannot read a half-hidden word off its other pieces. Words are
added in random order while they fit in the same round(rate x candidates)
pieces (at least one word, cut to that count if even the first is longer);
the 80/10/10 choice is still made piece by piece.

`MaskTokens` applies it in a grain pipeline (`MapDataset.random_map`): grain
draws each row's generator from the pipeline's seed and the row's index, so
the masking is deterministic and a resumed pipeline masks every row as before.

`drop_tokens` is the fine-tuning regulariser "word dropout" (Iyyer et al.,
2015): each ordinary piece of a batch becomes [MASK] with probability `rate`,
independently; the labels are untouched. `DropTokens` applies it in grain the
same way, so a resumed fine-tune drops the same pieces.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import grain
import numpy as np

from lm.data import vocabulary


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """What to mask and how: BERT's 15% and 80/10/10 by default."""
  mask_id: int
  vocab_size: int
  special_ids: tuple[int, ...]  # Never chosen, never drawn as replacements.
  rate: float = 0.15
  mask_fraction: float = 0.8
  random_fraction: float = 0.1
  # Whole-word masking: each id's `Tokenizer.word_kinds` (None: pieces).
  word_kinds: Optional[np.ndarray] = dataclasses.field(
      default=None, compare=False, repr=False)

  def __post_init__(self):
    if not 0 < self.rate <= 1:
      raise ValueError(f'masking rate must be in (0, 1], got {self.rate}')
    if self.mask_fraction < 0 or self.random_fraction < 0 or (
        self.mask_fraction + self.random_fraction > 1):
      raise ValueError('mask and random fractions must be >= 0 and sum to at '
                       f'most 1, got {self.mask_fraction}, '
                       f'{self.random_fraction}')
    if self.mask_id not in self.special_ids:
      raise ValueError(f'the mask id {self.mask_id} must be a special id')

  @functools.cached_property
  def ordinary_ids(self) -> np.ndarray:
    """The ids a random replacement is drawn from."""
    return np.setdiff1d(np.arange(self.vocab_size), self.special_ids)


def word_starts(ids_L: np.ndarray, kinds: np.ndarray) -> np.ndarray:
  """True where a piece of `ids_L` begins a word (`kinds`: each id's
  `Tokenizer.word_kinds`): it starts or stands alone, or follows a piece
  that stands alone."""
  kind_L = kinds[ids_L]
  after_alone = np.concatenate([[True],
                                kind_L[:-1] == vocabulary.WORD_ALONE])
  return (kind_L != vocabulary.WORD_CONTINUES) | after_alone


def chosen_count(candidates: int, rate: float) -> int:
  """How many of a row's `candidates` maskable positions are chosen:
  round(rate x candidates), at least one (none of none)."""
  return max(1, int(round(candidates * rate))) if candidates else 0


def mask_tokens(ids_L: np.ndarray, rng: np.random.Generator,
                spec: MaskSpec) -> dict[str, np.ndarray]:
  """{'inputs', 'targets', 'weights'} of one row of token ids."""
  candidates = np.flatnonzero(~np.isin(ids_L, spec.special_ids))
  inputs_L = ids_L.copy()
  weights_L = np.zeros(ids_L.shape, np.float32)
  if len(candidates):
    count = chosen_count(len(candidates), spec.rate)
    if spec.word_kinds is None:
      chosen = rng.choice(candidates, size=count, replace=False)
    else:
      chosen = _whole_words(ids_L, candidates, count, rng, spec.word_kinds)
      count = len(chosen)
    weights_L[chosen] = 1.0
    draw = rng.random(count)
    to_mask = chosen[draw < spec.mask_fraction]
    to_random = chosen[(draw >= spec.mask_fraction) &
                       (draw < spec.mask_fraction + spec.random_fraction)]
    inputs_L[to_mask] = spec.mask_id
    inputs_L[to_random] = rng.choice(spec.ordinary_ids, size=len(to_random))
  return {'inputs': inputs_L, 'targets': ids_L, 'weights': weights_L}


def _whole_words(ids_L, candidates, count, rng, kinds) -> np.ndarray:
  """Positions of whole words of `candidates`, in random order, at most
  `count` of them (a word also ends where the candidates skip a position)."""
  starts = word_starts(ids_L[candidates], kinds)
  starts[1:] |= np.diff(candidates) > 1
  words = np.split(candidates, np.flatnonzero(starts[1:]) + 1)
  chosen, room = [], count
  for w in rng.permutation(len(words)):
    if len(words[w]) <= room:
      chosen.append(words[w])
      room -= len(words[w])
      if not room:
        break
  if not chosen:  # Every word is longer than `count`: part of one.
    chosen = [words[rng.integers(len(words))][:count]]
  return np.concatenate(chosen)


class MaskTokens(grain.transforms.RandomMap):
  """Masks `element[key]` (a row of ids); other fields pass through."""

  def __init__(self, spec: MaskSpec, key: str = 'inputs'):
    self.spec = spec
    self.key = key

  def random_map(self, element, rng: np.random.Generator):
    out = dict(element)
    out.update(mask_tokens(np.asarray(element[self.key]), rng, self.spec))
    return out


def drop_tokens(ids: np.ndarray, rng: np.random.Generator, mask_id: int,
                special_ids, rate: float) -> np.ndarray:
  """`ids` (any shape) with each ordinary (non-special) id replaced by
  `mask_id` with probability `rate`."""
  drop = (rng.random(ids.shape) < rate) & ~np.isin(ids, special_ids)
  return np.where(drop, mask_id, ids).astype(ids.dtype)


class DropTokens(grain.transforms.RandomMap):
  """Word dropout on `element['inputs']` (a row or a batch of rows)."""

  def __init__(self, mask_id: int, special_ids, rate: float):
    self.mask_id = mask_id
    self.special_ids = tuple(special_ids)
    self.rate = rate

  def random_map(self, element, rng: np.random.Generator):
    out = dict(element)
    out['inputs'] = drop_tokens(np.asarray(element['inputs']), rng,
                                self.mask_id, self.special_ids, self.rate)
    return out
