"""Tests of lm.data.pairs: rows of a pair, skipped and cut pairs counted,
token-count batches in buckets (bounded, each pair once an epoch, resumable)
and evaluation batches covering every pair once."""

import grain
import jax
import numpy as np

from lm.data import pairs as pairs_lib
from lm.data import rows as rows_lib


class Letters:
  """A toy tokenizer: one id per letter (a=3...), BOS 1, EOS 2."""
  eos_id = 2
  special_ids = {'bos': 1, 'eos': 2}

  def encode(self, text):
    return np.asarray([ord(ch) - ord('a') + 3 for ch in text if ch.isalpha()],
                      np.int32)


def test_decoder_rows_of_their_own_width_and_cut_sources_counted():
  pairs = pairs_lib.Pairs.encode(Letters(), [('abcdefgh', 'cd'),
                                             ('ab', 'cdcdcdcd'), ('a', 'c')],
                                 max_len=6, target_len=4)
  assert (pairs.cut, pairs.cut_sources) == (2, 1)
  assert pairs.notes('train', 6) == [
      "train: 1 of 3 sources are longer than 6 tokens (model.max_len) and 1 "
      "more pairs' targets longer than 4 (data.target_len); they were cut"]
  np.testing.assert_array_equal(pairs.lengths, [6, 3, 2])  # Sources only.
  rows = pairs.rows(np.array([1, 2]), 3, bos=1)
  assert rows['source'].shape == (2, 3) and rows['targets'].shape == (2, 4)
  np.testing.assert_array_equal(rows['targets'][0], [5, 6, 5, 2])
  np.testing.assert_array_equal(rows['inputs'][1], [1, 5, 0, 0])


def make_pairs(n=200, seed=0, max_len=16):
  rng = np.random.default_rng(seed)
  texts = [(''.join('ab'[i] for i in rng.integers(0, 2, rng.integers(1, 20))),
            ''.join('cd'[i] for i in rng.integers(0, 2, rng.integers(1, 20))))
           for _ in range(n)]
  return texts, pairs_lib.Pairs.encode(Letters(), texts, max_len)


def test_a_pair_becomes_source_and_teacher_forced_target_rows():
  pairs = pairs_lib.Pairs.encode(Letters(), [('ab', 'cde'), ('', 'x'),
                                             ('a', ' '), ('abcdefgh', 'c')],
                                 max_len=5)
  assert (len(pairs), pairs.empty, pairs.cut, pairs.size) == (2, 2, 1, 4)
  assert pairs.notes('train', 5) == [
      'train: 2 of 4 pairs have an empty side and were skipped',
      'train: 1 of 4 pairs are longer than 5 tokens (model.max_len) and were '
      'cut']
  rows = pairs.rows(np.array([0, 1, -1]), 6, bos=1)
  np.testing.assert_array_equal(rows['source'][0], [3, 4, 2, 0, 0, 0])
  np.testing.assert_array_equal(rows['source_segments'][0],
                                [1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(rows['inputs'][0], [1, 5, 6, 7, 0, 0])
  np.testing.assert_array_equal(rows['targets'][0], [5, 6, 7, 2, 0, 0])
  np.testing.assert_array_equal(rows['weights'][0], [1, 1, 1, 1, 0, 0])
  # Cut to max_len with its EOS kept.
  np.testing.assert_array_equal(rows['source'][1], [3, 4, 5, 6, 2, 0])
  assert not rows['weights'][2].any() and not rows['source_segments'][2].any()


def test_token_batches_are_bounded_and_hold_each_pair_once_an_epoch():
  _, pairs = make_pairs()
  batches = pairs_lib.TokenBatches(pairs, max_len=16, max_tokens=64,
                                   bucket=4, seed=0, bos=1)
  devices = jax.device_count()
  for i in range(batches.batches_per_epoch):
    b = batches[i]
    n, width = b['source'].shape
    assert width in (4, 8, 12, 16) and n % devices == 0
    # About max_tokens tokens: at most, or one row per device when wider.
    assert n * width <= 64 or n == devices
    # Every row fits its width, markers included.
    assert (b['weights'].sum(1) <= width).all()
  # Each pair at most once an epoch; all but each bucket's last partial
  # batch are there.
  index = np.concatenate([idx for _, idx in batches._epoch(0)])  # pylint: disable=protected-access
  assert len(index) == len(set(index.tolist()))
  assert len(index) >= len(pairs) - sum(batches._rows)  # pylint: disable=protected-access
  assert 0.0 <= batches.padding_share() < 0.5
  # Another epoch is another order.
  assert batches[0]['source'].tolist() != batches[
      batches.batches_per_epoch]['source'].tolist()


def test_a_resumed_iterator_gives_the_same_batches():
  _, pairs = make_pairs(seed=1)

  def iterator():
    ds = grain.MapDataset.source(pairs_lib.TokenBatches(
        pairs, max_len=16, max_tokens=64, bucket=4, seed=3, bos=1))
    return iter(ds.to_iter_dataset(rows_lib.read_options(0)))

  straight = iterator()
  for _ in range(7):
    next(straight)
  state = straight.get_state()
  want = [next(straight) for _ in range(5)]
  resumed = iterator()
  resumed.set_state(state)
  for a, b in zip(want, [next(resumed) for _ in range(5)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_evaluation_batches_cover_every_pair_once():
  _, pairs = make_pairs(n=50, seed=2)
  got = []
  for b in pairs_lib.sorted_batches(pairs, 16, 64, 4, bos=1):
    real = b['weights'].sum(1) > 0
    assert (b['source_segments'][~real] == 0).all()  # Filler rows.
    got.extend(tuple(int(x) for x in row if x) for row in b['source'][real])
  every = pairs.rows(np.arange(len(pairs)), 16, bos=1)['source']
  assert sorted(got) == sorted(tuple(int(x) for x in row if x)
                               for row in every)
