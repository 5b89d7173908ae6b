"""Tests of lm.eval.search: beam search against exhaustive search, beam 1
against greedy on the encoder-decoder, finished hypotheses kept, and the
sampling filters."""

import dataclasses
import itertools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.eval import search
from lm.models import encoder_decoder
from lm.models import layers
from lm.models import transformer

PAD, BOS, EOS = 0, 1, 2


class PrefixModel:
  """A toy decoder whose next-token distribution depends on the whole
  prefix: its 'cache' holds each row's tokens so far, reordered with the
  beams as a KV cache is."""

  def __init__(self, vocab_size, max_len, seed=0, scale=2.0):
    self.V, self.T = vocab_size, max_len
    self.table = scale * jax.random.normal(jax.random.key(seed),
                                           (97, vocab_size))

  def _logits(self, prefix_NxT, i):
    weights = (jnp.arange(prefix_NxT.shape[1]) + 1) * 7
    h = jnp.where(jnp.arange(prefix_NxT.shape[1]) <= i, prefix_NxT * weights,
                  0).sum(-1) % 97
    return self.table[h]

  def step(self, tokens_N, i, cache_NxT):
    cache_NxT = cache_NxT.at[:, i].set(tokens_N)
    return self._logits(cache_NxT, i), cache_NxT

  def log_prob(self, hypothesis, banned):
    """Log-probability of BOS + hypothesis, token by token."""
    prefix = np.zeros((1, self.T + 1), np.int32)
    prefix[0, 0] = BOS
    total = 0.0
    for i, token in enumerate(hypothesis):
      logp = search._log_probs(self._logits(jnp.asarray(prefix), i), banned)  # pylint: disable=protected-access
      total += float(logp[0, token])
      prefix[0, i + 1] = token
    return total


def every_hypothesis(words, T):
  """Every output of at most T tokens: ended by EOS, or T tokens cut."""
  for n in range(T):
    for middle in itertools.product(words, repeat=n):
      yield (*middle, EOS)
  yield from itertools.product(words, repeat=T)


@pytest.mark.parametrize('penalty', search.PENALTIES)
@pytest.mark.parametrize('alpha', [0.0, 0.6, 1.0])
def test_a_beam_as_wide_as_every_hypothesis_finds_the_exhaustive_best(
    penalty, alpha):
  V, T = 5, 3
  model = PrefixModel(V, T, seed=3)
  banned = search.banned_ids(V, (PAD, BOS))
  hyps = list(every_hypothesis((EOS + 1, EOS + 2), T))
  # Each hypothesis' score: its log-probability over the length penalty.
  scores = {h: model.log_prob(h, banned) / float(
      search.length_penalty(len(h), alpha, penalty)) for h in hyps}
  W = len(hyps)
  tokens, got = jax.jit(lambda: search.beam_search(
      model.step, jnp.zeros((W, T + 1), jnp.int32), num_sources=1,
      beam_size=W, max_len=T, bos=BOS, eos=EOS, alpha=alpha, penalty=penalty,
      banned=banned))()
  found = [tuple(t for t in row if t) for row in np.asarray(tokens[0])]
  want = sorted(scores, key=scores.get, reverse=True)
  assert found[0] == want[0]
  assert float(got[0, 0]) == pytest.approx(scores[want[0]], abs=1e-5)
  # Every hypothesis is found once, with its score, best first.
  assert sorted(found) == sorted(hyps)
  np.testing.assert_allclose(np.asarray(got[0]),
                             [scores[h] for h in found], atol=1e-5)
  assert np.all(np.diff(np.asarray(got[0])) <= 0)


