"""Tests of lm.models.heads on a bidirectional lm.models.transformer.GPT body (BERT-style)."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.models import heads
from lm.models import layers
from lm.models import transformer

CFG = layers.TransformerConfig(vocab_size=50,
                               num_layers=2,
                               num_heads=2,
                               embed_dim=32,
                               mlp_dim=64,
                               max_len=16,
                               causal=False,
                               type_vocab_size=2)
PAD, CLS, SEP = 0, 1, 2


class Encoder(nnx.Module):
  def __init__(self, rngs, cfg=CFG):
    self.body = transformer.GPT(cfg, rngs=rngs)
    self.mlm = heads.MLMHead(cfg, rngs=rngs)
    self.cls = heads.Classifier(cfg, 2, rngs=rngs, dropout=0.0)

  def __call__(self, tokens_BxL):
    segments_BxL = (tokens_BxL != PAD).astype(jnp.int32)  # Padding apart.
    hidden, _ = self.body.hidden(tokens_BxL, segment_ids_BxL=segments_BxL)
    return self.cls(hidden, segments_BxL), self.mlm(hidden, self.body.wte[...])


@pytest.mark.parametrize('pooling, position', [
    ('cls', 'learned'), ('mean', 'learned'),
    ('cls', 'rope')])  # configs/bert_wikitext2.py:cpu's positions.
def test_padding_never_changes_the_cls_output(pooling, position):
  enc = Encoder(nnx.Rngs(0), dataclasses.replace(CFG, pooling=pooling,
                                                 position=position))
  short = jnp.array([[CLS, 5, 6, 7, SEP]])
  padded = jnp.concatenate([short, jnp.full((1, 11), PAD)], axis=1)
  (c1, m1), (c2, m2) = enc(short), enc(padded)
  np.testing.assert_allclose(c1, c2, atol=1e-6)
  np.testing.assert_allclose(m1, m2[:, :5], atol=1e-5)
  assert m2.shape == (1, 16, 50) and c2.shape == (1, 2)


def test_mean_pooling_reads_the_mean_of_the_real_tokens():
  cfg = dataclasses.replace(CFG, pooling='mean')
  head = heads.Classifier(cfg, 2, rngs=nnx.Rngs(0), dropout=0.0)
  hidden_BxLxD = jnp.asarray(
      np.random.default_rng(0).normal(size=(2, 6, 32)), jnp.float32)
  real_BxL = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
  want_BxD = jnp.stack([hidden_BxLxD[0, :3].mean(0), hidden_BxLxD[1].mean(0)])
  want_BxC = head.out(jnp.tanh(head.pooler(want_BxD)))
  np.testing.assert_allclose(head(hidden_BxLxD, real_BxL), want_BxC,
                             atol=1e-5)
  cls = heads.Classifier(CFG, 2, rngs=nnx.Rngs(0), dropout=0.0)
  assert not np.allclose(cls(hidden_BxLxD, real_BxL), want_BxC, atol=1e-3)


def test_token_types_change_the_output():
  body = transformer.GPT(CFG, rngs=nnx.Rngs(0))
  tokens = jnp.array([[CLS, 5, SEP, 6, SEP]])
  a, _ = body.hidden(tokens)
  b, _ = body.hidden(tokens, token_types_BxL=jnp.array([[0, 0, 0, 1, 1]]))
  assert not np.allclose(a, b)


def test_the_classifier_overfits_a_tiny_batch():
  enc = Encoder(nnx.Rngs(1))
  rng = np.random.default_rng(0)
  tokens = np.full((8, 12), PAD)
  for i, n in enumerate(rng.integers(3, 10, 8)):
    tokens[i, :n + 2] = [CLS, *rng.integers(3, 50, n), SEP]
  tokens = jnp.asarray(tokens)
  labels = jnp.asarray(rng.integers(0, 2, 8))
  opt = nnx.Optimizer(enc, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(enc, opt):
    def loss_fn(enc):
      logits, _ = enc(tokens)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(enc)
    opt.update(enc, grads)
    return loss

  for _ in range(150):
    loss = step(enc, opt)
  logits, _ = enc(tokens)
  assert float(loss) < 0.05
  assert (jnp.argmax(logits, -1) == labels).all()


def test_the_generator_is_a_fraction_of_the_encoder():
  g = heads.generator_config(CFG, 0.5)
  assert (g.num_heads, g.embed_dim, g.mlp_dim, g.num_layers) == (1, 16, 32, 2)
  assert heads.generator_config(CFG, 0.1).num_heads == 1  # At least one.


def test_the_detector_reads_generator_samples_at_chosen_positions_only():
  model = heads.ReplacedTokenDetector(
      dataclasses.replace(CFG, generator_fraction=0.5), rngs=nnx.Rngs(0))
  assert model.generator.encoder.cfg.embed_dim == 16
  mask = 3
  originals_BxL = np.random.default_rng(0).integers(4, 50, (2, 8))
  at_BxK = np.array([[1, 2, 3], [4, 5, 6]])
  chosen_BxK = np.array([[1, 1, 0], [1, 0, 0]])
  originals_BxL[0, [1, 2]] = 7  # The generator will say 7 here ...
  originals_BxL[1, 4] = 9  # ... and here, replacing the 9.
  tokens_BxL = originals_BxL.copy()
  for b in range(2):
    tokens_BxL[b, at_BxK[b][chosen_BxK[b] > 0]] = mask
  # A generator sure of token 7 everywhere: its samples are 7.
  model.generator.head.bias[...] = jnp.zeros(50).at[7].set(100.0)
  generated_BxKxV, logits_BxL, replaced_BxL = model(
      jnp.asarray(tokens_BxL), originals_BxL=jnp.asarray(originals_BxL),
      predict_at_BxK=jnp.asarray(at_BxK),
      chosen_BxK=jnp.asarray(chosen_BxK),
      sample_key=jax.random.PRNGKey(0))
  assert generated_BxKxV.shape == (2, 3, 50) and logits_BxL.shape == (2, 8)
  expected = np.zeros((2, 8))
  expected[1, 4] = 1.0  # 7 where a 9 was; the 7s for 7s are originals.
  np.testing.assert_array_equal(replaced_BxL, expected)
  # The encoder reads the samples, not the [MASK]s: unmasking changes it.
  _, unmasked_BxL, _ = model(
      jnp.asarray(originals_BxL), originals_BxL=jnp.asarray(originals_BxL),
      predict_at_BxK=jnp.asarray(at_BxK), chosen_BxK=jnp.zeros((2, 3)),
      sample_key=jax.random.PRNGKey(0))
  np.testing.assert_allclose(unmasked_BxL[0], logits_BxL[0], rtol=1e-5)
  assert not np.allclose(unmasked_BxL[1], logits_BxL[1])
