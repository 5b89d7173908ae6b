"""Tests of lm.masking: BERT's 15% and 80/10/10, loss weights, determinism."""

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from lm import masking
from lm import train

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


def test_rates_are_berts_on_a_large_sample():
  ids = rows(3000)
  rng = np.random.default_rng(1)
  out = [masking.mask_tokens(r, rng, SPEC) for r in ids]
  chosen = np.stack([o['weights'] for o in out]) > 0
  inputs = np.stack([o['inputs'] for o in out])
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
  loss = train.cross_entropy(logits, targets, weights)
  noise = jnp.asarray(np.random.default_rng(2).normal(size=logits.shape) * 5)
  unchosen = (weights == 0)[..., None]
  other = train.cross_entropy(jnp.where(unchosen, logits + noise, logits),
                              targets, weights)
  assert float(other) == pytest.approx(float(loss), rel=1e-6)
  chosen_changed = train.cross_entropy(
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


def test_bad_specs_are_refused():
  with pytest.raises(ValueError, match='rate'):
    masking.MaskSpec(mask_id=MASK, vocab_size=10, special_ids=(MASK,), rate=0)
  with pytest.raises(ValueError, match='sum to at most 1'):
    masking.MaskSpec(mask_id=MASK, vocab_size=10, special_ids=(MASK,),
                     mask_fraction=0.9, random_fraction=0.2)
