"""Tests of experiments/benchmark.py: it runs and records a row."""

import subprocess
import sys

from conftest import REPO


def bench(*args, out):
  return subprocess.run(
      [sys.executable, 'experiments/benchmark.py', *args, f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={'PATH': '/usr/bin:/bin', 'XLA_FLAGS': ''})


def test_benchmark_appends_rows_to_its_section(tmp_path):
  out = tmp_path / 'BENCH.md'
  out.write_text('# Benchmarks\n\n## Earlier\n\ntext\n')
  for _ in range(2):
    r = bench('--models=tiny', '--steps=2', '--warmup=1', out=out)
    assert r.returncode == 0, r.stderr[-2000:]
  text = out.read_text()
  assert text.startswith('# Benchmarks\n\n## Earlier\n\ntext\n')
  rows = [l for l in text.splitlines() if l.startswith('| 20')]
  assert len(rows) == 2 and all(
      '| tiny (0.121M) | 1 x cpu |' in l for l in rows)
  assert text.count('## GPT-2 training speed') == 1


def test_unknown_model_is_a_one_line_error(tmp_path):
  r = bench('--models=gpt5', out=tmp_path / 'B.md')
  assert r.returncode == 1
  assert r.stderr.strip().splitlines()[-1] == (
      "error: unknown model 'gpt5'; choose from gpt2, gpt2-medium, tiny")
