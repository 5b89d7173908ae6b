"""Tests of lm.tasks.summarization and lm.tasks.span_corruption end to end:
pretrain by span corruption, fine-tune on SciTLDR from it, ROUGE beside the
baselines, lm.summarize and lm.evaluate, and one-line refusals."""

import contextlib
import io
import json

from conftest import SHARED_DATA
from conftest import load_config
from conftest import run_cli
import pytest

from lm.train import loop

pytestmark = pytest.mark.skipif(
    not all((SHARED_DATA / d).exists() for d in ('scitldr', 'wikitext-2')),
    reason='no ../shared/data/scitldr or wikitext-2')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(pretraining run, fine-tuned run) of configs/scitldr.py's test variants."""
  root = tmp_path_factory.mktemp('scitldr')
  pre = load_config('scitldr', 'pretrain_test')
  loop.train_and_evaluate(pre, str(root / 'pre'))
  tune = load_config('scitldr', 'test')
  tune.init_from = str(root / 'pre')
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    loop.train_and_evaluate(tune, str(root / 'tune'))
  (root / 'tune' / 'stdout.txt').write_text(out.getvalue())
  return str(root / 'pre'), str(root / 'tune')


def test_pretraining_then_fine_tuning_ends_in_rouge_beside_the_baselines(runs):
  pre, tune = runs
  with open(f'{pre}/eval_results.json') as f:
    pre_results = json.load(f)
  assert set(pre_results) == {'step', 'validation', 'test'}
  assert 0 < pre_results['test']['loss'] < 10
  with open(f'{tune}/eval_results.json') as f:
    test = json.load(f)['test']
  for metric in ('rouge1', 'rouge2', 'rougeL'):
    for prefix in ('', 'lead/', 'oracle/'):
      assert 0 <= test[prefix + metric] <= 100
  assert test['oracle/rouge1'] > test['lead/rouge1'] > 0
  # test[:40] holds the references of 12 papers.
  assert (test['documents'], test['references']) == (12, 40)
  with open(f'{tune}/stdout.txt') as f:
    log = f.read()
  assert ('train: 200 of 200 sources are longer than 96 tokens '
          '(model.max_len)') in log


def test_summarize_and_evaluate_a_split(runs, tmp_path):
  _, tune = runs
  docs = tmp_path / 'docs.txt'
  docs.write_text('We study deep networks. They work.\nGraphs are hard.\n')
  refs = tmp_path / 'refs.txt'
  refs.write_text('Deep networks work.\nGraphs.\n')
  p = run_cli('lm.summarize', f'--workdir={tune}', f'--input={docs}',
              f'--reference={refs}', '--beam_size=2', '--max_len=8')
  assert p.returncode == 0, p.stderr[-2000:]
  assert len(p.stdout.splitlines()) == 2
  assert p.stderr.strip().splitlines()[-1].startswith('ROUGE-1 ')
  out = tmp_path / 'r.json'
  p = run_cli('lm.evaluate', f'--workdir={tune}', '--split=test[:3]',
              '--no_repeat_ngram=3', f'--out={out}')
  assert p.returncode == 0, p.stderr[-2000:]
  assert set(json.loads(out.read_text())) == {'test[:3]'}


def test_summarizing_with_a_run_that_does_not_summarize_is_one_line(runs):
  pre, _ = runs
  p = run_cli('lm.summarize', f'--workdir={pre}', input='A document.\n')
  assert p.returncode == 2 and 'Traceback' not in p.stderr
  assert p.stderr.strip() == (
      f'error: {pre} is a task=span_corruption run, a pretrained '
      'encoder-decoder; lm.summarize reads translation or summarization runs')
