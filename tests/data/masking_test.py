"""Tests of lm.data.masking: BERT's 15% and 80/10/10, loss weights, determinism,
whole words, word dropout."""

import dataclasses

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from lm.data import masking
from lm.data import vocabulary
from lm.tasks import base

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPEC = masking.MaskSpec(mask_id=MASK, vocab_size=1000,
                        special_ids=(PAD, CLS, SEP, MASK))


def rows(n, length=128, seed=0):
  """Rows of [CLS] ordinary ids [SEP] then padding, of varied lengths."""
  rng = np.random.default_rng(seed)
  out = np.zeros((n, length), np.int32)
  for i in range(n):
    used = rng.integers(10, length - 2)
    out[i, 0] = CLS
    out[i, 1:used + 1] = rng.integers(4, 1000, used)
    out[i, used + 1] = SEP
  return out


def mask_all(ids, seed, spec):
  """(chosen, inputs) of every row of `ids` masked with one generator."""
  rng = np.random.default_rng(seed)
  out = [masking.mask_tokens(r, rng, spec) for r in ids]
  return (np.stack([o['weights'] for o in out]) > 0,
          np.stack([o['inputs'] for o in out]))


def test_rates_are_berts_on_a_large_sample():
  ids = rows(3000)
  chosen, inputs = mask_all(ids, 1, SPEC)
  maskable = ids > SEP
  assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.002
  as_mask = (inputs == MASK) & chosen
  changed = (inputs != ids) & chosen & ~as_mask
  kept = (inputs == ids) & chosen
  n = chosen.sum()
  assert abs(as_mask.sum() / n - 0.8) < 0.01
  assert abs(changed.sum() / n - 0.1) < 0.01  # Random (rarely the same id).
  assert abs(kept.sum() / n - 0.1) < 0.01
  # Nothing else is touched; specials and padding are never chosen.
  assert (inputs[~chosen] == ids[~chosen]).all()
  assert not chosen[~maskable].any()
  # Random replacements are ordinary tokens, never specials.
  assert (inputs[changed] > SEP).all()


def test_no_loss_on_unchosen_positions():
  ids = rows(4, length=32)
  rng = np.random.default_rng(0)
  out = [masking.mask_tokens(r, rng, SPEC) for r in ids]
  targets = jnp.asarray(np.stack([o['targets'] for o in out]))
  weights = jnp.asarray(np.stack([o['weights'] for o in out]))
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 1000)),
                       jnp.float32)
  loss = base.cross_entropy(logits, targets, weights)
  noise = jnp.asarray(np.random.default_rng(2).normal(size=logits.shape) * 5)
  unchosen = (weights == 0)[..., None]
  other = base.cross_entropy(jnp.where(unchosen, logits + noise, logits),
                              targets, weights)
  assert float(other) == pytest.approx(float(loss), rel=1e-6)
  chosen_changed = base.cross_entropy(
      jnp.where(unchosen, logits, logits + noise), targets, weights)
  assert float(chosen_changed) != pytest.approx(float(loss), rel=1e-3)


def test_a_short_row_gets_one_and_an_empty_row_none():
  one = np.array([CLS, 7, SEP, PAD], np.int32)
  out = masking.mask_tokens(one, np.random.default_rng(0), SPEC)
  assert out['weights'].tolist() == [0, 1, 0, 0]
  empty = np.array([CLS, SEP, PAD, PAD], np.int32)
  assert not masking.mask_tokens(empty, np.random.default_rng(0),
                                 SPEC)['weights'].any()


def pipeline(seed):
  ds = grain.MapDataset.source([{'inputs': r} for r in rows(64, length=16)])
  ds = ds.shuffle(seed=seed).random_map(masking.MaskTokens(SPEC), seed=seed)
  return ds.batch(4).to_iter_dataset()


def test_masking_in_grain_is_seeded_and_resumes_exactly():
  it = iter(pipeline(5))
  for _ in range(3):
    next(it)
  state = it.get_state()
  rest = [next(it) for _ in range(3)]
  again = iter(pipeline(5))
  again.set_state(state)
  for a, b in zip(rest, [next(again) for _ in range(3)]):
    for key in ('inputs', 'targets', 'weights'):
      np.testing.assert_array_equal(a[key], b[key])
  other = next(iter(pipeline(6)))
  assert not np.array_equal(other['inputs'], next(iter(pipeline(5)))['inputs'])


