"""Tests of lm.model: causality, KV-cache parity, logical axes, dtypes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lm import model as model_lib

CFG = model_lib.GPTConfig(vocab_size=37, num_layers=2, num_heads=4,
                          embed_dim=32, mlp_dim=64, max_len=16)


def make(cfg=CFG, seed=0):
  return model_lib.GPT(cfg, rngs=nnx.Rngs(seed))


def tokens(seed=0, batch=2, length=16, vocab=37):
  return jax.random.randint(jax.random.PRNGKey(seed), (batch, length), 0, vocab)


def test_logits_shape_and_dtype():
  logits, cache = make()(tokens())
  assert logits.shape == (2, 16, 37) and logits.dtype == jnp.float32
  assert cache is None


def test_initial_loss_is_near_uniform():
  model = make()
  logits, _ = model(tokens())
  probs = jax.nn.softmax(logits)
  # With 0.02-std init every token is about equally likely: loss ~ ln(V).
  np.testing.assert_allclose(probs, 1 / 37, atol=0.02)


@pytest.mark.parametrize('t', [0, 5, 15])
def test_changing_a_future_token_never_changes_earlier_logits(t):
  model = make()
  x = tokens()
  y = x.at[:, t].set((x[:, t] + 1) % 37)
  lx, _ = model(x)
  ly, _ = model(y)
  chex.assert_trees_all_equal(lx[:, :t], ly[:, :t])
  assert np.abs(np.asarray(lx[:, t:] - ly[:, t:])).max() > 1e-4


def test_packed_segments_never_attend_across_documents():
  model = make()
  a, b = tokens(1, 1, 6)[0], tokens(2, 1, 10)[0]
  row = jnp.concatenate([a, b])[None]
  segment_ids = jnp.array([[1] * 6 + [2] * 10])
  positions = jnp.array([list(range(6)) + list(range(10))])
  packed, _ = model(row, positions=positions, segment_ids_BxL=segment_ids)
  alone_a, _ = model(a[None])
  alone_b, _ = model(b[None])
  # Each document's logits are those it gets alone: nothing leaks across.
  chex.assert_trees_all_close(packed[0, :6], alone_a[0], atol=1e-5)
  chex.assert_trees_all_close(packed[0, 6:], alone_b[0], atol=1e-5)
  unmasked, _ = model(row, positions=positions)
  assert np.abs(np.asarray(unmasked[0, 6:] - alone_b[0])).max() > 1e-3


def test_kv_cache_decoding_matches_full_forward():
  model = make()
  x = tokens(length=CFG.max_len)
  full, _ = model(x)
  # Prefill the first 5 tokens, then feed the rest one at a time.
  cache = model.init_cache(2)
  pre, cache = model(x[:, :5], positions=jnp.arange(5), cache=cache)
  steps = [pre]
  for t in range(5, CFG.max_len):
    logits, cache = model(x[:, t:t + 1], positions=jnp.array([t]),
                          cache=cache)
    steps.append(logits)
  chex.assert_trees_all_close(jnp.concatenate(steps, axis=1), full,
                              atol=1e-5, rtol=1e-5)


def test_every_parameter_has_logical_axes_of_its_rank():
  _, params = nnx.split(make(), nnx.Param)
  specs = nnx.get_partition_spec(params)
  for (path, p), (_, spec) in zip(jax.tree.leaves_with_path(params),
                                  jax.tree.leaves_with_path(specs)):
    assert len(spec) == p.ndim, path
  names = {n for s in jax.tree.leaves(specs) for n in s if n}
  assert {'vocab', 'embed', 'heads', 'mlp'} <= names


def test_tied_head_uses_token_embedding():
  _, params = nnx.split(make(), nnx.Param)
  flat = nnx.to_pure_dict(params)
  assert 'wte' in flat and not any('head' in k for k in flat)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  cfg = model_lib.GPTConfig(**{**CFG.__dict__, 'dtype': 'bfloat16'})
  model = make(cfg)
  assert model.wte[...].dtype == jnp.float32
  logits, _ = model(tokens())
  assert logits.dtype == jnp.float32
  ref, _ = make()(tokens())
  np.testing.assert_allclose(logits, ref, atol=0.05)


def test_dropout_is_random_in_training_and_off_in_eval():
  cfg = model_lib.GPTConfig(**{**CFG.__dict__, 'dropout': 0.5})
  model = make(cfg)
  a, _ = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=1))
  b, _ = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=2))
  c, _ = model(tokens())
  d, _ = model(tokens())
  assert np.abs(np.asarray(a - b)).max() > 1e-3
  chex.assert_trees_all_equal(c, d)
