"""What each training task reads and how it is scored (`config.task`).

One training loop (`lm.run`) trains every task; a `Task` gives it the rows
to train on, the fixed evaluation sample scored during training, the metric
that picks the best step, and the final evaluation of whole splits:

- causal_lm: stream windows or packed documents (`lm.data`); loss,
  perplexity, word perplexity and bits per byte of each split.
- masked_lm: masked `[CLS] ... [SEP]` stream rows (`lm.encoder_data`);
  masked-token loss, perplexity and accuracy of each split, every token in
  one row, masked with a fixed seed.
- replaced_token (ELECTRA): the same rows; the generator's masked-token
  figures, and the discriminator's loss and accuracy over every token (and
  the share it had to find replaced).
- classification: labelled sentences; accuracy (the best step's metric), F1
  and the confusion matrix of each labelled split.
"""

from __future__ import annotations

import jax
import numpy as np

from lm import config as config_lib
from lm import data as data_lib
from lm import encoder_data
from lm import metrics as metrics_lib


def specials(task: str) -> str:
  """The special tokens a task's tokenizer needs ('bert' for encoders)."""
  return '' if task == 'causal_lm' else 'bert'


def best_metric(task: str) -> tuple[str, str]:
  """(eval metric, 'min' or 'max') that picks a run's best step."""
  return (('eval/accuracy', 'max') if task == 'classification'
          else ('eval/loss', 'min'))


def _sums(trainer, params, batches, batch_size: int) -> dict[str, float]:
  """Summed NLL, correct predictions and weight over global batches
  (batch_size 0: batches already this process's rows)."""
  rows = data_lib.local_rows(batch_size) if batch_size else slice(None)
  totals = {}
  for batch in batches:
    local = trainer.global_batch({k: v[rows] for k, v in batch.items()})
    for k, v in jax.device_get(trainer.sums_step(params, local)).items():
      totals[k] = totals.get(k, 0.0) + float(v)
  return totals


def _detection(t: dict[str, float]) -> dict[str, float]:
  """replaced_token: the discriminator's mean loss, accuracy and the share
  of replaced tokens, from `_sums` totals ({} for other tasks)."""
  if 'detection_count' not in t:
    return {}
  n = max(t['detection_count'], 1.0)
  return {'detection_loss': t['detection_nll'] / n,
          'detection_accuracy': t['detection_correct'] / n,
          'replaced': t['replaced'] / n}