def test_narrow_beams_keep_finished_hypotheses_while_live_ones_go_on():
  V, T, W = 6, 4, 2
  model = PrefixModel(V, T, seed=1, scale=3.0)
  banned = search.banned_ids(V, (PAD, BOS))
  run = jax.jit(lambda s: search.beam_search(
      model.step, jnp.zeros((s * W, T + 1), jnp.int32), num_sources=s,
      beam_size=W, max_len=T, bos=BOS, eos=EOS, alpha=1.0, penalty='hf',
      banned=banned), static_argnums=0)
  tokens, scores = run(1)
  hyps = [tuple(t for t in row if t) for row in np.asarray(tokens[0])]
  for h, score in zip(hyps, np.asarray(scores[0])):
    assert score == pytest.approx(model.log_prob(h, banned) / len(h) ** 1.0,
                                  abs=1e-5)
  # The best of all hypotheses, searched exhaustively, is among them.
  every = {h: model.log_prob(h, banned) / len(h)
           for h in every_hypothesis(range(EOS + 1, V), T)}
  assert hyps[0] == max(every, key=every.get)
  # Two sources at once give each the same answer as alone.
  tokens2, scores2 = run(2)
  np.testing.assert_array_equal(np.asarray(tokens2[1]), np.asarray(tokens[0]))
  np.testing.assert_allclose(np.asarray(scores2[1]), np.asarray(scores[0]),
                             atol=1e-6)


def test_length_penalties():
  assert float(search.length_penalty(1, 0.6, 'gnmt')) == 1.0
  assert float(search.length_penalty(7, 1.0, 'gnmt')) == pytest.approx(2.0)
  assert float(search.length_penalty(4, 0.5, 'hf')) == pytest.approx(2.0)
  assert float(search.length_penalty(9, 0.0, 'hf')) == 1.0
  with pytest.raises(ValueError, match='unknown length penalty'):
    search.length_penalty(3, 1.0, 'fairseq')


CFG = layers.TransformerConfig(vocab_size=11, num_layers=2, num_heads=2,
                               embed_dim=16, mlp_dim=32, max_len=8)


def seq2seq_step(model, source, W):
  """The step function of `model` on `source` (W rows per source)."""
  segments = (source != PAD).astype(jnp.int32)
  caches = model.cross_caches(model.encode(source, segments))

  def step(tokens_N, i, cache):
    logits, cache = model.decode(tokens_N[:, None], positions=i[None],
                                 source_segment_ids_BxM=segments,
                                 cross_caches=caches, cache=cache)
    return logits[:, 0], cache

  return step, model.init_cache(source.shape[0] * W)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_beam_size_1_equals_greedy_on_the_encoder_decoder(scan_layers):
  model = encoder_decoder.EncoderDecoder(
      dataclasses.replace(CFG, scan_layers=scan_layers), rngs=nnx.Rngs(0))
  source = jax.random.randint(jax.random.key(1), (3, 6), 3, 11)
  banned = search.banned_ids(11, (PAD, BOS))

  @jax.jit
  def both(source):
    step, cache = seq2seq_step(model, source, 1)
    beam, _ = search.beam_search(step, cache, num_sources=3, beam_size=1,
                                 max_len=7, bos=BOS, eos=EOS, banned=banned,
                                 cache_batch_axis=1 if scan_layers else 0)
    greedy = search.sample(step, cache, num_rows=3, max_len=7, bos=BOS,
                           eos=EOS, rng=jax.random.key(0), banned=banned)
    return beam[:, 0], greedy

  beam, greedy = both(source)
  np.testing.assert_array_equal(np.asarray(beam), np.asarray(greedy))
  assert np.asarray(greedy).any()


def test_wider_beams_score_at_least_as_well_as_greedy():
  model = encoder_decoder.EncoderDecoder(CFG, rngs=nnx.Rngs(2))
  source = jax.random.randint(jax.random.key(3), (4, 6), 3, 11)
  banned = search.banned_ids(11, (PAD, BOS))

  def best(W):
    step, cache = seq2seq_step(model, source, W)
    return search.beam_search(step, cache, num_sources=4, beam_size=W,
                              max_len=7, bos=BOS, eos=EOS, banned=banned)[1]

  narrow, wide = jax.jit(lambda: (best(1)[:, 0], best(4)[:, 0]))()
  assert np.all(np.asarray(wide) >= np.asarray(narrow) - 1e-6)


@pytest.mark.parametrize('scan_layers,position,kv_heads', [
    (False, 'learned', 0), (True, 't5', 0), (False, 'alibi', 1),
    (True, 'rope', 2)])
