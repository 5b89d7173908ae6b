"""Tests of BERT pretraining then fine-tuning on SST-2 (lm.finetune, lm.train.loop):
the pretrained encoder starts the classifier, exact resume, early stopping,
evaluate and predict, and pretrained runs that do not fit."""

import json
import os

import chex
from conftest import load_config
from conftest import SHARED_DATA
from conftest import run_cli
from conftest import train_test_run
import jax
import numpy as np
import pytest

from lm.train import checkpoint as checkpoint_lib
from lm.train import evaluation
from lm.train import loop
from lm.train import workdir as workdir_lib


def params_at(workdir, step=None):
  ckpt = checkpoint_lib.Checkpointer(str(workdir), read_only=True)
  state, _ = ckpt.restore(step or ckpt.latest_step(), None, with_data=False)
  return state['params']


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  """A 4-step masked-LM run of the test encoder on WikiText-2."""
  return train_test_run('bert_wikitext2', str(tmp_path_factory.mktemp('mlm')))


def sst2(init_from='', **train):
  c = load_config('sst2', 'test')
  c.init_from = init_from
  c.train.update(**train)
  c.eval.final = False
  return c


def test_the_pretrained_encoder_starts_the_classifier(pretrained, tmp_path):
  c = sst2(pretrained, num_steps=2)
  c.optim.freeze_embeddings = True
  loop.train_and_evaluate(c, str(tmp_path))
  before, after = params_at(pretrained), params_at(tmp_path)
  assert set(after) == {'encoder', 'head'}
  assert set(after['head']) == {'pooler', 'out'}  # A new head, not the MLM's.
  for name in ('wte', 'wpe', 'wtt'):  # Frozen: exactly the pretrained table.
    np.testing.assert_array_equal(after['encoder'][name],
                                  before['encoder'][name])
  moved = after['encoder']['blocks']['0']['mlp']['up']['kernel']
  start = before['encoder']['blocks']['0']['mlp']['up']['kernel']
  assert 0 < np.abs(moved - start).max() < 0.01  # Trained from there.


def test_finetuning_resumes_exactly(pretrained, tmp_path):
  c = sst2(pretrained, num_steps=6, eval_every=3)
  c.data.length_bucket = 4  # Batches of rows 4, 8 or 12 long.
  c.data.token_dropout = 0.2  # Word dropout is seeded too.
  c.optim.decay_steps = 6  # The schedule must not depend on num_steps.
  c.checkpoint.every = 3
  loop.train_and_evaluate(c, str(tmp_path / 'a'))
  half = c.copy_and_resolve_references()
  half.train.num_steps = 3
  loop.train_and_evaluate(half, str(tmp_path / 'b'))
  loop.train_and_evaluate(c, str(tmp_path / 'b'))
  a, b = read_metrics(tmp_path / 'a'), read_metrics(tmp_path / 'b')
  assert [r['step'] for r in b] == list(range(1, 7))
  assert [r['train/loss'] for r in a] == [r['train/loss'] for r in b]
  assert [r.get('eval/accuracy') for r in a] == [
      r.get('eval/accuracy') for r in b]
  chex.assert_trees_all_equal(params_at(tmp_path / 'a', 6),
                              params_at(tmp_path / 'b', 6))


