"""span_corruption: T5's pretraining objective for an encoder-decoder.

The corpus is read as one token stream (a text corpus, and with
`data.extra_name` another corpus's training texts after it: a summarization
corpus gives its documents, never its summaries). Each row is a window of
the stream corrupted as T5 does (`lm.data.spans`: `data.noise_density` of
the tokens in spans of mean length `data.mean_span`, each replaced by a
sentinel in the encoder's input; the decoder predicts the spans), drawn and
corrupted from (seed, row), so a resumed run sees the same rows. The loss is
the cross-entropy of the targets (label smoothing as `optim.label_smoothing`).
Evaluations and the final evaluation score a fixed corrupted sample of the
validation and test streams: loss and token accuracy of the spans.
Summarization and translation runs start from it (`init_from`).
"""

from __future__ import annotations

import grain
import numpy as np

from lm.data import rows as rows_lib
from lm.data import spans
from lm.tasks import base
from lm.tasks import translation


class SpanCorruption(translation.Translation):
  """An encoder-decoder pretrained by span corruption."""

  name = 'span_corruption'
  specials = 't5'  # Sentinel tokens in the vocabulary.
  starts_from = {'span_corruption': ''}
  translates = False
  hf_imports = ()

  def rows(self, split: str, seed: int) -> spans.SpanRows:
    c, ids = self.c, self.tok.special_ids
    return spans.SpanRows(
        self.corpus.streams[split], c.data.batch_size, c.model.max_len,
        c.data.target_len, c.data.noise_density, c.data.mean_span,
        ids['sentinel'], ids['eos'], ids['bos'], seed)

  def batch_shapes(self) -> dict[str, tuple]:
    B, L = self.c.data.batch_size, self.c.model.max_len
    T = self.c.data.target_len
    return {'source': ((B, L), np.int32),
            'source_segments': ((B, L), np.int32),
            'inputs': ((B, T), np.int32), 'targets': ((B, T), np.int32),
            'weights': ((B, T), np.float32)}

  def notes(self) -> list[str]:
    r = self.rows('train', self.c.seed)
    noise, count = spans.counts(r.raw, r.density, r.mean_span)
    return [f'span corruption: windows of {r.raw} tokens, {noise} of them '
            f'noise in {count} spans; {len(r.stream):,} training tokens']

  def train_dataset(self):
    ds = grain.MapDataset.source(self.rows('train', self.c.seed))
    return iter(ds.to_iter_dataset(rows_lib.read_options(
        self.c.data.prefetch)))

  def _sample(self, split: str, batches: int) -> list[dict[str, np.ndarray]]:
    """`batches` global batches of `split`, the same at every call (seed
    2^31 + the run's: not the training rows' generator)."""
    rows = self.rows(split, 2**31 + self.c.seed)
    B = self.c.data.batch_size
    local = rows_lib.local_rows(B)
    return [{k: v[local] for k, v in rows.rows(range(i * B, (i + 1) * B))
             .items()} for i in range(batches)]

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    return self._sample('validation', self.c.train.eval_batches)

  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    """Span loss and accuracy of a larger fixed sample (4x the evaluations')
    of the validation and test streams."""
    del writer
    out = {}
    for split in ('validation', 'test'):
      if split in self.corpus.texts:
        t = base.batch_sums(trainer, params,
                            self._sample(split, 4 * self.c.train.eval_batches),
                            0)
        out[split] = self.figures(t)
    return out

  def next_step(self, workdir: str) -> str:
    return ('fine-tune: python -m lm.main --config=configs/scitldr.py:cpu '
            f'--config.init_from={workdir} --workdir=RUN')
