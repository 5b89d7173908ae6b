"""ROUGE as SciTLDR's authors score it, and the extractive baselines.

Each output is scored against every reference of its document with
`rouge-score` (ROUGE-1, -2 and -L F1, Porter stemming on); the reference
with the best ROUGE-1 F1 is kept for all three figures, which are averaged
over documents and reported x 100 (Cachola et al., 2020, multi-target
evaluation). Baselines scored the same way: the lead sentence (the
document's first sentence) and the sentence oracle (the one sentence of the
document whose best-reference ROUGE-1 F1 is highest; ties go to the
earlier).
"""

from __future__ import annotations

import functools

import numpy as np

METRICS = ('rouge1', 'rouge2', 'rougeL')


@functools.cache
def _scorer():
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  return rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)


def best_reference(output: str, references: list[str]) -> dict[str, float]:
  """F1 of each metric (0..1) against the reference with the best ROUGE-1
  F1 (the first among equals)."""
  if not references:
    raise ValueError('a document needs at least one reference summary')
  best = None
  for reference in references:
    s = _scorer().score(reference, output)
    if best is None or s['rouge1'].fmeasure > best['rouge1'].fmeasure:
      best = s
  return {m: float(best[m].fmeasure) for m in METRICS}


def corpus_scores(outputs: list[str], references: list[list[str]]
                  ) -> dict[str, float]:
  """Mean best-reference F1 x 100 of each metric over documents."""
  if len(outputs) != len(references):
    raise ValueError(f'{len(outputs)} outputs for {len(references)} '
                     'documents')
  per = [best_reference(o, refs) for o, refs in zip(outputs, references)]
  return {m: 100.0 * float(np.mean([p[m] for p in per])) if per else 0.0
          for m in METRICS}


def lead(sentences: list[str]) -> str:
  """The lead-sentence baseline: the document's first sentence."""
  return sentences[0] if sentences else ''


def oracle(sentences: list[str], references: list[str]) -> str:
  """The document's one sentence with the best best-reference ROUGE-1."""
  if not sentences:
    return ''
  r1 = [best_reference(s, references)['rouge1'] for s in sentences]
  return sentences[int(np.argmax(r1))]


def report(outputs: list[str], documents: list[tuple[list[str], list[str]]]
           ) -> dict[str, float]:
  """ROUGE of `outputs` and of the two baselines, for `documents` [(the
  document's sentences, its references)]: {'rouge1', ..., 'lead/rouge1',
  ..., 'oracle/rouge1', ...}."""
  references = [refs for _, refs in documents]
  out = corpus_scores(outputs, references)
  for name, pick in (('lead', lambda s, r: lead(s)), ('oracle', oracle)):
    baseline = [pick(sentences, refs) for sentences, refs in documents]
    out.update({f'{name}/{m}': v for m, v in
                corpus_scores(baseline, references).items()})
  return out
