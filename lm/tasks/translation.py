"""translation: an encoder-decoder trained on sentence pairs.

Rows are token-count batches in length buckets (`lm.data.pairs`); the loss
is the label-smoothed cross-entropy (`optim.label_smoothing`) of the target
tokens under teacher forcing; evaluations report the unsmoothed loss and
token accuracy of the validation pairs. The final evaluation translates the
validation and test splits (beam search, `eval.beam_size`, `eval.alpha`,
`eval.penalty`) and scores them with sacreBLEU (cased, detokenized, 13a) and
chrF against the raw references and, where the corpus ships them (Multi30k's
`tok/`), with the research papers' lowercased tokenized BLEU.
"""

from __future__ import annotations

import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np

from lm.data import corpus as corpus_lib
from lm.data import pairs as pairs_lib
from lm.data import parallel
from lm.data import prepare as prepare_lib
from lm.data import rows as rows_lib
from lm.eval import bleu
from lm.eval import translator as translator_lib
from lm.models import encoder_decoder
from lm.tasks import base

class Translation(base.Task):
  """A sequence-to-sequence translation model."""

  name = 'translation'
  starts_from = {'translation': '', 'span_corruption': ''}
  translates = True
  encoder_decoder = True
  hf_imports = ('T5ForConditionalGeneration', 'BartForConditionalGeneration',
                'MarianMTModel')
  hf_data_name = 'multi30k'  # An import's corpus, until a run sets its own.

  def __init__(self, c, corpus=None):
    super().__init__(c, corpus)
    self._pairs = {}

  def build(self, *, rngs):
    return encoder_decoder.EncoderDecoder(self.model_cfg, rngs=rngs)

  @property
  def bucket(self) -> int:
    return self.c.data.length_bucket or 8

  def forward(self, model, batch, rng=None, **kw):
    deterministic, rngs = self.dropout(rng)
    return model(batch['source'], batch['inputs'],
                 source_segment_ids_BxM=batch['source_segments'],
                 deterministic=deterministic, rngs=rngs)

  def loss(self, model, batch, rng=None):
    """Label-smoothed cross-entropy of the target tokens: (1 - e) x NLL +
    e x the mean negative log-probability over the vocabulary."""
    logits, targets, weights = self.scored(model, batch, rng)
    e = self.c.optim.label_smoothing
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    smooth = -logp.mean(-1)
    per_token = (1.0 - e) * nll + e * smooth
    return (per_token * weights).sum() / jnp.maximum(weights.sum(), 1.0)

  def batch_shapes(self) -> dict[str, tuple]:
    """The widest bucket's batch."""
    L = self.c.model.max_len
    T = self.c.data.target_len or L
    B = pairs_lib.rows_per_batch(L, self.c.data.max_tokens)
    ints = ((B, L), np.int32)
    return {'source': ints, 'source_segments': ints,
            'inputs': ((B, T), np.int32), 'targets': ((B, T), np.int32),
            'weights': ((B, T), np.float32)}

  def pairs(self, split: str) -> pairs_lib.Pairs:
    """A split's encoded pairs (encoded once)."""
    if split not in self._pairs:
      self._pairs[split] = pairs_lib.Pairs.encode(
          self.tok, self._texts(split), self.c.model.max_len,
          self.c.data.target_len)
    return self._pairs[split]

  def _texts(self, split: str) -> list[tuple[str, str]]:
    if split in self.corpus.texts:
      return self.corpus.texts[split]
    t = self.corpus.transform
    return [(t(a), t(b)) for a, b in corpus_lib.read_pairs(
        prepare_lib.source(self.corpus.builder, split))]

  def _batches(self) -> pairs_lib.TokenBatches:
    c = self.c
    return pairs_lib.TokenBatches(self.pairs('train'), c.model.max_len,
                                  c.data.max_tokens, self.bucket, c.seed,
                                  self.tok.special_ids['bos'])

  def notes(self) -> list[str]:
    """Pairs skipped or cut per split, and the batches' padding. A split
    in eval.extra_splits that the corpus lacks is an error here, before
    training."""
    available = list(self.corpus.builder.info.splits)
    for split in filter(None, self.c.eval.extra_splits.split(',')):
      if split not in available:
        raise corpus_lib.DataError(
            f'eval.extra_splits names {split!r}, which {self.c.data.name} '
            f'lacks; it has {", ".join(available)}')
    lines = [line for split in self.corpus.texts
             for line in self.pairs(split).notes(split, self.c.model.max_len)]
    batches = self._batches()
    lines.append(f'{len(self.pairs("train")):,} training pairs in '
                 f'{batches.batches_per_epoch:,} batches of about '
                 f'{self.c.data.max_tokens:,} tokens an epoch; padding '
                 f'{batches.padding_share():.1%} of the positions')
    return lines

  def train_dataset(self):
    ds = grain.MapDataset.source(self._batches())
    return iter(ds.to_iter_dataset(rows_lib.read_options(
        self.c.data.prefetch)))

  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    """This process's rows of the validation pairs (the first
    train.eval_batches x data.batch_size of them; 0: all)."""
    c = self.c
    limit = c.train.eval_batches * c.data.batch_size
    return [{k: v[rows_lib.local_rows(len(v))] for k, v in batch.items()}
            for batch in pairs_lib.sorted_batches(
                self.pairs('validation'), c.model.max_len, c.data.max_tokens,
                self.bucket, self.tok.special_ids['bos'], limit)]

  def evaluate(self, trainer, params, batches) -> dict[str, float]:
    t = base.batch_sums(trainer, params, batches, 0)
    return {f'eval/{k}': v for k, v in self.figures(t).items()}

  def translator(self, graphdef, settings=None) -> translator_lib.Translator:
    c = self.c
    settings = settings or translator_lib.Settings(
        beam_size=c.eval.beam_size, alpha=c.eval.alpha, penalty=c.eval.penalty,
        max_len=c.data.target_len, no_repeat_ngram=c.eval.no_repeat_ngram)
    return translator_lib.Translator(graphdef, self.model_cfg, self.tok,
                                     settings, c.eval.batch_size or 32)

  def final(self, trainer, params, writer=None,
            splits: list[str] | None = None) -> dict[str, dict]:
    """The `score` (BLEU, chrF and tokenized BLEU where the corpus has
    references for it; a summarization run's ROUGE) of the validation and
    test splits, and of the corpus's other splits named in
    eval.extra_splits; or of `splits` (any of the corpus's, or a slice of
    one: 'test[:100]')."""
    translator = self.translator(trainer.graphdef)
    if splits:
      available = list(self.corpus.builder.info.splits)
      for split in splits:
        if split.split('[')[0] not in available:
          raise corpus_lib.DataError(
              f'{self.c.data.name} has no split {split!r}; it has '
              f'{", ".join(available)}')
    else:
      extra = [s for s in self.c.eval.extra_splits.split(',') if s]
      splits = [split for split in ['validation', 'test', *extra]
                if split in self.corpus.texts or split in extra]
    return {split: self.score(translator, params, split, writer)
            for split in splits}

  def score(self, translator, params, split: str, writer=None) -> dict:
    """The metrics of translating `split`."""
    pairs = self._texts(split)
    sources = [s for s, _ in pairs]
    references = [t for _, t in pairs]
    progress = (writer.sub_progress(f'translate {split}', 'sentence')
                if writer else None)
    hypotheses, seconds, tokens = translator.translate(params, sources,
                                                       progress)
    result = bleu.corpus_scores(hypotheses, references)
    tok_refs = self._tokenized_references(split)
    # Only a whole split lines up with the official file (not a slice).
    if tok_refs is not None and len(tok_refs) == len(hypotheses):
      result['tokenized_bleu'] = bleu.tokenized_bleu(
          hypotheses, tok_refs, self.target_lang)
    result.update(sentences=len(sources),
                  sentences_per_sec=len(sources) / max(seconds, 1e-9),
                  tokens_per_sec=tokens / max(seconds, 1e-9))
    return result

  @property
  def target_lang(self) -> str:
    return (self.c.data.config or 'en-de').split('-')[-1]

  def _tokenized_references(self, split: str) -> list[str] | None:
    """Multi30k's official lowercased tokenized references of `split`, when
    data.path holds its tok/ folder."""
    if self.c.data.name != 'multi30k' or not self.c.data.path:
      return None
    stem = parallel.MULTI30K_SPLITS.get(split)
    path = (pathlib.Path(self.c.data.path) / 'tok' /
            f'{stem}.lc.norm.tok.{self.target_lang}')
    return bleu.read_lines(str(path)) if path.exists() else None

  def next_step(self, workdir: str) -> str:
    return f'translate: python -m lm.translate --workdir={workdir}'

