"""Tests of lm.eval.decode: sampling rules and cached generation."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from lm.eval import decode
from lm.models import layers
from lm.models import transformer

CFG = layers.TransformerConfig(
    vocab_size=23, num_layers=2, num_heads=2,
    embed_dim=16, mlp_dim=32, max_len=8)


def sampler_and_params(seed=0):
  graphdef, params = nnx.split(transformer.GPT(CFG, rngs=nnx.Rngs(seed)),
                               nnx.Param)
  return decode.Sampler(graphdef, CFG), nnx.to_pure_dict(params), graphdef


def greedy_without_cache(graphdef, params, prompt, n):
  """Reference: recompute the full (cropped) context for every token."""
  model = nnx.merge(graphdef, params)
  ids = list(prompt)
  for _ in range(n):
    context = jnp.asarray(ids[-CFG.max_len:])[None]
    logits, _ = model(context)
    ids.append(int(jnp.argmax(logits[0, -1])))
  return ids[len(prompt):]


def test_greedy_matches_uncached_recomputation_within_context():
  sampler, params, graphdef = sampler_and_params()
  prompt = np.array([1, 2, 3])
  got = sampler.generate(params, prompt, 6, temperature=0.0)
  assert got.tolist()[0] == greedy_without_cache(graphdef, params, prompt, 6)


def test_generation_runs_past_the_context_length():
  sampler, params, _ = sampler_and_params()
  out = sampler.generate(params, np.array([4] * 12), 30, num_samples=3,
                         temperature=1.0, seed=1)
  assert out.shape == (3, 30)
  assert out.min() >= 0 and out.max() < CFG.vocab_size
  assert len({tuple(r) for r in out.tolist()}) > 1  # Rows sample apart.


def test_sampling_is_reproducible_from_the_seed():
  sampler, params, _ = sampler_and_params()
  a = sampler.generate(params, np.array([1]), 10, seed=5)
  b = sampler.generate(params, np.array([1]), 10, seed=5)
  c = sampler.generate(params, np.array([1]), 10, seed=6)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_top_k_only_samples_the_k_likeliest():
  logits = jnp.tile(jnp.arange(10.0)[None], (2000, 1))
  tokens = decode.sample_logits(jax.random.PRNGKey(0), logits, 1.0, 3)
  assert set(np.asarray(tokens).tolist()) == {7, 8, 9}
  greedy = decode.sample_logits(jax.random.PRNGKey(0), logits, 0.0, 0)
  assert set(np.asarray(greedy).tolist()) == {9}


def greedy_with_context_shifting(graphdef, params, prompt, n):
  """Reference for the shift: a full context, then the last half of it."""
  model = nnx.merge(graphdef, params)
  ids, start = list(prompt), max(0, len(prompt) - CFG.max_len)
  for _ in range(n):
    if len(ids) - start > CFG.max_len:
      start = len(ids) - CFG.max_len // 2
    logits, _ = model(jnp.asarray(ids[start:])[None])
    ids.append(int(jnp.argmax(logits[0, -1])))
  return ids[len(prompt):]


def test_greedy_past_the_context_matches_a_shifting_reference():
  sampler, params, graphdef = sampler_and_params(seed=3)
  prompt = np.arange(11) % CFG.vocab_size
  got = sampler.generate(params, prompt, 20, temperature=0.0)
  assert got.tolist()[0] == greedy_with_context_shifting(graphdef, params,
                                                         prompt, 20)


def test_padded_vocabulary_ids_are_never_sampled():
  logits = jnp.zeros((500, 10)).at[:, 8:].set(5.0)
  tokens = decode.sample_logits(jax.random.PRNGKey(0), logits, 1.0, 0, 8)
  assert int(tokens.max()) < 8
  greedy = decode.sample_logits(jax.random.PRNGKey(0), logits, 0.0, 0, 8)
  assert int(greedy.max()) < 8
