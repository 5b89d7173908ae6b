"""Tests of lm.tasks: the registry and what each task declares.

The tasks' data, losses and evaluations run end to end in golden_test,
finetune_test (encoders), loop_test (causal LM) and trainer_test; these pin
the small decisions."""

import conftest
import pytest

from lm import tasks
from lm.eval import metrics as metrics_lib


def test_every_task_is_registered_under_its_name():
  assert set(tasks.TASKS) == {'causal_lm', 'masked_lm', 'replaced_token',
                              'classification', 'translation',
                              'summarization', 'span_corruption'}
  for name, task in tasks.TASKS.items():
    assert task.name == name


def test_encoders_need_berts_specials_and_a_classifier_maximises_accuracy():
  t = tasks.TASKS
  assert t['causal_lm'].specials == ''
  assert t['masked_lm'].specials == t['classification'].specials == 'bert'
  assert t['classification'].best_metric == ('eval/accuracy', 'max')
  assert t['masked_lm'].best_metric == ('eval/loss', 'min')


def test_a_classifier_starts_from_an_encoders_run_a_gpt_only_from_a_gpt():
  t = tasks.TASKS
  assert t['classification'].loads_from('masked_lm') == 'encoder'
  assert t['classification'].loads_from('replaced_token') == 'encoder'
  assert t['classification'].loads_from('classification') == ''
  assert t['causal_lm'].loads_from('causal_lm') == ''
  assert t['causal_lm'].loads_from('masked_lm') is None
  assert t['masked_lm'].loads_from('classification') is None
  # Encoder-decoders: fine-tuned from span corruption, never the reverse.
  assert t['summarization'].loads_from('span_corruption') == ''
  assert t['translation'].loads_from('span_corruption') == ''
  assert t['span_corruption'].loads_from('summarization') is None
  assert t['span_corruption'].specials == 't5'


def test_names_and_architectures_come_from_the_registry():
  assert tasks.named(generates=True) == 'causal_lm'
  assert tasks.named(classifies=True) == 'classification'
  assert tasks.for_architecture('BertForMaskedLM').name == 'masked_lm'
  assert tasks.for_architecture('GPT2LMHeadModel').name == 'causal_lm'
  assert not tasks.TASKS['replaced_token'].hf_architecture


@pytest.mark.parametrize('config,task,keys', [
    ('shakespeare_char', 'causal_lm', {'inputs', 'targets'}),
    ('bert_wikitext2', 'masked_lm', {'inputs', 'targets', 'weights'}),
    ('sst2', 'classification', {'inputs', 'segment_ids', 'targets',
                                'weights'}),
])
def test_batch_shapes_follow_the_task(config, task, keys):
  c = conftest.load_config(config, 'test')
  shapes = tasks.get(c).batch_shapes()
  assert c.task == task and set(shapes) == keys
  assert shapes['inputs'][0][0] == c.data.batch_size


def test_packed_rows_carry_segments_and_positions():
  c = conftest.load_config('shakespeare_char', 'test')
  c.data.pack = 'segments'
  assert set(tasks.get(c).batch_shapes()) == {
      'inputs', 'targets', 'segment_ids', 'positions', 'weights'}


def test_results_read_as_one_line_per_split():
  lines = metrics_lib.format_results({
      'validation': {'accuracy': 0.81234, 'confusion': [[1, 2], [3, 4]],
                     'truncated': 3},
      'test': {'loss': 2.5, 'perplexity': 12.18249, 'tokens': 10}})
  assert lines == ['validation: accuracy 0.8123, confusion [[1, 2], [3, 4]], '
                   'truncated 3', 'test: loss 2.5, perplexity 12.18']
