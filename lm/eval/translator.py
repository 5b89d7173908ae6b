"""Translating sentences with an encoder-decoder: text in, text out.

Sources are encoded to ids (`pieces EOS`, cut to `max_len`), padded into
batches of a fixed row count and a width from a few (`source_width`: the
batch's longest source rounded up to a power of two, so a handful of
programs serve every batch and short sources skip the padding), and decoded
by beam search or greedy/sampled decoding (`lm.eval.search`) inside one
jitted function: the encoder runs once per batch, each decoder layer's
cross-attention keys and values are computed once, and the decoder's
self-attention keeps a KV cache (beam search's never moves: each row reads
its hypothesis through an ancestry table, `attention.beam_attention`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from lm.eval import search
from lm.models import transformer


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to decode: beam search when beam_size > 1 (or temperature 0 and
  beam_size 1: greedy), else sampling."""
  beam_size: int = 4
  alpha: float = 0.6  # Length penalty exponent.
  penalty: str = 'gnmt'  # gnmt | hf (see lm.eval.search).
  max_len: int = 0  # Output tokens at most; 0: the model's max_len.
  min_len: int = 0  # Tokens before EOS at least (min_new_tokens); 0: any.
  no_repeat_ngram: int = 0  # > 0: no n-gram twice in an output.
  temperature: float = 0.0  # Sampling (beam_size 1): 0 is greedy.
  top_k: int = 0
  top_p: float = 1.0
  seed: int = 0


class Translations(NamedTuple):
  """What `Translator.translate` returns."""
  texts: list[str]
  seconds: float  # Decoding time, compilation of new shapes included.
  tokens: int  # Target pieces written, each hypothesis's EOS included.


def source_width(longest: int, max_len: int) -> int:
  """The encoder's width for a batch whose longest source (EOS included)
  has `longest` tokens: the next power of two from 16, at most max_len."""
  width = 16
  while width < longest:
    width *= 2
  return min(width, max_len)


def _written(ids_BxL: np.ndarray, eos: int) -> int:
  """Pieces the rows hold up to and with their first EOS (the whole row
  where there is none)."""
  is_eos_BxL = ids_BxL == eos
  ends_B = np.where(is_eos_BxL.any(axis=1), is_eos_BxL.argmax(axis=1) + 1,
                    ids_BxL.shape[1])
  return int(ends_B.sum())


