"""Tests of lm.models.transformer: causality, KV-cache parity, logical axes,
dtypes."""

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.models import attention as attention_lib
from lm.models import layers
from lm.models import transformer

CFG = layers.TransformerConfig(
    vocab_size=37, num_layers=2, num_heads=4,
    embed_dim=32, mlp_dim=64, max_len=16)


def make(cfg=CFG, seed=0):
  return transformer.GPT(cfg, rngs=nnx.Rngs(seed))


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
  cfg = layers.TransformerConfig(**{**CFG.__dict__, 'dtype': 'bfloat16'})
  model = make(cfg)
  assert model.wte[...].dtype == jnp.float32
  logits, _ = model(tokens())
  assert logits.dtype == jnp.float32
  ref, _ = make()(tokens())
  np.testing.assert_allclose(logits, ref, atol=0.05)


def test_dropout_is_random_in_training_and_off_in_eval():
  cfg = layers.TransformerConfig(**{**CFG.__dict__, 'dropout': 0.5})
  model = make(cfg)
  a, _ = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=1))
  b, _ = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=2))
  c, _ = model(tokens())
  d, _ = model(tokens())
  assert np.abs(np.asarray(a - b)).max() > 1e-3
  chex.assert_trees_all_equal(c, d)


@pytest.mark.parametrize('site', ['embed', 'attention', 'residual', 'mlp'])
def test_each_dropout_site_alone_is_random_in_training(site):
  def outputs(sites):
    model = make(variant(dropout=0.5, dropout_sites=sites))
    return [model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=k))[0]
            for k in (1, 2)]
  a, b = outputs(site)
  assert np.abs(np.asarray(a - b)).max() > 1e-3
  # With no site switched on, a training call is the eval call.
  a, b = outputs('')
  chex.assert_trees_all_equal(a, b)
  chex.assert_trees_all_equal(a, make(variant(dropout=0.5))(tokens())[0])


VARIANTS = [
    dict(position='none'), dict(position='sinusoidal'),
    dict(position='rope'), dict(position='alibi'), dict(position='t5'),
    dict(position='t5', relative_buckets=8, relative_max_distance=6),
    dict(num_kv_heads=2), dict(num_kv_heads=1, position='rope'),
    dict(norm='rmsnorm'), dict(norm_position='post'),
    dict(activation='relu'), dict(activation='relu2'),
    dict(activation='swiglu'), dict(tie_embeddings=False),
    dict(qk_norm=True), dict(attention_window=4),
    dict(attention_impl='xla', num_kv_heads=2, position='alibi'),
    dict(use_bias=False), dict(scaled_init=False),
    dict(dropout=0.3, dropout_sites='embed,attention,residual,mlp'),
]


def variant(**kw):
  import dataclasses  # pylint: disable=g-import-not-at-top
  return dataclasses.replace(CFG, **kw)


def decode_one_by_one(model, x, cache):
  """Logits of feeding x one token at a time through the KV cache."""
  steps = []
  for t in range(x.shape[1]):
    out, cache = model(x[:, t:t + 1], positions=jnp.array([t]), cache=cache)
    steps.append(out)
  return jnp.concatenate(steps, 1)


@pytest.mark.parametrize('kw', VARIANTS, ids=lambda kw: str(kw))
def test_variant_shapes_causality_and_cache(kw):
  cfg = variant(**kw)
  model = make(cfg)
  x = tokens()
  logits, _ = model(x)
  assert logits.shape == (2, 16, 37) and np.isfinite(np.asarray(logits)).all()
  y = x.at[:, 9].set((x[:, 9] + 1) % 37)
  ly, _ = model(y)
  chex.assert_trees_all_equal(logits[:, :9], ly[:, :9])
  # Decoding one token at a time through the cache equals the full call.
  cache = model.init_cache(2)
  assert cache[0]['k'].shape == (2, cfg.kv_heads, 16, cfg.head_dim)
  chex.assert_trees_all_close(decode_one_by_one(model, x, cache), logits,
                              atol=1e-4)


