"""Tests of lm.tasks: what each task needs and how its results read.

The tasks' data and evaluation run end to end in finetune_test (encoders)
and run_test (causal LM); these pin the small decisions."""

from lm import tasks


def test_encoders_need_berts_specials_and_a_classifier_maximises_accuracy():
  assert tasks.specials('causal_lm') == ''
  assert tasks.specials('masked_lm') == tasks.specials('classification') == \
      'bert'
  assert tasks.best_metric('classification') == ('eval/accuracy', 'max')
  assert tasks.best_metric('masked_lm') == ('eval/loss', 'min')


def test_results_read_as_one_line_per_split():
  lines = tasks.format_results({
      'validation': {'accuracy': 0.81234, 'confusion': [[1, 2], [3, 4]],
                     'truncated': 3},
      'test': {'loss': 2.5, 'perplexity': 12.18249, 'tokens': 10}})
  assert lines == ['validation: accuracy 0.8123, confusion [[1, 2], [3, 4]], '
                   'truncated 3', 'test: loss 2.5, perplexity 12.18']
