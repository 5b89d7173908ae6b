"""Heads on the encoder's hidden states (BERT, Devlin et al., 2019).

`MLMHead`: BERT's masked-token prediction: a dense + GELU + LayerNorm
transform, then logits over the vocabulary through the token embedding (tied)
plus an output bias. `Classifier`: the pooled `[CLS]` state (dense + tanh, as
BERT's pooler; or, with `pooling='mean'`, the same on the mean of the real
tokens' states) with dropout, then a dense layer to the classes. The body is
`lm.models.transformer.GPT` with `causal=False`; its `hidden(...)` feeds these heads.
`MaskedLM` and `SequenceClassifier` put body and head together (the body's
parameters under 'encoder', so a pretrained encoder moves between them).

`ReplacedTokenDetector` is ELECTRA (Clark et al., 2020): a small masked-LM
`generator` (the encoder's depth, `generator_fraction` of its width and
heads) fills the masked positions with tokens sampled from its predictions,
and the encoder, the discriminator, tells each token of the result original
or replaced through `DetectorHead`. Every position teaches the encoder, not
only the masked ones; the fine-tune keeps the encoder and drops the rest.
"""

from __future__ import annotations

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp

from lm.models import layers
from lm.models import transformer


class MLMHead(nnx.Module):
  """Hidden states [B, L, D] -> vocabulary logits [B, L, V] (float32)."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs):
    d = cfg.embed_dim
    self.transform = layers.Dense((d,), (d,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.norm = layers.LayerNorm(cfg, rngs=rngs)
    self.bias = layers.param(rngs, nnx.initializers.zeros, (cfg.vocab_size,),
                             ('vocab',), cfg.param_dtype)

  def __call__(self, hidden_BxLxD, wte_VxD):
    x_BxLxD = self.norm(layers.gelu(self.transform(hidden_BxLxD)))
    logits_BxLxV = jnp.einsum('BLD,VD->BLV', x_BxLxD,
                              wte_VxD.astype(x_BxLxD.dtype))
    return (logits_BxLxV + self.bias[...]).astype(jnp.float32)


class Classifier(nnx.Module):
  """Hidden states [B, L, D] -> class logits [B, C] from position 0 ([CLS]),
  or from the mean over the real tokens (`real_BxL` nonzero) with 'mean'."""

  def __init__(self,
               cfg: layers.TransformerConfig,
               num_classes: int,
               *,
               rngs: nnx.Rngs,
               dropout: float = 0.1):
    d = cfg.embed_dim
    self.pooler = layers.Dense((d,), (d,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.dropout = nnx.Dropout(dropout)
    self.pooling = cfg.pooling
    self.out = layers.Dense((d,), (num_classes,), ('embed', None),
                            cfg,
                            rngs=rngs)

  def __call__(self, hidden_BxLxD, real_BxL=None, deterministic=True,
               rngs=None):
    if self.pooling == 'mean':
      weight_BxL = (jnp.ones(hidden_BxLxD.shape[:2]) if real_BxL is None
                    else (real_BxL != 0).astype(jnp.float32))
      total_BxD = jnp.einsum('BLD,BL->BD', hidden_BxLxD.astype(jnp.float32),
                             weight_BxL)
      count_Bx1 = jnp.maximum(weight_BxL.sum(axis=1, keepdims=True), 1.0)
      summary_BxD = (total_BxD / count_Bx1).astype(hidden_BxLxD.dtype)
    else:
      summary_BxD = hidden_BxLxD[:, 0]
    pooled_BxD = jnp.tanh(self.pooler(summary_BxD))
    pooled_BxD = self.dropout(pooled_BxD, deterministic=deterministic,
                              rngs=rngs)
    return self.out(pooled_BxD).astype(jnp.float32)


class MaskedLM(nnx.Module):
  """BERT for pretraining: the bidirectional encoder and its MLM head."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs):
    self.encoder = transformer.GPT(cfg, rngs=rngs)
    self.head = MLMHead(cfg, rngs=rngs)

  def __call__(self, tokens_BxL, *, deterministic=True, rngs=None,
               predict_at_BxK=None, **inputs):
    """Vocabulary logits [B, L, V] at every position (or [B, K, V] at the
    positions `predict_at_BxK` only: the masked ones, a seventh of the head's
    work in pretraining), and None (no cache)."""
    hidden_BxLxD, _ = self.encoder.hidden(
        tokens_BxL, deterministic=deterministic, rngs=rngs, **inputs)
    if predict_at_BxK is not None:
      hidden_BxLxD = jnp.take_along_axis(hidden_BxLxD,
                                         predict_at_BxK[..., None], axis=1)
    return self.head(hidden_BxLxD, self.encoder.wte[...]), None


