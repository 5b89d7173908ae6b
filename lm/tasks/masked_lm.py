"""masked_lm: BERT's masked-token pretraining of a bidirectional encoder.

Rows are masked `[CLS] ... [SEP]` windows of the token stream
(`lm.data.encoder_rows`); only the chosen positions go through the output
layer. The final evaluation masks every token of each whole split once,
with a fixed seed, and reports masked-token loss, perplexity and accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lm.data import encoder_rows
from lm.data import masking
from lm.eval import metrics as metrics_lib
from lm.models import heads
from lm.tasks import base


class MaskedLM(base.Task):
  """A bidirectional encoder under BERT's masked-LM head."""

  name = 'masked_lm'
  specials = 'bert'
  starts_from = {'masked_lm': ''}
  body = 'encoder'
  hf_architecture = 'BertForMaskedLM'

  def build(self, *, rngs):
    return heads.MaskedLM(self.model_cfg, rngs=rngs)

  def masked_at(self, batch):
    """The positions [B, K] that may be chosen, at most
    round(mask_rate x (L - 2)) a row (lm.data.masking), every chosen one
    first."""
    # A row's [CLS] and [SEP] are never candidates.
    k = masking.chosen_count(batch['targets'].shape[1] - 2,
                             self.c.data.mask_rate)
    return jax.lax.top_k(batch['weights'], k)[1]

  def scored(self, model, batch, rng=None) -> base.Scored:
    """Only the chosen positions go through the output layer."""
    at_BxK = self.masked_at(batch)
    gather = lambda x: jnp.take_along_axis(x, at_BxK, axis=1)
    return base.Scored(
        self.forward(model, batch, rng, predict_at_BxK=at_BxK),
        gather(batch['targets']), gather(batch['weights']))

  def batch_shapes(self) -> dict[str, tuple]:
    shapes = super().batch_shapes()
    shapes['weights'] = (shapes['inputs'][0], np.float32)  # Chosen ones.
    return shapes

  def train_dataset(self):
    c = self.c
    return iter(encoder_rows.mlm_train_dataset(
        self.corpus.train, c.model.max_len, c.data.batch_size, c.seed,
        self.tok, c.data.mask_rate, c.data.prefetch, c.data.whole_word_mask))

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    c = self.c
    ds = encoder_rows.mlm_dataset(self.corpus.val, c.model.max_len,
                                  c.data.batch_size, c.seed + 1, self.tok,
                                  c.data.mask_rate, shard=False,
                                  whole_word=c.data.whole_word_mask)
    return [ds[i] for i in range(c.train.eval_batches)]

  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    """Masked-token figures of each whole split, every token in one row."""
    c, out = self.c, {}
    batch_size = c.eval.batch_size or c.data.batch_size
    for split in ('validation', 'test'):
      if split not in self.corpus.texts:
        continue
      stream = self.corpus.streams[split]
      if 0 < c.eval.max_tokens < len(stream):
        stream = stream[:c.eval.max_tokens]
      t = base.batch_sums(trainer, params, encoder_rows.mlm_tiles(
          stream, c.model.max_len, batch_size, self.tok, c.data.mask_rate,
          seed=c.seed + 2, whole_word=c.data.whole_word_mask), batch_size)
      summary = metrics_lib.summarize(metrics_lib.Totals(t['nll'],
                                                         int(t['count'])))
      figures = self.figures(t)
      del figures['loss']
      out[split] = {**summary, 'accuracy': figures.pop('accuracy'),
                    'masked_tokens': int(t['count']), **figures}
    return out

  def next_step(self, workdir: str) -> str:
    return ('fine-tune: python -m lm.finetune '
            '--config=configs/sst2.py:VARIANT '
            f'--config.init_from={workdir} --workdir=DIR')
