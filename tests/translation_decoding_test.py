"""Tests of experiments/translation_decoding.py: it times the four ways on a
real run, finds the same translations with cross-attention computed once and
recomputed and with the whole KV cache reordered, and appends its row."""

import subprocess
import sys

from conftest import REPO
from conftest import SHARED_DATA
import pytest

pytestmark = pytest.mark.skipif(not (SHARED_DATA / 'multi30k').exists(),
                                reason='no ../shared/data/multi30k')


def test_times_the_four_ways_and_appends_a_row(multi30k_run, tmp_path):
  run = multi30k_run
  out = tmp_path / 'results.md'
  p = subprocess.run(
      [sys.executable, 'experiments/translation_decoding.py',
       f'--workdir={run}', '--sentences=6', '--batch_size=4', '--rounds=1',
       f'--out={out}', '--profile'], cwd=REPO, capture_output=True, text=True,
      timeout=600)
  assert p.returncode == 0, p.stderr[-2000:]
  assert 'same translations all three beam ways: True' in p.stdout
  rows = out.read_text().splitlines()
  assert rows[0].startswith('| date |') and len(rows) == 3
  assert '| yes |' in rows[2] and f'| {run} | 6 |' in rows[2]
  assert len(rows[0].split('|')) == len(rows[2].split('|'))
  # The profile: a breakdown of a decoding step for greedy and beam 4.
  assert p.stdout.count('ms a decoding step of XLA operations') == 2