def test_variants_change_the_parameters_they_should():
  params = lambda **kw: nnx.to_pure_dict(nnx.state(make(variant(**kw)),
                                                   nnx.Param))
  assert 'wpe' in params() and 'wpe' not in params(position='rope')
  assert params(num_kv_heads=1)['blocks'][0]['attn']['k']['kernel'].shape == (
      32, 1, 8)
  assert 'gate' in params(activation='swiglu')['blocks'][0]['mlp']
  assert 'bias' not in params(norm='rmsnorm')['ln_f']
  assert params(tie_embeddings=False)['head'].shape == (37, 32)
  # T5's table: one per model (shared by layers), [buckets, heads].
  assert params(position='t5')['relative'].shape == (32, 4)
  assert 'relative' not in params() and 'relative' not in params(
      position='t5')['blocks'][0]['attn']
  no_bias = params(use_bias=False)
  assert not [k for k in jax.tree_util.tree_flatten_with_path(no_bias)[0]
              if 'bias' in jax.tree_util.keystr(k[0])]
  # Depth-scaled init: residual projections std 0.02 / sqrt(2 * layers).
  for scaled, want in ((True, 0.01), (False, 0.02)):
    p = params(num_layers=2, embed_dim=256, num_heads=4, mlp_dim=1024,
               scaled_init=scaled)['blocks'][0]
    for kernel in (p['attn']['out']['kernel'], p['mlp']['down']['kernel']):
      np.testing.assert_allclose(np.std(kernel), want, rtol=0.05)
    np.testing.assert_allclose(np.std(p['mlp']['up']['kernel']), 0.02,
                               rtol=0.05)


def test_gqa_with_repeated_kv_heads_equals_mha():
  # G key/value heads shared by groups of query heads equal MHA whose K/V
  # kernels repeat each of the G heads for its group.
  gqa = make(variant(num_kv_heads=2))
  mha = make(CFG)
  g_state = nnx.state(gqa, nnx.Param)
  m_state = nnx.to_pure_dict(nnx.state(mha, nnx.Param))
  g_pure = nnx.to_pure_dict(g_state)
  for i in range(CFG.num_layers):
    for name in ('q', 'out'):
      m_state['blocks'][i]['attn'][name] = g_pure['blocks'][i]['attn'][name]
    for name in ('k', 'v'):
      src = g_pure['blocks'][i]['attn'][name]
      m_state['blocks'][i]['attn'][name] = {
          'kernel': jnp.repeat(src['kernel'], 2, axis=1),
          'bias': jnp.repeat(src['bias'], 2, axis=0)}
    for name in ('ln1', 'ln2', 'mlp'):
      m_state['blocks'][i][name] = g_pure['blocks'][i][name]
  for name in ('wte', 'wpe', 'ln_f'):
    m_state[name] = g_pure[name]
  nnx.update(mha, m_state)
  x = tokens()
  chex.assert_trees_all_close(gqa(x)[0], mha(x)[0], atol=1e-5)


@pytest.mark.parametrize('kw', [
    {}, dict(num_kv_heads=2), dict(num_kv_heads=1), dict(position='alibi'),
    dict(attention_window=5), dict(causal=False), dict(qk_norm=True),
    dict(position='t5'), dict(position='t5', causal=False)],
    ids=lambda kw: str(kw))
def test_dot_product_attention_equals_the_reference(kw):
  ref = make(variant(**kw))
  fused = make(variant(attention_impl='xla', **kw))
  nnx.update(fused, nnx.state(ref, nnx.Param))
  x = tokens()
  seg = jnp.array([[1] * 7 + [2] * 9, [1] * 16])
  pos = jnp.array([list(range(7)) + list(range(9)), list(range(16))])
  for extra in ({}, dict(positions=pos, segment_ids_BxL=seg)):
    chex.assert_trees_all_close(fused(x, **extra)[0], ref(x, **extra)[0],
                                atol=2e-5)


@pytest.mark.parametrize('kw', [
    dict(), dict(num_kv_heads=2, attention_window=40),
    dict(num_kv_heads=1, causal=False, position='rope')],
    ids=lambda kw: str(kw))