def test_token_dropout_masks_its_share_of_ordinary_pieces_only():
  ids = rows(2000)
  specials = (PAD, CLS, SEP, MASK)
  out = masking.drop_tokens(ids, np.random.default_rng(0), MASK, specials,
                            0.1)
  assert out.shape == ids.shape and out.dtype == ids.dtype
  ordinary = ~np.isin(ids, specials)
  dropped = out != ids
  assert (out[dropped] == MASK).all()
  assert not dropped[~ordinary].any()  # [CLS], [SEP], [PAD] never.
  assert abs(dropped.sum() / ordinary.sum() - 0.1) < 0.005
  again = masking.drop_tokens(ids, np.random.default_rng(0), MASK, specials,
                              0.1)
  np.testing.assert_array_equal(out, again)  # A function of the generator.
  none = masking.drop_tokens(ids, np.random.default_rng(0), MASK, specials,
                             0.0)
  np.testing.assert_array_equal(none, ids)


# Whole-word masking: ids 4-499 begin a word, 500-997 continue one, 998
# stands alone (a newline).
KINDS = np.array([vocabulary.WORD_ALONE] * 4 + [vocabulary.WORD_STARTS] * 496 +
                 [vocabulary.WORD_CONTINUES] * 498 +
                 [vocabulary.WORD_ALONE] * 2, np.int8)
WORD_SPEC = dataclasses.replace(SPEC, rate=0.4, word_kinds=KINDS)


def word_rows(n, length=128, seed=0):
  """`rows` of words of 1-4 pieces, some rows starting inside a word, and
  newlines (998) between some of them."""
  rng = np.random.default_rng(seed)
  out = rows(n, length, seed)
  ordinary = out > SEP
  out[ordinary] = np.where(rng.random(ordinary.sum()) < 0.45,
                           rng.integers(4, 500, ordinary.sum()),
                           rng.integers(500, 998, ordinary.sum()))
  out[ordinary & (rng.random(out.shape) < 0.03)] = 998
  return out


def words_of(row):
  """The word index of each ordinary position of `row` (-1 elsewhere)."""
  ordinary = row > SEP
  starts = masking.word_starts(row, KINDS) | ~np.roll(ordinary, 1)
  return np.where(ordinary, np.cumsum(starts & ordinary) - 1, -1)


def test_word_starts_follow_the_kinds():
  row = np.array([CLS, 600, 5, 600, 601, 998, 700, 6, SEP])
  np.testing.assert_array_equal(
      masking.word_starts(row, KINDS),
      [True, True, True, False, False, True, True, True, True])


def test_whole_words_are_chosen_whole_at_the_rate():
  ids = word_rows(2000)
  chosen, inputs = mask_all(ids, 3, WORD_SPEC)
  maskable = ids > SEP
  for row, picked in zip(ids, chosen):
    words = words_of(row)
    assert picked.sum() <= masking.chosen_count((row > SEP).sum(), 0.4)
    for w in np.unique(words[picked]):  # All of a word, or none of it.
      assert picked[words == w].all()
  assert not chosen[~maskable].any()
  # Words are skipped only when they would overflow a row's count: close to
  # 40% of pieces, a little under.
  assert 0.385 < chosen.sum() / maskable.sum() <= 0.4
  n = chosen.sum()  # 80/10/10 piece by piece, as before.
  assert abs(((inputs == MASK) & chosen).sum() / n - 0.8) < 0.01
  assert abs(((inputs == ids) & chosen).sum() / n - 0.1) < 0.01
  # A piece-level spec on the same rows splits words.
  pieces = [masking.mask_tokens(r, np.random.default_rng(3),
                                dataclasses.replace(SPEC, rate=0.4))
            for r in ids[:20]]
  assert any(not (p['weights'][words_of(r) == w] > 0).all()
             for r, p in zip(ids[:20], pieces)
             for w in np.unique(words_of(r)[p['weights'] > 0]))


def test_a_word_longer_than_the_count_is_cut():
  row = np.array([CLS, 5] + [600] * 9 + [SEP])  # One word of 10 pieces.
  out = masking.mask_tokens(row, np.random.default_rng(0), WORD_SPEC)
  np.testing.assert_array_equal(np.flatnonzero(out['weights']),
                                np.arange(1, 5))  # round(0.4 x 10) = 4.


def test_bad_specs_are_refused():
  with pytest.raises(ValueError, match='rate'):
    masking.MaskSpec(mask_id=MASK, vocab_size=10, special_ids=(MASK,), rate=0)
  with pytest.raises(ValueError, match='sum to at most 1'):
    masking.MaskSpec(mask_id=MASK, vocab_size=10, special_ids=(MASK,),
                     mask_fraction=0.9, random_fraction=0.2)
