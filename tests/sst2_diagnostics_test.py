"""Tests of experiments/sst2_diagnostics.py on the test-sized encoder: the
zero-shot cloze probe and the ensemble of fine-tunes (the real runs are in
BENCHMARKS.md)."""

import json
import subprocess
import sys

from conftest import REPO
from conftest import SHARED_DATA
from conftest import train_test_run
import pytest


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(a 4-step masked-LM run, a 4-step SST-2 fine-tune of it)."""
  pretrained = train_test_run('bert_wikitext2',
                              str(tmp_path_factory.mktemp('mlm')))
  return pretrained, train_test_run('sst2', str(tmp_path_factory.mktemp(
      'sst2')), init_from=pretrained)


def diagnostics(*args):
  return subprocess.run([sys.executable, 'experiments/sst2_diagnostics.py',
                         *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_prompt_scores_every_template_on_the_dev_split(runs, tmp_path):
  out = tmp_path / 'prompt.json'
  p = diagnostics('prompt', f'--pretrained={runs[0]}',
                  f'--data={SHARED_DATA}/sst2', f'--out={out}',
                  # Words a 1,000-piece vocabulary holds whole.
                  '--pairs=the/a,great/terrible')
  assert p.returncode == 0, p.stderr
  r = json.loads(out.read_text())
  assert r['sentences'] == 872 and r['positive'] == 444
  assert len(r['templates']) == 4
  for pairs in r['templates'].values():
    assert set(pairs) == {'the/a', 'great/terrible'}
  scored = [pairs['the/a'] for pairs in r['templates'].values()]
  for s in scored:
    assert 0 <= s['accuracy'] <= 1
    # The median threshold splits the sentences in half: near 50% when the
    # model knows nothing, never degenerate.
    assert 0.2 < s['calibrated_accuracy'] < 0.8


def test_an_ensemble_of_a_run_with_itself_is_the_run(runs, tmp_path):
  out = tmp_path / 'ensemble.json'
  finetuned = runs[1]
  p = diagnostics('ensemble', f'--runs={finetuned},{finetuned}', '--size=2',
                  f'--out={out}')
  assert p.returncode == 0, p.stderr
  r = json.loads(out.read_text())
  # The run's own dev accuracy (of the step chosen on its selection split).
  e = subprocess.run([sys.executable, '-m', 'lm.finetune', 'evaluate',
                      f'--workdir={finetuned}'], cwd=REPO, capture_output=True,
                     text=True, check=False)
  assert e.returncode == 0, e.stderr
  with open(f'{finetuned}/evaluation_validation.json') as f:
    dev = json.load(f)['accuracy']
  assert r['accuracies'][finetuned] == pytest.approx(dev, abs=1e-4)
  assert r['ensemble_of_all'] == r['mean_of_runs'] == r['accuracies'][
      finetuned]
  assert r['ensembles_of_2']['count'] == 1
  assert r['pairwise_agreement'] == 1.0
  wrong = round((1 - r['ensemble_of_all']) * r['sentences'])
  assert r['wrong_by_every_run'] == wrong
  assert r['right_by_every_run'] == r['sentences'] - wrong


@pytest.mark.parametrize('args, message', [
    (('ensemble', '--runs=a,b', '--size=3'), '--size=3 must be in [2, 2]'),
    (('ensemble', '--runs=a'), 'give at least two fine-tuned workdirs'),
    (('prompt', '--pretrained=nowhere', '--data=nowhere'),
     '--data=nowhere: no such folder'),
    (('prompt', '--pretrained=nowhere', f'--data={SHARED_DATA}/sst2',
      '--pairs=good'), '--pairs=good: give POSITIVE/NEGATIVE word pairs'),
])
def test_bad_input_is_one_line(args, message):
  p = diagnostics(*args)
  assert p.returncode == 2 and message in p.stderr.splitlines()[-1]


def test_a_classifier_is_not_a_masked_lm(runs):
  p = diagnostics('prompt', f'--pretrained={runs[1]}',
                  f'--data={SHARED_DATA}/sst2')
  assert p.returncode == 2
  assert 'is a task=classification run; give a masked-LM run' in p.stderr
