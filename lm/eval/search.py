"""Decoding a sequence-to-sequence model: beam search, and greedy or sampled
decoding, each one `lax.while_loop` of static shape under `jax.jit`.

Both drive a `step_fn(tokens_N, position, cache) -> (logits_NxV, cache)`
that runs the decoder on one token per row against its self-attention KV
cache; the caller closes it over what is fixed per source (the encoder's
output, the cross-attention keys and values), so nothing of the source is
recomputed or copied per step.

Beam search (as in GNMT, Wu et al. 2016, fairseq and t5x) keeps W live and
W finished hypotheses per source. Each step expands the live ones and keeps
the 2W best candidates, so that even if W of them end (EOS) the W best
continuing ones survive: ended hypotheses never starve the live ones. An
EOS candidate finishes only if it ranks among the W best (fairseq's rule),
so a beam of 1 is greedy decoding. A
source is done when W hypotheses have finished and no live one can still
beat the worst of them; the loop stops when every source is done or at
`max_len`.

Length penalty (scores are log-probabilities divided by it, so alpha > 0
favours longer outputs), with len the generated tokens including EOS:
  'gnmt': ((5 + len) / 6) ** alpha   (Wu et al., 2016; t5x, Flax examples)
  'hf':   len ** alpha               (Hugging Face `length_penalty`)

Shapes: S sources, W beams, N = S * W decoder rows (W consecutive rows per
source), V vocabulary, T output length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PENALTIES = ('gnmt', 'hf')
NEG_INF = -1.0e9  # A score no hypothesis reaches; finite, so x - NEG_INF works.


def length_penalty(length, alpha: float, kind: str = 'gnmt'):
  """The divisor of a hypothesis' log-probability at `length` tokens."""
  length = jnp.asarray(length, jnp.float32)
  if kind == 'gnmt':
    return ((5.0 + length) / 6.0) ** alpha
  if kind == 'hf':
    return length ** alpha
  raise ValueError(f'unknown length penalty {kind!r}; choose from '
                   f'{", ".join(PENALTIES)}')


def _log_probs(logits_NxV, banned):
  """Log-softmax in float32 with the `banned` ids (padding, BOS, ids past
  the tokenizer's vocabulary) never chosen."""
  logits_NxV = logits_NxV.astype(jnp.float32)
  if banned is not None:
    logits_NxV = jnp.where(banned, NEG_INF, logits_NxV)
  return jax.nn.log_softmax(logits_NxV, axis=-1)


def banned_ids(vocab_size: int, ids=(), valid_vocab: int | None = None):
  """A [V] mask, True at `ids` and at ids from `valid_vocab` up."""
  mask = jnp.zeros((vocab_size,), bool)
  for i in ids:
    mask = mask.at[i].set(True)
  if valid_vocab is not None:
    mask |= jnp.arange(vocab_size) >= valid_vocab
  return mask


def _gather_beams(tree, parents_SxW, batch_axis: int = 0):
  """Each source's rows `parents` (of its W), for every array of `tree`
  whose `batch_axis` holds S * W rows (a KV cache)."""
  S, W = parents_SxW.shape
  rows = (jnp.arange(S)[:, None] * W + parents_SxW).reshape(-1)
  # 'clip' (indices are in range): XLA's gather without a bounds select.
  return jax.tree.map(
      lambda x: jnp.take(x, rows, axis=batch_axis, mode='clip'), tree)


def _no_early_eos(logp_NxV, i, eos: int, min_len: int):
  """EOS made impossible as token i + 1 while fewer than `min_len` tokens
  precede it (Hugging Face's min_new_tokens)."""
  if not min_len:
    return logp_NxV
  # A select over the rows (fused with its neighbours), not a scatter into
  # one column (which XLA's CPU backend runs as a copy of the whole array).
  early_V = (jnp.arange(logp_NxV.shape[-1]) == eos) & (i < min_len)
  return jnp.where(early_V, NEG_INF, logp_NxV)