def test_a_moving_average_is_evaluated_kept_and_resumed(pretrained,
                                                       tmp_path):
  c = sst2(pretrained, num_steps=4, eval_every=2)
  c.train.ema_decay = 0.5
  # Parameters far from the average; a schedule that does not depend on
  # num_steps.
  c.optim.update(lr=1e-2, warmup_steps=0, decay_steps=4)
  c.checkpoint.every = 2
  c.eval.final = True
  half = c.copy_and_resolve_references()
  half.train.num_steps = 2
  loop.train_and_evaluate(half, str(tmp_path / 'a'))
  loop.train_and_evaluate(c, str(tmp_path / 'a'))  # Resumed at step 2.
  loop.train_and_evaluate(c, str(tmp_path / 'b'))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / 'a'), read_only=True)
  state, _ = ckpt.restore(4, None, with_data=False)
  chex.assert_trees_all_equal(state, params_state(tmp_path / 'b'))
  # The average is what the run evaluates and hands on.
  assert not np.allclose(state['ema']['head']['out']['kernel'],
                         state['params']['head']['out']['kernel'])
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  loaded = workdir_lib.load_params(
      jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one),
          state['ema']), str(tmp_path / 'a'))
  chex.assert_trees_all_equal(loaded, state['ema'])
  final = json.loads((tmp_path / 'a' / 'eval_results.json').read_text())
  again = evaluation.evaluate_saved(c, str(tmp_path / 'a'))
  assert final['validation'] == again['validation']
  # Turning the average on or off is refused on resume.
  c.train.ema_decay = 0.0
  c.train.num_steps = 6
  with pytest.raises(workdir_lib.RunError,
                     match=r'holds a run with a moving '
                     r'average of its parameters; keep train.ema_decay=0.5'):
    loop.train_and_evaluate(c, str(tmp_path / 'a'))


def params_state(workdir):
  ckpt = checkpoint_lib.Checkpointer(str(workdir), read_only=True)
  return ckpt.restore(ckpt.latest_step(), None, with_data=False)[0]


def test_early_stopping_evaluates_the_best_step(pretrained, tmp_path):
  # A learning rate too small to change a prediction: dev accuracy never
  # improves on the first evaluation, so two evaluations later it stops.
  c = sst2(pretrained, num_steps=20, eval_every=2, early_stopping=2)
  c.optim.update(lr=1e-12, min_lr=0.0)
  c.eval.final = True
  s = loop.train_and_evaluate(c, str(tmp_path))
  assert s.steps == 6
  results = json.loads((tmp_path / 'eval_results.json').read_text())
  assert results['step'] == 2  # The best (first) evaluated step.
  matrix = np.array(results['validation']['confusion'])
  assert matrix.shape == (2, 2) and matrix.sum() == 200
  assert 'test' not in results


def test_evaluate_and_predict_commands(pretrained, tmp_path):
  workdir = tmp_path / 'sst2'
  c = sst2(pretrained, num_steps=2)
  c.model.pooling = 'mean'  # The commands read the run's own head.
  loop.train_and_evaluate(c, str(workdir))
  p = run_cli('lm.finetune', 'evaluate', f'--workdir={workdir}')
  assert p.returncode == 0, p.stderr
  saved = json.loads((workdir / 'evaluation_validation.json').read_text())
  assert p.stdout.startswith(f'validation at step 2: accuracy '
                             f'{saved["accuracy"]:.4f}, F1 {saved["f1"]:.4f} '
                             'over 200 sentences')
  assert 'confusion (rows: true, columns: predicted)' in p.stdout
  assert np.sum(saved['confusion']) == 200 and saved['truncated'] > 0
  sentences = tmp_path / 'in.txt'
  long = ' '.join(['dull'] * 30)
  sentences.write_text(f'a good film\n{long}\n')
  p = run_cli('lm.finetune', 'predict', f'--workdir={workdir}',
              f'--input={sentences}')
  assert p.returncode == 0, p.stderr
  lines = p.stdout.strip().splitlines()
  assert [line.split('\t')[2] for line in lines] == [
      'a good film', long]
  assert all(line.split('\t')[0] in ('0', '1') for line in lines)
  assert '1 of 2 sentences were longer than 10 pieces' in p.stderr
  # Mistakes: one line, exit 2.
  sentences.write_text('fine\n\nalso fine\n')
  for args, message in [
      (('predict', f'--input={sentences}'),
       f'error: {sentences} line 2 is empty; give one sentence per line')]:
    p = run_cli('lm.finetune', *args, f'--workdir={workdir}')
    assert p.returncode == 2 and p.stderr.startswith(message), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
  p = run_cli('lm.finetune', 'evaluate', f'--workdir={pretrained}')
  assert p.returncode == 2 and 'is a task=masked_lm run, not a classifier' \
      in p.stderr


