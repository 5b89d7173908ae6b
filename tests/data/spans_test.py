"""Tests of lm.data.spans: T5's span corruption, its rates and span lengths,
lossless inputs plus targets, ordered sentinels, and rows fixed by index."""

import numpy as np
import pytest

from lm.data import corpus as corpus_lib
from lm.data import spans

SENTINEL, EOS = 1000, 2


def _restore(inputs, targets):
  """The raw tokens from inputs and targets: each sentinel in the inputs
  replaced by the tokens after it in the targets."""
  filled, spans_of, k = [], {}, None
  for t in targets[:-1]:
    if t >= SENTINEL:
      k = t
      spans_of[k] = []
    else:
      spans_of[k].append(t)
  for t in inputs[:-1]:
    filled.extend(spans_of[t] if t >= SENTINEL else [t])
  return np.asarray(filled)


def test_noise_density_and_span_lengths_match_the_config_on_a_large_sample():
  rng = np.random.default_rng(0)
  masks = [spans.noise_mask(512, 0.15, 3.0, rng) for _ in range(400)]
  assert abs(np.mean([m.mean() for m in masks]) - 0.15) < 0.002
  lengths = []
  for m in masks:
    starts = np.flatnonzero(m & ~np.r_[False, m[:-1]])
    ends = np.flatnonzero(m & ~np.r_[m[1:], False])
    lengths.extend(ends - starts + 1)
    assert not m[0]  # A kept span comes first.
  assert abs(np.mean(lengths) - 3.0) < 0.05
  assert min(lengths) >= 1


@pytest.mark.parametrize('length,density,mean', [
    (20, 0.15, 3.0), (97, 0.5, 1.0), (300, 0.15, 8.0), (5, 0.3, 3.0)])
def test_every_token_is_recoverable_and_sentinels_are_in_order(
    length, density, mean):
  rng = np.random.default_rng(length)
  tokens = rng.integers(3, 900, length).astype(np.int32)
  for _ in range(20):
    mask = spans.noise_mask(length, density, mean, rng)
    inputs, targets = spans.corrupt(tokens, mask, SENTINEL, EOS)
    assert inputs[-1] == EOS and targets[-1] == EOS
    np.testing.assert_array_equal(_restore(inputs, targets), tokens)
    noise, count = spans.counts(length, density, mean)
    assert mask.sum() == noise
    sentinels_in = inputs[inputs >= SENTINEL]
    np.testing.assert_array_equal(sentinels_in, SENTINEL + np.arange(count))
    np.testing.assert_array_equal(targets[targets >= SENTINEL], sentinels_in)
    assert len(inputs) == spans.input_length(length, density, mean)
    assert len(targets) == spans.target_length(length, density, mean)


def test_raw_length_is_the_longest_window_that_fits():
  n = spans.raw_length(256, 0.15, 3.0)
  assert spans.input_length(n, 0.15, 3.0) <= 256
  assert spans.input_length(n + 1, 0.15, 3.0) > 256


def _rows(**kw):
  stream = np.random.default_rng(1).integers(3, 900, 5000).astype(np.int32)
  args = dict(stream=stream, batch_size=4, max_len=64, target_len=20,
              density=0.15, mean_span=3.0, sentinel=SENTINEL, eos=EOS, bos=1,
              seed=7)
  return spans.SpanRows(**{**args, **kw})


def test_rows_are_a_function_of_their_index_and_seed():
  a, b = _rows(), _rows()
  for i in (0, 3, 12345):
    for k, v in a[i].items():
      np.testing.assert_array_equal(v, b[i][k])
  assert not np.array_equal(a[0]['source'], a[1]['source'])
  assert not np.array_equal(a[0]['source'], _rows(seed=8)[0]['source'])
  batch = a[0]
  # Decoder inputs are the targets shifted right after BOS, where weighted.
  w = batch['weights'].astype(bool)
  np.testing.assert_array_equal(batch['inputs'][:, 0], 1)
  np.testing.assert_array_equal(batch['inputs'][:, 1:][w[:, 1:]],
                                batch['targets'][:, :-1][w[:, 1:]])
  assert (batch['source_segments'].sum(1) ==
          spans.input_length(a.raw, 0.15, 3.0)).all()


def test_a_decoder_too_narrow_for_the_spans_is_a_data_error():
  with pytest.raises(corpus_lib.DataError, match='set data.target_len to at '
                     'least 14'):
    _rows(target_len=10)
