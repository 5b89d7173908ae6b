"""Tests of lm.eval.rouge: rouge-score's own numbers, the best-reference
rule, and the lead and oracle baselines."""

import numpy as np
import pytest
from rouge_score import rouge_scorer

from lm.eval import rouge

OUTPUTS = ['We propose a new method for training networks faster.',
           'Graph networks are studied.',
           'The cats were running quickly.']
REFERENCES = [['A new method trains neural networks faster.',
               'We train networks quickly with a new optimizer.'],
              ['We study the expressive power of graph neural networks.'],
              ['A cat runs quickly.', 'Cats ran.', 'Dogs were running.']]


def test_scores_match_rouge_score_called_directly():
  scorer = rouge_scorer.RougeScorer(['rouge1', 'rouge2', 'rougeL'],
                                    use_stemmer=True)
  want = {m: [] for m in rouge.METRICS}
  for output, refs in zip(OUTPUTS, REFERENCES):
    per = [scorer.score(r, output) for r in refs]
    best = per[int(np.argmax([s['rouge1'].fmeasure for s in per]))]
    for m in rouge.METRICS:
      want[m].append(best[m].fmeasure)
  got = rouge.corpus_scores(OUTPUTS, REFERENCES)
  for m in rouge.METRICS:
    assert got[m] == pytest.approx(100 * np.mean(want[m]), abs=1e-9)
  # Stemming is on: 'running' and 'runs' share a stem.
  assert rouge.best_reference('runs', ['running'])['rouge1'] == 1.0


def test_the_reference_with_the_best_rouge1_gives_all_three_figures():
  # Reference a shares more words (ROUGE-1), b a longer run (ROUGE-2).
  output = 'x y z w v u'
  a, b = 'u z x v y w', 'x y q q q q q q'
  s_a, s_b = rouge.best_reference(output, [a]), rouge.best_reference(
      output, [b])
  assert s_a['rouge1'] > s_b['rouge1'] and s_b['rouge2'] > s_a['rouge2']
  assert rouge.best_reference(output, [b, a]) == s_a


def test_lead_and_oracle_baselines():
  sentences = ['Deep nets are popular.', 'We propose a new method.',
               'It trains networks faster.']
  refs = ['A new method trains networks faster.']
  assert rouge.lead(sentences) == sentences[0]
  assert rouge.oracle(sentences, refs) == sentences[2]
  report = rouge.report(['A new method.'], [(sentences, refs)])
  assert report['oracle/rouge1'] > report['lead/rouge1']
  assert set(report) == {f'{p}{m}' for p in ('', 'lead/', 'oracle/')
                         for m in rouge.METRICS}


def test_mismatched_counts_are_an_error():
  with pytest.raises(ValueError, match='2 outputs for 1 documents'):
    rouge.corpus_scores(['a', 'b'], [['a']])
