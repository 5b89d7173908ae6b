"""Tests of lm.translate: translating a file with a trained run, BLEU
against references, averaged checkpoints, and one-line errors."""

import json

from conftest import SHARED_DATA
from conftest import run_cli
from conftest import train_test_run
import pytest

pytestmark = pytest.mark.skipif(not (SHARED_DATA / 'multi30k').exists(),
                                reason='no ../shared/data/multi30k')

SOURCES = ['A man in an orange hat starring at something.',
           'Two dogs run on the beach.', 'A girl plays the piano.']


@pytest.fixture
def run(multi30k_run):
  """A tiny translation run (two checkpoints kept), shared by the session."""
  return multi30k_run


def test_translates_a_file_and_scores_it(run, tmp_path):
  (tmp_path / 'in.en').write_text('\n'.join(SOURCES) + '\n')
  (tmp_path / 'ref.de').write_text('Ein Mann.\nZwei Hunde.\nEin Mädchen.\n')
  p = run_cli('lm.translate', f'--workdir={run}', f'--input={tmp_path}/in.en',
              f'--reference={tmp_path}/ref.de', '--beam_size=2')
  assert p.returncode == 0, p.stderr[-2000:]
  assert len(p.stdout.splitlines()) == 3
  assert p.stderr.strip().splitlines()[-1].startswith(
      'BLEU ') and 'nrefs:1|case:mixed|eff:no|tok:13a' in p.stderr
  # Greedy from stdin, and the mean of the two kept checkpoints.
  p = run_cli('lm.translate', f'--workdir={run}', '--beam_size=1',
              '--average_last=2', input='\n'.join(SOURCES[:2]))
  assert p.returncode == 0, p.stderr[-2000:]
  assert len(p.stdout.splitlines()) == 2


@pytest.mark.parametrize('flag,message', [
    ('--beam_size=0', '--beam_size must be at least 1, got 0'),
    ('--length_penalty=-1', '--length_penalty must be a finite number >= 0, '
     'got -1.0'),
    ('--max_len=0', '--max_len must be at least 1, got 0'),
    ('--top_p=0', '--top_p must be in (0, 1], got 0.0'),
    ('--average_last=9', 'keeps 2 checkpoint(s) (3, 6), fewer than the 9 to '
     'average'),
])
def test_bad_settings_are_one_line(run, flag, message):
  p = run_cli('lm.translate', f'--workdir={run}', flag, input='A dog.\n')
  assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
  assert len(p.stderr.strip().splitlines()) == 1
  assert message in p.stderr


def test_a_run_that_is_not_an_encoder_decoder_is_refused(tmp_path):
  workdir = train_test_run('shakespeare_char', str(tmp_path / 'gpt'))
  p = run_cli('lm.translate', f'--workdir={workdir}', input='A dog.\n')
  assert p.returncode == 2 and 'Traceback' not in p.stderr
  assert p.stderr.strip() == (
      f'error: {workdir} is a task=causal_lm run, not an encoder-decoder; '
      'lm.translate reads translation or summarization runs')
  p = run_cli('lm.summarize', f'--workdir={workdir}', input='A text.\n')
  assert p.returncode == 2 and p.stderr.strip() == (
      f'error: {workdir} is a task=causal_lm run, not an encoder-decoder; '
      'lm.summarize reads translation or summarization runs')


def test_lm_evaluate_scores_a_translation_run_with_averaged_checkpoints(
    run, tmp_path):
  p = run_cli('lm.evaluate', f'--workdir={run}', '--average_last=2',
              f'--out={tmp_path}/r.json')
  assert p.returncode == 0, p.stderr[-2000:]
  results = json.loads((tmp_path / 'r.json').read_text())
  assert set(results) == {'validation', 'test'}
  assert results['test']['sentences'] == 32
  assert 'bleu' in results['test'] and 'chrf' in results['test']
