"""Tests of lm.eval.metrics: word counts, summaries and sliding-window scoring."""

import math

from conftest import SHARED_DATA
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.eval import metrics

WIKITEXT2 = SHARED_DATA / 'wikitext-2'
WIKITEXT2_RAW = SHARED_DATA / 'wikitext-2-raw'


@pytest.mark.parametrize('text, count', [
    (' a b \n c \n', 5),
    (' ', 1),
    (' \n', 1),
    ('a b', 3),
    ('a\n\nb\n', 5),
    ('a\n\n', 3),
    ('', 0),
])
def test_count_words_adds_one_eos_per_line(text, count):
  assert metrics.count_words(text) == count


@pytest.mark.skipif(not WIKITEXT2.exists(), reason='no shared WikiText-2')
@pytest.mark.parametrize('split, count', [
    ('test', 245_569), ('valid', 217_646), ('train', 2_088_628)])
def test_count_words_matches_wikitext2(split, count):
  text = (WIKITEXT2 / f'wiki.{split}.tokens').read_text(encoding='utf-8')
  assert metrics.count_words(text) == count


@pytest.mark.skipif(not WIKITEXT2_RAW.exists(), reason='no shared raw files')
def test_raw_valid_has_the_tokenized_word_count():
  text = (WIKITEXT2_RAW / 'wiki.valid.raw').read_text(encoding='utf-8')
  assert metrics.count_words(text) == 217_646


def test_count_bytes_is_utf8():
  assert metrics.count_bytes('abc') == 3
  assert metrics.count_bytes('é€') == 5


def test_uniform_model_has_perplexity_vocab_size():
  vocab = 50
  totals = metrics.Totals(7 * math.log(vocab), 7)
  out = metrics.summarize(totals, words=7)  # Tokens are the words.
  assert out['loss'] == pytest.approx(math.log(vocab))
  assert out['perplexity'] == pytest.approx(vocab)
  assert out['word_perplexity'] == pytest.approx(vocab)
  assert 'bits_per_byte' not in out


def test_word_perplexity_and_bits_per_byte_of_known_cases():
  # Uniform over 256 byte values, one token a byte: 8 bits per byte.
  totals = metrics.Totals(10 * math.log(256), 10)
  out = metrics.summarize(totals, words=5, num_bytes=10)
  assert out['bits_per_byte'] == pytest.approx(8.0)
  assert out['word_perplexity'] == pytest.approx(256.0**2)


def test_totals_add_and_exp_overflow_gives_inf():
  totals = metrics.Totals(1.5, 2) + metrics.Totals(2.5, 3)
  assert totals == metrics.Totals(4.0, 5)
  out = metrics.summarize(metrics.Totals(1e6, 1), words=1)
  assert out['perplexity'] == math.inf and out['word_perplexity'] == math.inf
  with pytest.raises(ValueError, match='no tokens'):
    metrics.summarize(metrics.Totals())


class Recorder:
  """nll_fn = sum(weights * targets), recording what each call was given."""

  def __init__(self, batch_size, max_len):
    self.shape = (batch_size, max_len)
    self.scored = []  # (target, position in window) of each weighted target.

  def __call__(self, inputs_BxL, targets_BxL, weights_BxL):
    assert inputs_BxL.shape == targets_BxL.shape == weights_BxL.shape
    assert inputs_BxL.shape == self.shape
    assert inputs_BxL.dtype == targets_BxL.dtype == np.int32
    assert weights_BxL.dtype == np.float32
    assert set(np.unique(weights_BxL)) <= {0.0, 1.0}
    b, j = np.nonzero(weights_BxL)
    # The stream is arange, so each input is the token before its target.
    np.testing.assert_array_equal(inputs_BxL[b, j], targets_BxL[b, j] - 1)
    self.scored += list(zip(targets_BxL[b, j].tolist(), j.tolist()))
    return float((weights_BxL * targets_BxL).sum())


