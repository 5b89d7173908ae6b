"""Tests of lm.study: a grid of runs, resumed, tabulated and plotted."""

import json
import os
import shutil
import signal
import subprocess
import time

from conftest import popen_cli
from conftest import run_cli

from lm import study as study_lib
from lm.train import checkpoint as checkpoint_lib

# What git keeps of a study's run folder (.gitignore): enough to skip it.
KEPT = ('config.json', 'study_cell.json', 'eval_results.json')

STUDY = '''
def get_study():
  return {'base': 'configs/shakespeare_char.py:test',
          'before': {'pre': {'config': 'configs/shakespeare_char.py:test',
                             'overrides': {'eval.final': False}}},
          'grid': {'learned': {'model.position': 'learned',
                               'init_from': '{out}/pre'},
                   'rope': {'model.position': 'rope',
                            'model.num_kv_heads': 1}},
          'seeds': [0],
          'metrics': ['validation.loss', 'validation.perplexity'],
          'eval_lens': [32],
          'eval_settings': {'short': {'eval.max_len': 8, 'eval.stride': 0}}}
'''


def test_study_runs_every_cell_then_skips_them(tmp_path):
  (tmp_path / 'study.py').write_text(STUDY)
  out = tmp_path / 'out'
  args = ['lm.study', str(tmp_path / 'study.py'), f'--out={out}']
  p = run_cli(*args)
  assert p.returncode == 0, p.stderr[-2000:]
  assert '[1/2] learned seed 0' in p.stdout and '[2/2] rope seed 0' in p.stdout
  assert p.stdout.index('[before] pre') < p.stdout.index('[1/2]')
  learned = json.loads((out / 'learned' / 'seed_0' / 'config.json'
                        ).read_text())
  assert learned['init_from'] == str(out / 'pre')  # '{out}' filled in.
  record = json.loads((out / 'results.json').read_text())
  rope = record['summary']['rope']
  assert rope['eval@32.validation.loss']['values'][0] > 0
  assert 'eval@32.validation.loss' not in record['summary']['learned']
  table = (out / 'results.md').read_text()
  assert '| rope |' in table and '| learned |' in table and '—' in table
  assert (out / 'validation.loss.png').stat().st_size > 1000
  assert (out / 'validation.loss_by_length.png').stat().st_size > 1000
  assert (out / 'validation.loss_by_setting.png').stat().st_size > 1000
  assert rope['short.validation.loss']['values'][0] > 0
  assert '| cell | evaluation | validation.loss |' in table
  assert '| rope | short |' in table
  # A setting added later is evaluated on rerun, without training again.
  (tmp_path / 'study.py').write_text(STUDY.replace(
      "'eval.stride': 0}}", "'eval.stride': 0}, 'shorter': "
      "{'eval.max_len': 4, 'eval.stride': 0}}"))
  again = run_cli(*args)
  assert again.returncode == 0 and 'starting in' not in again.stdout
  assert again.stdout.count('evaluating shorter') == 2
  assert 'evaluating short:' not in again.stdout
  record = json.loads((out / 'results.json').read_text())
  shorter = record['summary']['learned']['shorter.validation.loss']
  assert shorter['values'][0] > 0
  # A fresh clone holds only what git keeps of each run (no checkpoints,
  # no before run): the study is tabulated again without training anything.
  clone = tmp_path / 'clone'
  for cell in ('learned', 'rope'):
    os.makedirs(clone / cell / 'seed_0')
    for name in KEPT:
      shutil.copy(out / cell / 'seed_0' / name, clone / cell / 'seed_0')
  again = run_cli(*args[:2], f'--out={clone}', '--seeds=0')
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'starting in' not in again.stdout and '[before]' not in again.stdout
  assert not (clone / 'pre').exists()
  assert json.loads((clone / 'results.json').read_text())['summary'] == (
      record['summary'])
  # A cell that must train again trains alone: the before run is only for
  # the cell that names it ('{out}/pre'), which is finished.
  shutil.rmtree(clone / 'rope')
  again = run_cli(*args[:2], f'--out={clone}')
  assert again.returncode == 0, again.stderr[-2000:]
  assert again.stdout.count('starting in') == 1
  assert '[before]' not in again.stdout and not (clone / 'pre').exists()
  # A finished cell edited since is refused, not silently reused.
  (tmp_path / 'study.py').write_text(STUDY.replace("'model.num_kv_heads': 1",
                                                   "'model.num_kv_heads': 2"))
  edited = run_cli(*args)
  assert edited.returncode == 2
  assert 'was trained with another config' in edited.stderr
  assert 'model.num_kv_heads: 1 -> 2' in edited.stderr
  # A second study sharing the rope cell reads its run there, untrained;
  # one whose rope cell differs is refused.
  second = tmp_path / 'second.py'
  second.write_text(f"""
def get_study():
  return {{'base': 'configs/shakespeare_char.py:test',
          'grid': {{'rope': {{'model.position': 'rope',
                              'model.num_kv_heads': 1}}}},
          'seeds': [0], 'shared': {{'rope': '{out}'}},
          'metrics': ['validation.loss', 'validation.perplexity'],
          'eval_lens': [32],
          'eval_settings': {{'short': {{'eval.max_len': 8, 'eval.stride': 0}},
                            'shorter': {{'eval.max_len': 4, 'eval.stride': 0}}}}}}
""")
  shared = run_cli('lm.study', str(second), f'--out={tmp_path / "out2"}')
  assert shared.returncode == 0, shared.stderr[-2000:]
  assert 'starting in' not in shared.stdout
  assert not (tmp_path / 'out2' / 'rope').exists()
  record2 = json.loads((tmp_path / 'out2' / 'results.json').read_text())
  assert record2['summary']['rope'] == record['summary']['rope']
  second.write_text(second.read_text().replace("'model.num_kv_heads': 1",
                                               "'model.num_kv_heads': 2"))
  refused = run_cli('lm.study', str(second), f'--out={tmp_path / "out2"}')
  assert refused.returncode == 2
  assert 'trained with another config' in refused.stderr


