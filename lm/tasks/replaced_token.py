"""replaced_token: ELECTRA's replaced-token detection (Clark et al., 2020).

The rows are masked_lm's. A small masked-LM generator fills the chosen
positions with sampled tokens, and the encoder tells every token of the
result original or replaced. The loss is the generator's masked-token
cross-entropy plus `optim.detection_weight` times the encoder's mean binary
cross-entropy; evaluations add the detector's loss and accuracy over every
token and the share it had to find replaced.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lm.models import heads
from lm.tasks import base
from lm.tasks import masked_lm


class Detection(NamedTuple):
  """What one batch gives the loss and the sums."""
  logits: Any  # [B, K, V] the generator's, at the chosen positions,
  targets: Any  # [B, K] their original ids,
  weights: Any  # [B, K] 1 where chosen.
  bce: Any  # [B, L] the discriminator's binary cross-entropy,
  correct: Any  # [B, L] 1 where it called original/replaced right,
  real: Any  # [B, L] the tokens it is scored on,
  replaced: Any  # [B, L] 1 where its input was replaced.


class ReplacedToken(masked_lm.MaskedLM):
  """The encoder as a discriminator beside a masked-LM generator."""

  name = 'replaced_token'
  starts_from = {'replaced_token': ''}
  hf_architecture = ''
  hf_refusal = ('a task=replaced_token (ELECTRA) run is exported through '
                'its fine-tune: export the task=classification run that '
                'starts from it')

  def build(self, *, rngs):
    return heads.ReplacedTokenDetector(self.model_cfg, rngs=rngs)

  def detect(self, model, batch, rng=None) -> Detection:
    """The generator's and the discriminator's outputs; the discriminator
    is scored on every token of a row with a chosen position (filler rows
    count nothing). The sample is drawn from `rng` (a fixed key when None:
    evaluations repeat)."""
    at_BxK = self.masked_at(batch)
    gather = lambda x: jnp.take_along_axis(x, at_BxK, axis=1)
    deterministic, rngs = self.dropout(rng)
    sample_key = (jax.random.PRNGKey(0) if rng is None
                  else jax.random.fold_in(rng, 1))
    generated_BxKxV, detect_BxL, replaced_BxL = model(
        batch['inputs'], originals_BxL=batch['targets'],
        predict_at_BxK=at_BxK, chosen_BxK=gather(batch['weights']),
        sample_key=sample_key, positions=batch.get('positions'),
        segment_ids_BxL=batch.get('segment_ids'),
        token_types_BxL=batch.get('token_types'),
        deterministic=deterministic, rngs=rngs)
    real_BxL = jnp.broadcast_to(
        (batch['weights'].sum(1, keepdims=True) > 0).astype(jnp.float32),
        detect_BxL.shape)
    if 'segment_ids' in batch:
      real_BxL = real_BxL * (batch['segment_ids'] > 0)
    bce_BxL = optax.sigmoid_binary_cross_entropy(detect_BxL, replaced_BxL)
    correct_BxL = ((detect_BxL > 0) == (replaced_BxL > 0)).astype(
        jnp.float32)
    return Detection(generated_BxKxV, gather(batch['targets']),
                     gather(batch['weights']), bce_BxL, correct_BxL,
                     real_BxL, replaced_BxL)

  def scored(self, model, batch, rng=None) -> base.Scored:
    """The generator's logits, targets and weights."""
    return base.Scored(*self.detect(model, batch, rng)[:3])

  def loss(self, model, batch, rng=None):
    """The generator's cross-entropy plus optim.detection_weight times the
    discriminator's mean binary cross-entropy."""
    d = self.detect(model, batch, rng)
    detection = (d.bce * d.real).sum() / jnp.maximum(d.real.sum(), 1.0)
    return (base.cross_entropy(d.logits, d.targets, d.weights) +
            self.c.optim.detection_weight * detection)

  def sums(self, model, batch) -> dict:
    """The generator's sums, and the discriminator's summed binary
    cross-entropy ('detection_nll'), correct calls, tokens and replaced
    tokens among them."""
    d = self.detect(model, batch)
    return {**base.sums_of(d.logits, d.targets, d.weights),
            'detection_nll': (d.bce * d.real).sum(),
            'detection_correct': (d.correct * d.real).sum(),
            'detection_count': d.real.sum(),
            'replaced': (d.replaced * d.real).sum()}

  def figures(self, t: dict[str, float]) -> dict[str, float]:
    """The generator's figures, then the discriminator's mean loss,
    accuracy and the share of replaced tokens."""
    n = max(t['detection_count'], 1.0)
    return {**super().figures(t),
            'detection_loss': t['detection_nll'] / n,
            'detection_accuracy': t['detection_correct'] / n,
            'replaced': t['replaced'] / n}