def test_a_pretrained_run_that_does_not_fit_is_refused(pretrained, tmp_path):
  c = sst2(pretrained)
  c.data.vocab_size = 500
  with pytest.raises(workdir_lib.RunError,
                     match=r'init_from=.* was trained with '
                     r'data.vocab_size=1000, this run asks for 500'):
    loop.train_and_evaluate(c, str(tmp_path / 'a'))
  c = sst2(pretrained)
  c.data.lowercase = True  # The pretrained encoder saw cased text.
  with pytest.raises(workdir_lib.RunError,
                     match=r'was trained with '
                     r'data.lowercase=False, this run asks for True: set '
                     r'data.lowercase=False'):
    loop.train_and_evaluate(c, str(tmp_path / 'lower'))
  c = sst2(pretrained)
  c.model.embed_dim = 64
  with pytest.raises(workdir_lib.RunError,
                     match=r'holds another model shape '
                     r'\(model.embed_dim: 32 -> 64'):
    loop.train_and_evaluate(c, str(tmp_path / 'b'))
  gpt = load_config('shakespeare_char', 'test')
  gpt.train.num_steps = 2
  gpt.eval.final = False
  loop.train_and_evaluate(gpt, str(tmp_path / 'gpt'))
  with pytest.raises(workdir_lib.RunError,
                     match=r'was trained with a char '
                     r'tokenizer, not data.tokenizer=sentencepiece'):
    loop.train_and_evaluate(sst2(str(tmp_path / 'gpt')), str(tmp_path / 'c'))


def test_an_electra_discriminator_starts_the_classifier(tmp_path):
  c = load_config('bert_wikitext2', 'test')
  c.update(task='replaced_token', init_from='')
  c.eval.max_tokens = 500  # The final evaluation of a little of each split.
  s = loop.train_and_evaluate(c, str(tmp_path / 'rtd'))
  assert set(s.final['validation']) >= {'accuracy', 'detection_accuracy',
                                        'detection_loss', 'replaced'}
  # Only the chosen 15% of a row's pieces ([CLS] and [SEP] never) are
  # sampled, and a sample can equal the original.
  assert 0 < s.final['validation']['replaced'] < 0.15
  before = params_at(tmp_path / 'rtd')
  assert set(before) == {'encoder', 'head', 'generator'}
  c = sst2(str(tmp_path / 'rtd'), num_steps=2)
  c.optim.freeze_embeddings = True
  loop.train_and_evaluate(c, str(tmp_path / 'ft'))
  after = params_at(tmp_path / 'ft')
  assert set(after) == {'encoder', 'head'} and set(after['head']) == {
      'pooler', 'out'}
  np.testing.assert_array_equal(after['encoder']['wte'],
                                before['encoder']['wte'])


GLOVE = SHARED_DATA / 'glove' / 'glove.6B.50d.100k.txt.gz'


def test_a_word_level_classifier_starts_from_glove(tmp_path):
  result = run_cli(
      'lm.finetune', '--config=configs/sst2.py:test',
      '--config.data.tokenizer=word', '--config.data.lowercase=true',
      '--config.data.vocab_size=0', '--config.model.embed_dim=50',
      '--config.model.num_heads=2', f'--config.model.init_embeddings={GLOVE}',
      '--config.train.num_steps=2', f'--workdir={tmp_path / "run"}')
  assert result.returncode == 0, result.stderr
  line = next(l for l in result.stdout.splitlines()
              if 'initialised from pretrained vectors' in l)
  found, total = (int(x.replace(',', '')) for x in line.split()[:3:2])
  # The 3,000 training phrases' 5,899 words (vocab_size=0: all), lowercased;
  # GloVe's 100k most frequent words hold about 90% of them.
  assert total > 3000 and found / total > 0.85
  assert 'model selection on 1' in result.stdout  # 5% of 3,000, by sentence.