def _no_repeat(logp_NxV, tokens_NxT, i, n: int):
  """Each row's ids that would repeat one of its n-grams made impossible
  as token i + 1 (Hugging Face's no_repeat_ngram_size); `tokens_NxT` holds
  the row's tokens at positions 0..i (the start token first), later ones
  ignored."""
  if not n:
    return logp_NxV
  N, T = tokens_NxT.shape
  # Where an n-gram starting at j has its first n - 1 tokens equal to the
  # row's last n - 1 (positions i - n + 2 .. i), its last token is banned.
  j = jnp.arange(T)
  match_NxT = (j + n - 1 <= i)[None] & (i + 2 >= n)
  for k in range(n - 1):
    last_N = jax.lax.dynamic_index_in_dim(tokens_NxT, i - n + 2 + k, 1,
                                          keepdims=False)
    window_NxT = jnp.roll(tokens_NxT, -k, axis=1)
    match_NxT &= window_NxT == last_N[:, None]
  banned_NxT = jnp.roll(tokens_NxT, -(n - 1), axis=1)
  rows_NxT = jnp.broadcast_to(jnp.arange(N)[:, None], (N, T))
  hit_NxV = jnp.zeros(logp_NxV.shape, jnp.int32).at[rows_NxT, banned_NxT].max(
      match_NxT.astype(jnp.int32))
  return jnp.where(hit_NxV > 0, NEG_INF, logp_NxV)