class Translator:
  """Translates with a model's graph definition and parameters."""

  # Beam search's KV cache: rows stay put and read their hypotheses through
  # an ancestry table (True), or are copied with their beams every step
  # (False; for measurement).
  beam_ancestors = True

  def __init__(self, graphdef, cfg, tok, settings: Settings,
               batch_size: int = 32):
    self.graphdef, self.cfg, self.tok = graphdef, cfg, tok
    self.settings = settings
    self.batch_size = batch_size
    self._table = None  # (the weights' leaves, their output table).
    self.max_out = min(settings.max_len or cfg.max_len, cfg.max_len)
    ids = tok.special_ids
    self.bos, self.eos = ids['bos'], ids['eos']
    # The decoder's start token is never an output, unless it is EOS (BART).
    self.banned = search.banned_ids(
        cfg.vocab_size, (self.bos,) if self.bos != self.eos else (),
        tok.vocab_size)

  @functools.partial(jax.jit, static_argnums=0)
  def _output_table(self, params):
    return nnx.merge(self.graphdef, params).decoder.output_table_DxV()

  def output_table(self, params):
    """The decoder's output table transposed, [D, V] (see `GPT.__call__`),
    made once for each set of weights (66 MB for T5-small: a copy per batch
    cost a millisecond a decoding step)."""
    leaves = jax.tree.leaves(params)
    if not (self._table and len(leaves) == len(self._table[0]) and all(
        a is b for a, b in zip(leaves, self._table[0]))):
      self._table = (leaves, self._output_table(params))  # Holds the leaves.
    return self._table[1]

  @functools.partial(jax.jit, static_argnums=0)
  def _decode(self, params, head_DxV, source_BxM, rng):
    """[B, T] output ids of a batch of sources (0 after EOS)."""
    model = nnx.merge(self.graphdef, params)
    s = self.settings
    # Real tokens: up to each row's first EOS (id 0 is a piece, not padding).
    eos_BxM = (source_BxM == self.eos).astype(jnp.int32)
    segments_BxM = (jnp.cumsum(eos_BxM, axis=1) - eos_BxM == 0).astype(
        jnp.int32)
    W = s.beam_size
    caches = model.cross_caches(model.encode(source_BxM, segments_BxM))
    B = source_BxM.shape[0]

    def step(tokens_N, i, cache):
      logits, cache = model.decode(tokens_N[:, None], positions=i[None],
                                   source_segment_ids_BxM=segments_BxM,
                                   cross_caches=caches, cache=cache,
                                   head_DxV=head_DxV)
      return logits[:, 0], cache

    if W > 1:
      ancestors = self.beam_ancestors
      tokens, _ = search.beam_search(
          step, model.init_cache(B * W, self.max_out, W if ancestors else 1),
          num_sources=B, beam_size=W, max_len=self.max_out,
          bos=self.bos, eos=self.eos, alpha=s.alpha, penalty=s.penalty,
          banned=self.banned,
          cache_batch_axis=transformer.cache_rows_axis(self.cfg),
          reorder=transformer.reorder_beams if ancestors else None,
          min_len=s.min_len, no_repeat_ngram=s.no_repeat_ngram)
      return tokens[:, 0]
    cache = model.init_cache(B, self.max_out)
    return search.sample(step, cache, num_rows=B, max_len=self.max_out,
                         bos=self.bos, eos=self.eos, rng=rng,
                         temperature=s.temperature, top_k=s.top_k,
                         top_p=s.top_p, banned=self.banned,
                         min_len=s.min_len, no_repeat_ngram=s.no_repeat_ngram)

  def encode(self, texts: list[str]) -> np.ndarray:
    """[N, max_len] source rows: pieces, EOS, zeros."""
    M = self.cfg.max_len
    rows = np.zeros((len(texts), M), np.int32)
    for i, text in enumerate(texts):
      ids = self.tok.encode(text.strip())[:M - 1]
      rows[i, :len(ids) + 1] = np.append(ids, self.eos)
    return rows

  def decode_ids(self, ids) -> str:
    """Text of output ids, up to the first EOS."""
    ids = [int(i) for i in ids]
    if self.eos in ids:
      ids = ids[:ids.index(self.eos)]
    return self.tok.decode([i for i in ids if i])

  def decode_rows(self, params, rows_NxM: np.ndarray, rng) -> np.ndarray:
    """[N, T] output ids of at most batch_size source rows (pieces, EOS,
    zeros): padded to batch_size rows (filler rows are EOS alone) and cut
    to `source_width` columns, so a handful of programs serve every call."""
    real = len(rows_NxM)
    batch = np.zeros((self.batch_size, rows_NxM.shape[1]), np.int32)
    batch[:real] = rows_NxM
    batch[real:, 0] = self.eos
    # Every row holds its EOS (encode adds it; filler rows are EOS alone).
    longest = int((batch == self.eos).argmax(axis=1).max()) + 1
    batch = batch[:, :source_width(longest, batch.shape[1])]
    return np.asarray(self._decode(params, self.output_table(params), batch,
                                   rng))[:real]

  def translate(self, params, texts: list[str], progress=None
                ) -> Translations:
    """The translations of `texts`, the seconds decoding took and the target
    pieces it wrote (EOS included)."""
    rows = self.encode(texts)
    out, seconds, tokens = [], 0.0, 0
    rng = jax.random.key(self.settings.seed)
    for start in range(0, len(rows), self.batch_size):
      batch = rows[start:start + self.batch_size]
      real = len(batch)
      t = time.perf_counter()
      ids = self.decode_rows(params, batch, jax.random.fold_in(rng, start))
      seconds += time.perf_counter() - t
      out.extend(self.decode_ids(row) for row in ids)
      tokens += _written(ids, self.eos)
      if progress is not None:  # (sentences done, sentences in all).
        progress(start + real, len(rows))
    return Translations(out, seconds, tokens)
