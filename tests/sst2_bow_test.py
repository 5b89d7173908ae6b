"""Test of experiments/sst2_bow.py, the bag-of-words baseline, on part of
SST-2's training split (the whole split is in BENCHMARKS.md)."""

import json
import subprocess
import sys

from conftest import REPO
from conftest import SHARED_DATA


def test_bag_of_words_learns_sentiment(tmp_path):
  out = tmp_path / 'bow.json'
  p = subprocess.run(
      [sys.executable, 'experiments/sst2_bow.py', f'--data={SHARED_DATA}/sst2',
       '--max_train=3000', '--folds=2', f'--out={out}'], cwd=REPO,
      capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr
  results = json.loads(out.read_text())
  assert results['train_sentences'] == 3000 and results['dev_sentences'] == 872
  for name in ('unigrams', 'unigrams+bigrams'):
    r = results[name]
    assert sum(map(sum, r['confusion'])) == 872
    assert r['accuracy'] > 0.6  # Chance is 0.51 (444 of 872 positive).
  p = subprocess.run([sys.executable, 'experiments/sst2_bow.py',
                      f'--data={tmp_path}/nowhere'], cwd=REPO,
                     capture_output=True, text=True, timeout=60)
  assert p.returncode == 2 and 'no such folder' in p.stderr