def beam_search(step_fn, cache, *, num_sources: int, beam_size: int,
                max_len: int, bos: int, eos: int, alpha: float = 0.0,
                penalty: str = 'gnmt', banned=None, cache_batch_axis: int = 0,
                reorder=None, min_len: int = 0, no_repeat_ngram: int = 0):
  """(tokens [S, W, T], scores [S, W]): each source's W best hypotheses,
  best first; tokens after EOS (and of unfinished hypotheses, cut at T) are
  0. `banned` is a [V] mask of ids never chosen; no hypothesis ends
  before `min_len` tokens (EOS not counted: Hugging Face's min_new_tokens),
  and with `no_repeat_ngram` n > 0 none holds an n-gram twice (Hugging
  Face's no_repeat_ngram_size; the start token counts as a token).

  After each step, row w of source s continues the hypothesis of its row
  parents[s, w]: `reorder(cache, parents_SxW)` makes the cache follow
  (`lm.models.transformer.reorder_beams` for a cache whose rows stay put);
  by default every array of `cache` holds the S * W rows on axis
  `cache_batch_axis`, and they are copied to their new places."""
  S, W, T = num_sources, beam_size, max_len

  def penalty_at(n):
    return length_penalty(n, alpha, penalty)

  seqs = jnp.zeros((S, W, T + 1), jnp.int32).at[:, :, 0].set(bos)
  # Only beam 0 is live at first: W copies of one hypothesis would fill the
  # beam with duplicates.
  live_logp = jnp.full((S, W), NEG_INF).at[:, 0].set(0.0)
  finished = jnp.zeros((S, W, T + 1), jnp.int32)
  finished_scores = jnp.full((S, W), NEG_INF)

  def done(carry):
    """Per source: W finished, none of which a live one can still beat."""
    _, _, live_logp, _, finished_scores, _ = carry
    # Log-probabilities only fall as a hypothesis grows, and the penalty
    # (alpha >= 0) is largest at T: this bounds any live one's final score.
    best_live = live_logp.max(-1) / penalty_at(T)
    return finished_scores.min(-1) >= best_live

  def cond(carry):
    i = carry[0]
    return (i < T) & ~jnp.all(done(carry))

  def body(carry):
    i, seqs, live_logp, cache, finished_scores, finished = carry
    logits_NxV, cache = step_fn(seqs[:, :, i].reshape(S * W), i, cache)
    V = logits_NxV.shape[-1]
    logp_NxV = _no_early_eos(_log_probs(logits_NxV, banned), i, eos, min_len)
    logp_SxWxV = _no_repeat(logp_NxV, seqs.reshape(S * W, -1), i,
                            no_repeat_ngram).reshape(S, W, V)
    # The 2W best of a source's W * V candidates are among the 2W best of
    # each beam: two small top-ks instead of one over W * V sums (the same
    # picks, ties to the lower beam, then the lower id, as one top-k).
    C = min(2 * W, V)  # Candidates per beam.
    top_NxC, token_NxC = _top_k(logp_SxWxV.reshape(S * W, V), C)
    top_SxWxC, token_SxWxC = top_NxC.reshape(S, W, C), token_NxC.reshape(
        S, W, C)
    candidates_SxWC = (live_logp[:, :, None] + top_SxWxC).reshape(S, W * C)
    logp_Sx2W, index_Sx2W = jax.lax.top_k(candidates_SxWC, 2 * W)
    beam_Sx2W = index_Sx2W // C
    token_Sx2W = jnp.take_along_axis(token_SxWxC.reshape(S, W * C),
                                     index_Sx2W, axis=1)
    grown = jnp.take_along_axis(seqs, beam_Sx2W[:, :, None], axis=1)
    grown = grown.at[:, :, i + 1].set(token_Sx2W)
    # As fairseq: only an EOS among the W best candidates ends a hypothesis
    # (one ranked lower would not have been in a beam of W), so beam 1 is
    # greedy decoding.
    ended = (token_Sx2W == eos) & (jnp.arange(2 * W) < W)
    # The W best of the finished so far and those ending now.
    scores = jnp.concatenate(
        [finished_scores, jnp.where(ended, logp_Sx2W / penalty_at(i + 1),
                                    NEG_INF)], axis=1)
    finished_scores, keep = jax.lax.top_k(scores, W)
    finished = jnp.take_along_axis(
        jnp.concatenate([finished, grown], axis=1), keep[:, :, None], axis=1)
    # The W best continuing ones, and their rows of the cache.
    live_logp, keep = jax.lax.top_k(jnp.where(ended, NEG_INF, logp_Sx2W), W)
    seqs = jnp.take_along_axis(grown, keep[:, :, None], axis=1)
    parents_SxW = jnp.take_along_axis(beam_Sx2W, keep, 1)
    cache = (_gather_beams(cache, parents_SxW, cache_batch_axis)
             if reorder is None else reorder(cache, parents_SxW))
    return i + 1, seqs, live_logp, cache, finished_scores, finished

  carry = (jnp.zeros((), jnp.int32), seqs, live_logp, cache, finished_scores,
           finished)
  i, seqs, live_logp, _, finished_scores, finished = jax.lax.while_loop(
      cond, body, carry)
  # Hypotheses still live (cut at T, or unable to win) compete as they are.
  scores = jnp.concatenate([finished_scores, live_logp / penalty_at(i)], 1)
  scores, keep = jax.lax.top_k(scores, W)
  tokens = jnp.take_along_axis(jnp.concatenate([finished, seqs], axis=1),
                               keep[:, :, None], axis=1)
  return tokens[:, :, 1:], scores