@pytest.mark.parametrize('length, max_len, stride, batch_size', [
    (101, 10, 10, 4),   # Tiling, one token over whole windows.
    (100, 10, 10, 3),   # Tiling, short final window.
    (57, 8, 1, 5),      # Stride 1: every later window scores one token.
    (57, 8, 3, 2),      # Stride not dividing max_len or the length.
    (64, 16, 5, 1),
    (6, 16, 4, 3),      # Shorter than one window: a single short window.
    (2, 4, 2, 2),       # The shortest stream.
    (17, 16, 16, 2),    # Exactly one full window.
])
def test_sliding_window_scores_every_target_once(length, max_len, stride,
                                                 batch_size):
  tokens = np.arange(length)
  nll_fn = Recorder(batch_size, max_len)
  calls = []
  totals = metrics.sliding_window_nll(
      nll_fn, tokens, max_len=max_len, stride=stride, batch_size=batch_size,
      progress=lambda done, total: calls.append((done, total)))
  assert totals.tokens == length - 1
  assert totals.nll == tokens[1:].sum()
  targets = sorted(t for t, _ in nll_fn.scored)
  assert targets == list(range(1, length))  # Each target once.
  for t, j in nll_fn.scored:
    # A target in the first window sees all before it; later ones see at
    # least max_len - stride + 1 tokens of context.
    assert j == t - 1 if t <= max_len else j >= max_len - stride
  total = metrics.num_windows(length, max_len, stride)
  assert calls[-1] == (total, total)
  assert len(calls) == -(-total // batch_size)


def test_stride_below_max_len_uses_more_context():
  def nll_fn(inputs_BxL, targets_BxL, weights_BxL):
    del inputs_BxL, targets_BxL
    # A toy model that is surer of a target the more context it has.
    return float((weights_BxL / (1.0 + np.arange(weights_BxL.shape[1]))).sum())

  tokens = np.zeros(200, np.int32)
  nll = {stride: metrics.sliding_window_nll(
      nll_fn, tokens, max_len=16, stride=stride, batch_size=4).nll
         for stride in (16, 8, 1)}
  assert nll[1] < nll[8] < nll[16]


def test_jitted_nll_fn_is_compiled_once():
  vocab, traces = 7, []

  @jax.jit
  def nll_fn(inputs_BxL, targets_BxL, weights_BxL):
    traces.append(inputs_BxL.shape)  # Runs only while tracing.
    logits_BxLxV = jnp.zeros(inputs_BxL.shape + (vocab,))  # Uniform model.
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV)
    nll_BxL = -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None],
                                   axis=-1)[..., 0]
    return (nll_BxL * weights_BxL).sum()

  tokens = np.random.default_rng(0).integers(0, vocab, 300)
  totals = metrics.sliding_window_nll(nll_fn, tokens, max_len=32, stride=12,
                                      batch_size=4)
  assert len(traces) == 1
  assert totals.tokens == 299
  out = metrics.summarize(totals)
  assert out['perplexity'] == pytest.approx(vocab, rel=1e-5)


@pytest.mark.parametrize('length, stride, message', [
    (10, 0, 'stride=0 must be between 1 and max_len=4'),
    (10, 5, 'stride=5 must be between 1 and max_len=4'),
    (1, 2, 'at least 2 tokens'),
])
def test_bad_arguments_give_one_line(length, stride, message):
  with pytest.raises(ValueError, match=message):
    metrics.sliding_window_nll(lambda *a: 0.0, np.arange(length), max_len=4,
                               stride=stride, batch_size=2)


def test_classification_metrics_of_a_known_case():
  labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
  predictions = np.array([0, 1, 0, 1, 1, 0, 1, 1])
  m = metrics.classification(labels, predictions, 2)
  assert m['confusion'] == [[2, 1], [1, 4]]
  assert m['accuracy'] == 6 / 8 and m['examples'] == 8
  assert m['f1'] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))  # Positive class.
  three = metrics.classification(np.array([0, 1, 2]), np.array([0, 1, 1]), 3)
  assert three['f1'] == pytest.approx((1 + 2 / 3 + 0) / 3)  # Macro.