class SequenceClassifier(nnx.Module):
  """BERT for classification: the encoder and a pooled classifier."""

  def __init__(self, cfg: layers.TransformerConfig, num_classes: int, *,
               rngs: nnx.Rngs):
    self.encoder = transformer.GPT(cfg, rngs=rngs)
    self.head = Classifier(cfg, num_classes, rngs=rngs,
                           dropout=cfg.dropout_at('residual'))

  def __call__(self, tokens_BxL, *, deterministic=True, rngs=None, **inputs):
    """Class logits [B, C] of each row, and None (no cache)."""
    hidden_BxLxD, _ = self.encoder.hidden(
        tokens_BxL, deterministic=deterministic, rngs=rngs, **inputs)
    return self.head(hidden_BxLxD, inputs.get('segment_ids_BxL'),
                     deterministic, rngs), None


class DetectorHead(nnx.Module):
  """Hidden states [B, L, D] -> replaced-token logits [B, L] (float32):
  ELECTRA's discriminator head, a dense + GELU layer and one logit."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs):
    d = cfg.embed_dim
    self.transform = layers.Dense((d,), (d,), ('embed', 'mlp'), cfg, rngs=rngs)
    self.out = layers.Dense((d,), (1,), ('embed', None), cfg, rngs=rngs)

  def __call__(self, hidden_BxLxD):
    x_BxLxD = layers.gelu(self.transform(hidden_BxLxD))
    return self.out(x_BxLxD)[..., 0].astype(jnp.float32)


def generator_config(cfg: layers.TransformerConfig,
                     fraction: float) -> layers.TransformerConfig:
  """ELECTRA's generator: the encoder's depth and head width, `fraction` of
  its heads (at least one) and so of its width and MLP; no dropout."""
  heads = max(1, round(cfg.num_heads * fraction))
  width = heads * cfg.head_dim
  return dataclasses.replace(
      cfg, num_heads=heads, num_kv_heads=0, embed_dim=width,
      mlp_dim=max(1, cfg.mlp_dim * width // cfg.embed_dim), dropout=0.0)


class ReplacedTokenDetector(nnx.Module):
  """ELECTRA for pretraining: a masked-LM generator and the encoder as a
  discriminator of replaced tokens."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs):
    self.encoder = transformer.GPT(cfg, rngs=rngs)
    self.head = DetectorHead(cfg, rngs=rngs)
    self.generator = MaskedLM(generator_config(cfg, cfg.generator_fraction),
                              rngs=rngs)

  def __call__(self, tokens_BxL, *, originals_BxL, predict_at_BxK,
               chosen_BxK, sample_key, deterministic=True, rngs=None,
               **inputs):
    """(generator logits [B, K, V] at the masked positions `predict_at_BxK`,
    replaced-token logits [B, L], replaced [B, L] (1.0 where the
    discriminator's input differs from `originals_BxL`)). The generator
    reads the masked `tokens_BxL`; at each chosen position (`chosen_BxK`
    nonzero) the discriminator reads a token sampled from the generator's
    distribution there (no gradient flows through the sample)."""
    tokens_BxL = jnp.asarray(tokens_BxL)
    generated_BxKxV, _ = self.generator(
        tokens_BxL, predict_at_BxK=predict_at_BxK, **inputs)
    sampled_BxK = jax.random.categorical(
        sample_key, jax.lax.stop_gradient(generated_BxKxV))
    kept_BxK = jnp.take_along_axis(tokens_BxL, predict_at_BxK, axis=1)
    sampled_BxK = jnp.where(chosen_BxK > 0, sampled_BxK, kept_BxK)
    rows_Bx1 = jnp.arange(tokens_BxL.shape[0])[:, None]
    corrupted_BxL = tokens_BxL.at[rows_Bx1, predict_at_BxK].set(
        sampled_BxK.astype(tokens_BxL.dtype))
    hidden_BxLxD, _ = self.encoder.hidden(
        corrupted_BxL, deterministic=deterministic, rngs=rngs, **inputs)
    replaced_BxL = (corrupted_BxL != originals_BxL).astype(jnp.float32)
    return generated_BxKxV, self.head(hidden_BxLxD), replaced_BxL