class Task:
  """The data and evaluation of `c.task` on a prepared corpus."""

  def __init__(self, c, corpus: data_lib.Corpus):
    self.c, self.corpus, self.name = c, corpus, c.task
    self.tok = corpus.tokenizer
    self._sentences = {}

  def sentences(self, split: str) -> encoder_data.Sentences:
    """Classification: a split's sentences as encoder rows (encoded once)."""
    if split not in self._sentences:
      self._sentences[split] = encoder_data.Sentences.encode(
          self.tok, self.corpus.texts[split], self.corpus.labels[split],
          self.seq_len)
    return self._sentences[split]

  @property
  def seq_len(self) -> int:
    return self.c.data.seq_len or self.c.model.max_len

  def notes(self) -> list[str]:
    """Lines to tell the user before training (truncated sentences)."""
    if self.name != 'classification':
      return []
    return [line for split in self.corpus.texts
            if (line := self.sentences(split).truncation_note(
                split, self.seq_len))]

  def train_dataset(self):
    """The endless training iterator (its state is checkpointed)."""
    c = self.c
    if self.name in config_lib.MASKED_TASKS:
      return iter(encoder_data.mlm_train_dataset(
          self.corpus.train, c.model.max_len, c.data.batch_size, c.seed,
          self.tok, c.data.mask_rate, c.data.prefetch,
          c.data.whole_word_mask))
    if self.name == 'classification':
      return iter(encoder_data.sentence_train_dataset(
          self.sentences('train'), c.data.batch_size, c.seed,
          c.data.prefetch, c.data.length_bucket, self.tok,
          c.data.token_dropout))
    if c.data.pack == 'segments':
      return iter(data_lib.packed_dataset(
          data_lib.process_documents(self.corpus), c.model.max_len,
          c.data.batch_size, c.seed, c.data.prefetch))
    return iter(data_lib.train_dataset(
        self.corpus.train, c.model.max_len, c.data.batch_size, c.seed,
        c.data.prefetch))

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    """The fixed validation sample scored at every evaluation
    (classification: the whole validation split): global batches, but for
    causal_lm this process's rows."""
    c = self.c
    if self.name == 'classification':
      return list(encoder_data.sentence_batches(
          self.sentences('validation'), c.eval.batch_size or
          c.data.batch_size))
    if self.name in config_lib.MASKED_TASKS:
      ds = encoder_data.mlm_dataset(self.corpus.val, c.model.max_len,
                                    c.data.batch_size, c.seed + 1, self.tok,
                                    c.data.mask_rate, shard=False,
                                    whole_word=c.data.whole_word_mask)
      return [ds[i] for i in range(c.train.eval_batches)]
    return data_lib.eval_batches(self.corpus.val, c.model.max_len,
                                 c.data.batch_size, c.train.eval_batches,
                                 seed=c.seed + 1)

  def evaluate(self, trainer, params, batches) -> dict[str, float]:
    """eval/loss (and, for encoders, eval/accuracy) of global batches."""
    t = _sums(trainer, params, batches, 0 if self.name == 'causal_lm' else
              len(next(iter(batches))['inputs']))
    out = {'eval/loss': t['nll'] / max(t['count'], 1.0)}
    if self.name != 'causal_lm':
      out['eval/accuracy'] = t['correct'] / max(t['count'], 1.0)
    out.update({f'eval/{k}': v for k, v in _detection(t).items()})
    return out

  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    """The final evaluation of each whole evaluation split."""
    if self.name == 'causal_lm':
      return evaluate_lm_splits(trainer, params, self.corpus, self.c, writer)
    if self.name in config_lib.MASKED_TASKS:
      return self._masked_lm_splits(trainer, params)
    return {split: self.classify_split(trainer, params, split)
            for split in ('validation', 'test')
            if split in self.corpus.texts and
            (self.sentences(split).labels >= 0).all()}

  def _masked_lm_splits(self, trainer, params) -> dict[str, dict]:
    c, out = self.c, {}
    batch_size = c.eval.batch_size or c.data.batch_size
    for split in ('validation', 'test'):
      if split not in self.corpus.texts:
        continue
      stream = self.corpus.streams[split]
      if 0 < c.eval.max_tokens < len(stream):
        stream = stream[:c.eval.max_tokens]
      t = _sums(trainer, params, encoder_data.mlm_tiles(
          stream, c.model.max_len, batch_size, self.tok, c.data.mask_rate,
          seed=c.seed + 2, whole_word=c.data.whole_word_mask), batch_size)
      summary = metrics_lib.summarize(metrics_lib.Totals(t['nll'],
                                                         int(t['count'])))
      out[split] = {**summary, 'accuracy': t['correct'] / t['count'],
                    'masked_tokens': int(t['count']), **_detection(t)}
    return out

  def predict(self, trainer, params, sentences) -> np.ndarray:
    """Class probabilities [N, C] of encoded sentences."""
    batch_size = self.c.eval.batch_size or self.c.data.batch_size
    rows, probs = data_lib.local_rows(batch_size), []
    for batch in encoder_data.sentence_batches(sentences, batch_size):
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


def evaluate_lm_splits(trainer, params, corpus, c, writer=None
                       ) -> dict[str, dict[str, float]]:
  """Loss, perplexity, word-level perplexity and bits per byte of each whole
  evaluation split (`evaluate_stream`)."""
  results = {}
  for split in ('validation', 'test'):
    if split in corpus.texts:
      results[split] = evaluate_stream(
          trainer, params, corpus.streams[split],
          ''.join(corpus.texts[split]), c,
          writer.sub_progress(f'eval {split}') if writer else None)
  return results


def evaluate_stream(trainer, params, stream, text: str, c, progress=None
                    ) -> dict[str, float]:
  """Loss, perplexity, word-level perplexity and bits per byte of token
  `stream` (the tokens of `text`), read in windows of `eval.max_len` tokens
  (default model.max_len) `eval.stride` apart. With `eval.max_tokens`, only
  the first that many tokens, and only token loss and perplexity (the
  per-word and per-byte figures are defined over the whole text)."""
  batch_size = c.eval.batch_size or c.data.batch_size
  rows = data_lib.local_rows(batch_size)

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


def format_results(results: dict[str, dict]) -> list[str]:
  """One line per split of a final evaluation (confusion matrices as
  [[true 0 predicted 0, ...], ...])."""
  return [f'{split}: ' + ', '.join(
      f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
      for k, v in m.items() if k != 'tokens') for split, m in results.items()]
