"""classification: labelled sentences through an encoder and a classifier.

Rows are `[CLS] sentence [SEP]` (`lm.data.encoder_rows.Sentences`), padded
and optionally batched by length; every evaluation scores the whole
selection split: the training sentences held out for it
(`data.selection_split='heldout'`, `lm.data.selection`), or with
'validation' dev itself. The best step is the one of best selection
accuracy; the final evaluation reports accuracy, F1 and the confusion matrix
of each labelled split (dev scored once there, for the chosen step).
"""

from __future__ import annotations

import jax
import numpy as np

from lm.data import encoder_rows
from lm.data import rows as rows_lib
from lm.data import selection as selection_lib
from lm.eval import metrics as metrics_lib
from lm.models import heads
from lm.tasks import base


class Classification(base.Task):
  """A sentence classifier on a (pretrained) encoder."""

  name = 'classification'
  specials = 'bert'
  best_metric = ('eval/accuracy', 'max')
  starts_from = {'classification': '', 'masked_lm': 'encoder',
                 'replaced_token': 'encoder'}
  body = 'encoder'
  classifies = True
  hf_architecture = 'BertForSequenceClassification'
  hf_data_name = 'sst2'  # The labelled corpus an import is evaluated on.

  def __init__(self, c, corpus=None):
    super().__init__(c, corpus)
    self._sentences = {}

  def build(self, *, rngs):
    return heads.SequenceClassifier(self.model_cfg, self.c.model.num_classes,
                                    rngs=rngs)

  @property
  def seq_len(self) -> int:
    return self.c.data.seq_len or self.c.model.max_len

  def batch_shapes(self) -> dict[str, tuple]:
    """Sentences and their labels."""
    B, L = self.c.data.batch_size, self.seq_len
    return {'inputs': ((B, L), np.int32), 'segment_ids': ((B, L), np.int32),
            'targets': ((B,), np.int32), 'weights': ((B,), np.float32)}

  def sentences(self, split: str) -> encoder_rows.Sentences:
    """A split's sentences as encoder rows (encoded once)."""
    if split not in self._sentences:
      self._sentences[split] = encoder_rows.Sentences.encode(
          self.tok, self.corpus.texts[split], self.corpus.labels[split],
          self.seq_len)
    return self._sentences[split]

  @property
  def selection(self) -> str:
    """The split that chooses the best step."""
    return 'selection' if 'selection' in self.corpus.texts else 'validation'

  def notes(self) -> list[str]:
    """The selection split, and how many sentences of each split are cut
    to fit."""
    items = self.corpus.texts.get('selection', [])
    held = ([f'model selection on {len(items):,} training items (phrases, '
             f'{np.mean([len(t.split()) for t in items]):.1f} words on '
             f'average) of {selection_lib.sentences(items):,} whole training '
             'sentences held out of training (data.selection_fraction='
             f'{self.c.data.selection_fraction}); dev is scored once, at the '
             'end'] if self.selection == 'selection' else [])
    return held + [line for split in self.corpus.texts
                   if (line := self.sentences(split).truncation_note(
                       split, self.seq_len))]

  def train_dataset(self):
    c = self.c
    return iter(encoder_rows.sentence_train_dataset(
        self.sentences('train'), c.data.batch_size, c.seed,
        c.data.prefetch, c.data.length_bucket, self.tok,
        c.data.token_dropout))

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    """The whole selection split."""
    c = self.c
    return list(encoder_rows.sentence_batches(
        self.sentences(self.selection), c.eval.batch_size or
        c.data.batch_size))

  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    return {split: self.classify_split(trainer, params, split)
            for split in ('selection', 'validation', 'test')
            if split in self.corpus.texts and
            (self.sentences(split).labels >= 0).all()}

  def predict(self, trainer, params, sentences) -> np.ndarray:
    """Class probabilities [N, C] of encoded sentences."""
    batch_size = self.c.eval.batch_size or self.c.data.batch_size
    rows, probs = rows_lib.local_rows(batch_size), []
    for batch in encoder_rows.sentence_batches(sentences, batch_size):
      local = trainer.global_batch({k: v[rows] for k, v in batch.items()})
      logits = np.asarray(jax.device_get(trainer.logits_step(params, local)))
      probs.append(np.asarray(jax.nn.softmax(logits))[batch['weights'] > 0])
    return np.concatenate(probs)

  def classify_split(self, trainer, params, split: str) -> dict:
    """Accuracy, F1, confusion matrix and truncation count of a split."""
    s = self.sentences(split)
    predictions = self.predict(trainer, params, s).argmax(-1)
    return {**metrics_lib.classification(s.labels, predictions,
                                         self.c.model.num_classes),
            'truncated': s.truncated}

  def next_step(self, workdir: str) -> str:
    return f'evaluate: python -m lm.finetune evaluate --workdir={workdir}'