def test_a_cache_that_never_moves_gives_what_copying_its_rows_gives(
    scan_layers, position, kv_heads):
  # Beam search over a cache read through its ancestry table
  # (init_cache(beams=W), transformer.reorder_beams) against one whose rows
  # are copied with the beams at every step.
  cfg = dataclasses.replace(CFG, max_len=16, scan_layers=scan_layers,
                            position=position, num_heads=4,
                            num_kv_heads=kv_heads)
  model = encoder_decoder.EncoderDecoder(cfg, rngs=nnx.Rngs(4))
  source = jax.random.randint(jax.random.key(5), (3, 6), 3, 11)
  banned = search.banned_ids(11, (PAD, BOS))

  def run(ancestors):
    step, cache = seq2seq_step(model, source, 3)
    if ancestors:
      cache = model.init_cache(9, 15, beams=3)
    return search.beam_search(
        step, cache, num_sources=3, beam_size=3, max_len=15, bos=BOS,
        eos=EOS, alpha=0.6, banned=banned,
        cache_batch_axis=transformer.cache_rows_axis(cfg),
        reorder=transformer.reorder_beams if ancestors else None)

  (tokens, scores), (want_tokens, want_scores) = jax.jit(
      lambda: (run(True), run(False)))()
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(want_tokens))
  np.testing.assert_allclose(np.asarray(scores), np.asarray(want_scores),
                             atol=1e-5)
  # Long hypotheses, and beams that changed parents on the way.
  assert (np.asarray(tokens)[:, :, 8:] != 0).any()


def test_reorder_beams_moves_only_the_ancestry():
  model = transformer.GPT(dataclasses.replace(CFG, scan_layers=True),
                          rngs=nnx.Rngs(0))
  cache = model.init_cache(6, 5, beams=3)
  assert cache['k'].shape == (2, 2, 2, 8, 15)  # [layers, S, G, K, T * W]
  assert cache['v'].shape == (2, 2, 2, 15, 8)
  cache['ancestors'] = jnp.broadcast_to(
      jnp.arange(3)[None, None, :, None], (2, 2, 3, 5))
  moved = transformer.reorder_beams(cache, jnp.array([[2, 2, 0], [1, 0, 0]]))
  np.testing.assert_array_equal(np.asarray(moved['ancestors'][1, :, :, 0]),
                                [[2, 2, 0], [1, 0, 0]])
  assert moved['k'] is cache['k']
  with pytest.raises(ValueError, match='not a multiple of 4 beams'):
    model.init_cache(6, 5, beams=4)


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_token():
  model = PrefixModel(7, 5, seed=4)
  cache = jnp.zeros((8, 6), jnp.int32)
  kw = dict(num_rows=8, max_len=5, bos=BOS, eos=EOS,
            banned=search.banned_ids(7, (PAD, BOS)))
  greedy = search.sample(model.step, cache, rng=jax.random.key(0), **kw)
  for filters in ({'top_k': 1}, {'top_p': 1e-6}):
    drawn = search.sample(model.step, cache, rng=jax.random.key(5),
                          temperature=1.0, **filters, **kw)
    np.testing.assert_array_equal(np.asarray(drawn), np.asarray(greedy))
  # Unfiltered sampling at a high temperature draws other tokens.
  hot = search.sample(model.step, cache, rng=jax.random.key(5),
                      temperature=5.0, **kw)
  assert (np.asarray(hot) != np.asarray(greedy)).any()
  # Nothing follows a row's EOS.
  for row in np.asarray(hot):
    ends = np.flatnonzero(row == EOS)
    assert not ends.size or not row[ends[0] + 1:].any()


def test_top_p_keeps_the_smallest_set_reaching_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))

  def kept(p):
    return np.asarray(search._top_p(logits, p)[0] > -1e8).tolist()  # pylint: disable=protected-access

  assert kept(0.5) == [True, False, False, False]
  assert kept(0.6) == [True, True, False, False]
  assert kept(0.9) == [True, True, True, False]  # 0.5 + 0.3 + 0.15 >= 0.9.
  assert kept(0.99) == [True, True, True, True]
  assert kept(1.0) == [True, True, True, True]


@pytest.mark.parametrize('V', [8000, 4096, 999])
def test_top_k_through_blocks_equals_lax_top_k_ties_included(V):
  x = jax.random.normal(jax.random.key(V), (16, V))
  # Rows of many equal values (ties across blocks), and a row of one value.
  x = x.at[8:].set(jnp.round(x[8:] * 2) / 2).at[15].set(1.0)
  for k in (1, 8):
    want = jax.lax.top_k(x, k)
    got = jax.jit(search._top_k, static_argnums=1)(x, k)  # pylint: disable=protected-access
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
