"""causal_lm: a GPT trained to predict the next token.

Rows are stream windows, or packed documents (`data.pack='segments'`,
`lm.data.rows`); the final evaluation reports loss, perplexity, word-level
perplexity and bits per byte of each whole evaluation split, read in sliding
windows.
"""

from __future__ import annotations

import numpy as np

from lm.data import rows as rows_lib
from lm.eval import metrics as metrics_lib
from lm.models import transformer
from lm.tasks import base


class CausalLM(base.Task):
  """A decoder-only language model."""

  name = 'causal_lm'
  starts_from = {'causal_lm': ''}
  generates = True
  hf_architecture = 'GPT2LMHeadModel'

  def build(self, *, rngs):
    return transformer.GPT(self.model_cfg, rngs=rngs)

  def batch_shapes(self) -> dict[str, tuple]:
    shapes = super().batch_shapes()
    if self.c.data.pack == 'segments':
      B, L = shapes['inputs'][0]
      shapes.update(segment_ids=((B, L), np.int32),
                    positions=((B, L), np.int32),
                    weights=((B, L), np.float32))
    return shapes

  def train_dataset(self):
    c = self.c
    if c.data.pack == 'segments':
      return iter(
          rows_lib.packed_dataset(rows_lib.process_documents(self.corpus),
                                  c.model.max_len, c.data.batch_size, c.seed,
                                  c.data.prefetch))
    return iter(
        rows_lib.train_dataset(self.corpus.train, c.model.max_len,
                               c.data.batch_size, c.seed, c.data.prefetch))

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    """This process's rows of the fixed validation sample."""
    c = self.c
    return rows_lib.eval_batches(self.corpus.val,
                                 c.model.max_len,
                                 c.data.batch_size,
                                 c.train.eval_batches,
                                 seed=c.seed + 1)

  def evaluate(self, trainer, params, batches) -> dict[str, float]:
    t = base.batch_sums(trainer, params, batches, 0)
    return {'eval/loss': t['nll'] / max(t['count'], 1.0)}

  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    """Loss, perplexity, word-level perplexity and bits per byte of each
    whole evaluation split (`evaluate_stream`)."""
    results = {}
    for split in ('validation', 'test'):
      if split in self.corpus.texts:
        results[split] = self.evaluate_stream(
            trainer, params, self.corpus.streams[split],
            ''.join(self.corpus.texts[split]),
            writer.sub_progress(f'eval {split}') if writer else None)
    return results

  def next_step(self, workdir: str) -> str:
    return f'sample: python -m lm.sample --workdir={workdir}'

  def evaluate_stream(self, trainer, params, stream, text: str,
                      progress=None) -> dict[str, float]:
    """Loss, perplexity, word-level perplexity and bits per byte of token
    `stream` (the tokens of `text`), read in windows of `eval.max_len`
    tokens (default model.max_len) `eval.stride` apart. With
    `eval.max_tokens`, only the first that many tokens, and only token loss
    and perplexity (the per-word and per-byte figures are defined over the
    whole text)."""
    return _evaluate_stream(trainer, params, stream, text, self.c, progress)


def _evaluate_stream(trainer, params, stream, text: str, c, progress=None
                     ) -> dict[str, float]:
  batch_size = c.eval.batch_size or c.data.batch_size
  rows = rows_lib.local_rows(batch_size)

  def nll_fn(inputs, targets, weights):
    local = {'inputs': inputs[rows], 'targets': targets[rows],
             'weights': weights[rows]}
    return trainer.nll_step(params, trainer.global_batch(local))

  eval_len = c.eval.max_len or c.model.max_len
  limited = 0 < c.eval.max_tokens < len(stream)
  totals = metrics_lib.sliding_window_nll(
      nll_fn, stream[:c.eval.max_tokens] if limited else stream,
      max_len=eval_len, stride=c.eval.stride or eval_len,
      batch_size=batch_size, progress=progress)
  results = (metrics_lib.summarize(totals) if limited else
             metrics_lib.summarize(
                 totals, words=metrics_lib.count_words(text),
                 num_bytes=metrics_lib.count_bytes(text)))
  results['tokens'] = totals.tokens
  return results
