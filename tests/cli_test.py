"""End-to-end tests of the command-line faces: lm.main and lm.sample."""

import json

from lm import tokenizer as tokenizer_lib
from conftest import run_cli

CONFIG = '--config=configs/shakespeare_char.py:test'


def test_train_then_sample(tmp_path):
  workdir = tmp_path / 'run'
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}',
              '--config.optim.lr=3e-3')
  assert p.returncode == 0, p.stderr
  assert 'done: 10 steps' in p.stdout
  config = json.loads((workdir / 'config.json').read_text())
  assert config['optim']['lr'] == 3e-3  # The override reached the run.
  p = run_cli('lm.sample', f'--workdir={workdir}', '--prompt=ROMEO:',
              '--max_new_tokens=40', '--num_samples=2', '--seed=1')
  assert p.returncode == 0, p.stderr
  assert p.stdout.count('ROMEO:') == 2
  assert len(p.stdout.split('--- sample 2 ---')[1].strip()) >= 40
  # A prompt character the model never saw: one line, exit 2.
  p = run_cli('lm.sample', f'--workdir={workdir}', '--prompt=café')
  assert p.returncode == 2
  assert p.stderr.startswith("error: characters not in the vocabulary: 'é'")
  assert len(p.stderr.strip().splitlines()) == 1
  # Resuming a finished run trains nothing more and says so.
  metrics = (workdir / 'metrics.jsonl').read_text()
  steps = sorted(p.name for p in (workdir / 'checkpoints').iterdir())
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}')
  assert p.returncode == 0 and 'resuming from step 10' in p.stdout
  assert 'done: 10 steps' in p.stdout
  assert (workdir / 'metrics.jsonl').read_text() == metrics
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == steps
  # A tokenizer that does not belong to the checkpoint: one line, exit 2.
  tokenizer_lib.train('byte', []).save(str(workdir))
  p = run_cli('lm.sample', f'--workdir={workdir}')
  assert p.returncode == 2 and p.stderr.strip().endswith(
      "its tokenizer has 257 entries but its model only 65; the tokenizer "
      "files are not this run's")


def test_sample_from_a_directory_without_a_run(tmp_path):
  p = run_cli('lm.sample', f'--workdir={tmp_path}')
  assert p.returncode == 2
  assert 'holds no run' in p.stderr


def test_missing_data_file_is_one_line(tmp_path):
  p = run_cli('lm.main', CONFIG, f'--workdir={tmp_path / "run"}',
              f'--config.data.path={tmp_path / "missing.txt"}')
  assert p.returncode == 2
  assert p.stderr.strip() == (f'error: data.path={tmp_path}/missing.txt for '
                              'tiny_shakespeare is not a directory; point it '
                              'at the folder that holds the corpus files')


def test_help(tmp_path):
  for module in ('lm.main', 'lm.sample'):
    p = run_cli(module, '--help')
    assert p.returncode == 0 and '--workdir' in p.stdout
