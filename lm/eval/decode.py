"""Autoregressive sampling with a KV cache, in jitted loops of static shape.

A segment is one prefill of the context (padded to the model's full length,
so one compilation serves every prompt) and a `lax.while_loop` that samples a
token and runs the model on it against the cache. When the cache is full, the
next segment re-reads the last half-context and continues (context shifting),
so generation can run past the model's context length without recompiling.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from lm.models import layers
from lm.models import transformer


def sample_logits(rng, logits_BxV, temperature, top_k: int,
                  valid_vocab: int | None = None):
  """A token per row: greedy when temperature is 0, else top-k sampling.

  Ids from `valid_vocab` up (padding of the vocabulary) are never chosen.
  """
  if valid_vocab is not None and valid_vocab < logits_BxV.shape[-1]:
    logits_BxV = jnp.where(jnp.arange(logits_BxV.shape[-1]) < valid_vocab,
                           logits_BxV, -jnp.inf)
  if top_k:
    kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
  sampled_B = jax.random.categorical(
      rng, logits_BxV / jnp.maximum(temperature, 1e-6), axis=-1)
  return jnp.where(temperature > 0, sampled_B,
                   jnp.argmax(logits_BxV, axis=-1)).astype(jnp.int32)


class Sampler:
  """Generates continuations from a model's graph definition and parameters."""

  def __init__(self,
               graphdef,
               cfg: layers.TransformerConfig,
               valid_vocab: int | None = None):
    """`valid_vocab`: ids at or above it (vocabulary padding) are never drawn."""
    self.graphdef = graphdef
    self.cfg = cfg
    self.valid_vocab = valid_vocab or cfg.vocab_size

  def _model(self, params) -> transformer.GPT:
    return nnx.merge(self.graphdef, params)

  @functools.partial(jax.jit, static_argnums=0)
  def prefill(self, params, tokens_BxL, length):
    """Cache over the context and the logits after its `length` tokens."""
    model = self._model(params)
    cache = model.init_cache(tokens_BxL.shape[0])
    logits_BxLxV, cache = model(tokens_BxL, positions=jnp.arange(
        tokens_BxL.shape[1]), cache=cache)
    return cache, logits_BxLxV[:, length - 1]

  @functools.partial(jax.jit, static_argnums=(0, 7))
  def decode(self, params, cache, logits_BxV, start, num_tokens, rng,
             top_k: int, temperature):
    """Samples `num_tokens` tokens; token i is fed back at position start+i.

    The last token is sampled but not fed back, so a context of length L
    leaves room for max_len - L + 1 new tokens.
    """
    model = self._model(params)
    token_B = sample_logits(jax.random.fold_in(rng, 0), logits_BxV,
                            temperature, top_k, self.valid_vocab)
    out_BxN = jnp.zeros((logits_BxV.shape[0], self.cfg.max_len + 1),
                        jnp.int32).at[:, 0].set(token_B)

    def body(carry):
      i, cache, token_B, out_BxN = carry
      logits_Bx1xV, cache = model(token_B[:, None],
                                  positions=(start + i - 1)[None],
                                  cache=cache)
      token_B = sample_logits(jax.random.fold_in(rng, i), logits_Bx1xV[:, 0],
                              temperature, top_k, self.valid_vocab)
      return i + 1, cache, token_B, out_BxN.at[:, i].set(token_B)

    carry = (jnp.ones((), jnp.int32), cache, token_B, out_BxN)
    *_, out_BxN = jax.lax.while_loop(lambda c: c[0] < num_tokens, body, carry)
    return out_BxN

  def generate(self, params, prompt: np.ndarray, max_new_tokens: int, *,
               num_samples: int = 1, temperature: float = 1.0,
               top_k: int = 0, seed: int = 0) -> np.ndarray:
    """[num_samples, max_new_tokens] token ids continuing the `prompt` ids."""
    T = self.cfg.max_len
    rows = np.tile(np.asarray(prompt, np.int32), (num_samples, 1))
    new = np.zeros((num_samples, 0), np.int32)
    rng = jax.random.PRNGKey(seed)
    context = rows[:, -T:]
    while new.shape[1] < max_new_tokens:
      length = context.shape[1]
      padded = np.zeros((num_samples, T), np.int32)
      padded[:, :length] = context
      cache, logits_BxV = self.prefill(params, padded, length)
      count = min(max_new_tokens - new.shape[1], T - length + 1)
      rng, step_rng = jax.random.split(rng)
      out = np.asarray(self.decode(params, cache, logits_BxV, length, count,
                                   step_rng, top_k, temperature))[:, :count]
      new = np.concatenate([new, out], axis=1)
      context = np.concatenate([rows, new], axis=1)[:, -(T // 2 or 1):]
    return new