def test_a_cell_stopped_by_sigterm_ends_the_study_unrecorded(tmp_path):
  # The loop stops after its step and saves; the study must not count the
  # cell as finished (it once wrote study_cell.json and went on).
  (tmp_path / 'study.py').write_text('''
def get_study():
  return {'base': 'configs/shakespeare_char.py:test',
          'overrides': {'train.num_steps': 1000000, 'train.log_every': 5,
                        'checkpoint.every': 5},
          'grid': {'a': {}, 'b': {}}, 'seeds': [0],
          'metrics': ['validation.loss']}
''')
  out = tmp_path / 'out'
  cell = out / 'a' / 'seed_0'
  with open(tmp_path / 'log', 'w') as log:
    proc = popen_cli('lm.study', str(tmp_path / 'study.py'), f'--out={out}',
                     stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 120
      while not checkpoint_lib.saved_steps(str(cell)):  # In the loop.
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
      proc.send_signal(signal.SIGTERM)
      code = proc.wait(timeout=120)
    finally:
      proc.kill()
  text = (tmp_path / 'log').read_text()
  assert code == 128 + signal.SIGTERM, text[-2000:]
  assert f'SIGTERM: stopped in {cell} at step ' in text
  assert 'of 1000000 (checkpoint saved); run the same command again' in text
  assert not (cell / 'study_cell.json').exists()
  assert not (out / 'b').exists() and not (out / 'results.json').exists()


def test_dry_run_and_bad_study_files(tmp_path):
  (tmp_path / 'study.py').write_text(STUDY)
  p = run_cli('lm.study', str(tmp_path / 'study.py'), '--dry_run')
  assert p.returncode == 0 and '2 runs: 2 cells x 1 seeds' in p.stdout
  (tmp_path / 'shared.py').write_text(STUDY.replace(
      "'seeds': [0],", "'seeds': [0], 'shared': {'rope': 'elsewhere'},"))
  p = run_cli('lm.study', str(tmp_path / 'shared.py'), '--dry_run')
  assert '  rope seed 0 (in elsewhere)' in p.stdout
  (tmp_path / 'bad_shared.py').write_text(STUDY.replace(
      "'seeds': [0],", "'seeds': [0], 'shared': {'nope': 'elsewhere'},"))
  p = run_cli('lm.study', str(tmp_path / 'bad_shared.py'), '--dry_run')
  assert p.returncode == 2 and "shared['nope'] must name a grid cell" in p.stderr
  (tmp_path / 'bad.py').write_text(STUDY.replace("'model.position'",
                                                 "'model.positon'"))
  p = run_cli('lm.study', str(tmp_path / 'bad.py'), '--dry_run')
  assert p.returncode == 2
  assert "unknown config key 'model.positon'" in p.stderr
  p = run_cli('lm.study', str(tmp_path / 'study.py'), '--seeds=0,3')
  assert p.returncode == 2
  assert "--seeds=0,3: the study's seeds are 0" in p.stderr
  p = run_cli('lm.study', str(tmp_path / 'study.py'), '--seeds=first')
  assert p.returncode == 2 and 'give whole numbers' in p.stderr
  p = run_cli('lm.study', str(tmp_path / 'missing.py'))
  assert p.returncode == 2 and 'no such file' in p.stderr
  assert run_cli('lm.study', '--help').returncode == 0


def test_git_keeps_what_a_study_needs_to_skip_a_run():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  run = 'experiments/some_study/cell/seed_0/'
  paths = [run + name for name in KEPT] + [
      run + 'checkpoints/100/state', run + 'train.log']
  p = subprocess.run(['git', 'check-ignore', '--no-index', *paths], cwd=root,
                     capture_output=True, text=True, check=False)
  assert p.stdout.split() == [run + 'checkpoints/100/state', run + 'train.log']


def test_a_cell_names_a_before_run_by_its_whole_folder():
  from lm.study import _names_run as names  # pylint: disable=g-import-not-at-top
  cell = {'init_from': '{out}/pretrain_10', 'model.position': 'rope'}
  assert names(cell, 'pretrain_10') and not names(cell, 'pretrain_1')
  assert names({'init_from': '{out}/pre/checkpoints'}, 'pre')


def test_a_metric_no_run_reports_is_named_with_what_the_runs_have():
  rows = {'a': [{'test.bleu': 30.0, 'train.best_eval_loss': 1.8}],
          'b': [{'test.bleu': 31.0}]}
  notes = study_lib.unreported(rows, ['test.bleu', 'validation.loss',
                                      'train.best_eval_loss', 'x'])
  assert notes == [
      'note: no run reports validation.loss; the runs report e.g. '
      'test.bleu, train.best_eval_loss',
      'note: no run reports x; the runs report e.g. test.bleu, '
      'train.best_eval_loss']


def test_the_table_shows_a_spread_only_where_there_are_seeds_to_spread():
  rows = {'one_seed': [{'test.bleu': 36.5}],
          'two_seeds': [{'test.bleu': 36.0}, {'test.bleu': 37.0}]}
  table = study_lib.markdown(study_lib.summarize(rows, ['test.bleu']),
                             ['test.bleu'])
  assert '| one_seed | 36.5 |' in table
  assert '| two_seeds | 36.5 ± 0.71 |' in table