def test_splash_attention_equals_the_reference(kw):
  # The TPU kernel, run by the Pallas interpreter here: same logits and
  # gradients, packed segments included.
  ref = make(variant(max_len=128, num_layers=1, **kw))
  graphdef, params = nnx.split(ref, nnx.Param)
  splash_def, _ = nnx.split(make(variant(max_len=128, num_layers=1,
                                         attention_impl='splash', **kw)),
                            nnx.Param)
  x = tokens(length=128)
  seg = jnp.array([[1] * 50 + [2] * 78, [1] * 128])
  pos = jnp.array([list(range(50)) + list(range(78)), list(range(128))])

  def loss(graph, p):
    logits, _ = nnx.merge(graph, p)(x, positions=pos, segment_ids_BxL=seg)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits[:, :-1], x[:, 1:]).mean()
  want, want_grads = jax.value_and_grad(lambda p: loss(graphdef, p))(params)
  got, got_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(splash_def, p)))(params)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  chex.assert_trees_all_close(got_grads, want_grads, atol=2e-5)


def test_sliding_window_and_bidirectional_masks():
  mask = attention_lib.attention_mask(jnp.arange(6)[None],
                                      jnp.arange(6)[None],
                                      window=3)
  assert np.asarray(mask[0, 5]).tolist() == [False] * 3 + [True] * 3
  model = make(variant(attention_window=3))
  x = tokens()
  y = x.at[:, 2].set((x[:, 2] + 1) % 37)
  # Position 6 sees 4..6 only (and through layer 1, 2..6): 2 layers reach 2.
  lx, ly = model(x)[0], model(y)[0]
  chex.assert_trees_all_equal(lx[:, 7:], ly[:, 7:])
  both = make(variant(causal=False))
  assert np.abs(np.asarray(both(x)[0][:, 0] - both(y)[0][:, 0])).max() > 1e-4


@pytest.mark.parametrize('kw', [dict(scan_layers=True), dict(remat='full'),
                                dict(remat='dots'),
                                dict(scan_layers=True, remat='dots')],
                         ids=lambda kw: str(kw))
def test_scan_and_remat_give_the_same_loss_and_gradients(kw):
  graphdef, params = nnx.split(make(CFG), nnx.Param)
  other_def, _ = nnx.split(make(variant(**kw)), nnx.Param)
  x = tokens()
  to_other = lambda p: p
  to_plain = lambda g: g
  if kw.get('scan_layers'):  # The same weights, stacked over the layers.
    to_other = lambda p: nnx.State(
        transformer.stack_layers(nnx.to_pure_dict(p)))
    to_plain = transformer.unstack_layers

  def loss(graph, p):
    logits, _ = nnx.merge(graph, p)(x[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, x[:, 1:]).mean()
  want, want_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(graphdef, p)))(params)
  got, got_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(other_def, p)))(to_other(params))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  chex.assert_trees_all_close(to_plain(nnx.to_pure_dict(got_grads)),
                              nnx.to_pure_dict(want_grads), atol=1e-6)


def test_scanned_stack_is_one_traced_block_of_stacked_parameters():
  cfg = variant(scan_layers=True, num_layers=4, dropout=0.1)
  graphdef, params = nnx.split(make(cfg), nnx.Param)
  # One array per parameter, layers first, whose logical axes say so.
  kernel = params['blocks']['mlp']['up']['kernel']
  assert kernel[...].shape == (4, 32, 64)
  assert kernel.get_metadata()['out_sharding'] == (None, 'embed', 'mlp')
  jaxpr = str(jax.make_jaxpr(
      lambda p: nnx.merge(graphdef, p)(tokens())[0])(params))
  assert 'scan[' in jaxpr and jaxpr.count('erf') == 1  # One block's GELU.
  model = nnx.merge(graphdef, params)
  a = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=1))[0]
  b = model(tokens(), deterministic=False, rngs=nnx.Rngs(dropout=2))[0]
  assert np.isfinite(np.asarray(a)).all() and not np.allclose(a, b)
  # Decoding through a cache stacked over the layers equals the full call.
  x = tokens()
  full = model(x)[0]
  cache = model.init_cache(2)
  assert cache['k'].shape == (4, 2, 4, 16, 8)
  chex.assert_trees_all_close(decode_one_by_one(model, x, cache), full,
                              atol=1e-4)


def test_stack_and_unstack_layers_round_trip():
  params = nnx.to_pure_dict(nnx.state(make(), nnx.Param))
  stacked = transformer.stack_layers(params)
  assert stacked['blocks']['attn']['q']['kernel'].shape == (2, 32, 4, 8)
  chex.assert_trees_all_equal(transformer.unstack_layers(stacked), params)