def _top_k(x_NxV, k: int):
  """`jax.lax.top_k` of each row (the same values and ids, ties to the lower
  id), through blocks of the row: the k blocks with the largest maxima hold
  the row's k largest, so one top-k over block maxima and one over those
  k blocks' entries replace a top-k over the whole row (several times
  faster on CPU for a vocabulary of thousands)."""
  N, V = x_NxV.shape
  block = next((b for b in (64, 128, 32, 50, 40) if V % b == 0), 0)
  if not block or V // block < 4 * k:
    return jax.lax.top_k(x_NxV, k)
  blocks_NxBxC = x_NxV.reshape(N, V // block, block)
  # In id order, so that equal values keep the lower id first.
  which_NxK = jnp.sort(jax.lax.top_k(blocks_NxBxC.max(-1), k)[1], axis=-1)
  entries_NxKC = jnp.take_along_axis(blocks_NxBxC, which_NxK[:, :, None],
                                     axis=1).reshape(N, k * block)
  values_NxK, at_NxK = jax.lax.top_k(entries_NxKC, k)
  ids_NxK = (jnp.take_along_axis(which_NxK, at_NxK // block, axis=1) * block
             + at_NxK % block)
  return values_NxK, ids_NxK


def _argmax(x_NxV):
  """Each row's first index of its largest value, as argmax, in two plain
  reductions (XLA's CPU backend runs argmax's paired reduction 2-3x slower)."""
  V = x_NxV.shape[-1]
  first_N = jnp.where(x_NxV == x_NxV.max(-1, keepdims=True),
                      jnp.arange(V, dtype=jnp.int32), V).min(-1)
  return jnp.minimum(first_N, V - 1)  # A row of NaN: V - 1.


def _top_p(logits_NxV, top_p):
  """Logits outside the smallest set of ids whose probability reaches
  `top_p` (nucleus sampling) set to NEG_INF; top_p >= 1 keeps all."""
  sorted_NxV = jnp.sort(logits_NxV, axis=-1)[:, ::-1]
  cumulative_NxV = jnp.cumsum(jax.nn.softmax(sorted_NxV, axis=-1), axis=-1)
  # The last id kept is the first at which the mass reaches top_p.
  count_N = jnp.minimum((cumulative_NxV < top_p).sum(-1), logits_NxV.shape[-1]
                        - 1)
  cutoff_Nx1 = jnp.take_along_axis(sorted_NxV, count_N[:, None], axis=-1)
  return jnp.where((logits_NxV < cutoff_Nx1) & (top_p < 1.0), NEG_INF,
                   logits_NxV)


def sample(step_fn, cache, *, num_rows: int, max_len: int, bos: int, eos: int,
           rng, temperature=0.0, top_k: int = 0, top_p=1.0, banned=None,
           min_len: int = 0, no_repeat_ngram: int = 0):
  """Tokens [N, T]: greedy (temperature 0) or sampled (temperature, then
  top-k, then top-p) decoding of N rows; 0 after each row's EOS. Stops when
  every row has ended or at `max_len`; EOS comes after `min_len` tokens at
  the earliest, and no row repeats an n-gram of `no_repeat_ngram` > 0."""
  N, T = num_rows, max_len

  def body(carry):
    i, tokens, cache, ended = carry
    logits_NxV, cache = step_fn(tokens[:, i], i, cache)
    logits_NxV = _no_repeat(
        _no_early_eos(_log_probs(logits_NxV, banned), i, eos, min_len),
        tokens, i, no_repeat_ngram)
    if top_k:
      kth_Nx1 = jax.lax.top_k(logits_NxV, top_k)[0][:, -1:]
      logits_NxV = jnp.where(logits_NxV < kth_Nx1, NEG_INF, logits_NxV)
    logits_NxV = _top_p(logits_NxV, top_p)
    drawn = jax.random.categorical(jax.random.fold_in(rng, i), logits_NxV /
                                   jnp.maximum(temperature, 1e-6), axis=-1)
    token = jnp.where(temperature > 0, drawn, _argmax(logits_NxV))
    token = jnp.where(ended, 0, token).astype(jnp.int32)
    return i + 1, tokens.at[:, i + 1].set(token), cache, ended | (token == eos)

  carry = (jnp.zeros((), jnp.int32),
           jnp.zeros((N, T + 1), jnp.int32).at[:, 0].set(bos), cache,
           jnp.zeros((N,), bool))
  _, tokens, _, _ = jax.lax.while_loop(
      lambda c: (c[0] < T) & ~jnp.all(c[3]), body, carry)
  return tokens[:, 1:]
