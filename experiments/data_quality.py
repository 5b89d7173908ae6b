"""The data-quality report (`lm.data_report`) of every corpus this repository
ships a config for, and one headline table of them.

  python experiments/data_quality.py [--out=experiments/data_quality]

Writes OUT/<corpus>/report.{json,md} and lengths.png, and OUT/summary.md:
per evaluation split, exact and near duplicates of training documents,
documents sharing a 13-gram with training, and personal data found.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
# One config per corpus (configs that share a corpus read it the same way).
CORPORA = {
    'tiny_shakespeare': 'configs/shakespeare_char.py:cpu',
    'wikitext2': 'configs/wikitext2_word.py:cpu',
    'sst2': 'configs/sst2.py:cpu',
    'multi30k': 'configs/multi30k.py:cpu',
    'scitldr': 'configs/scitldr.py:cpu',
}


def summary(reports: dict) -> str:
  """The headline table: one row per corpus and evaluation split."""
  lines = ['| corpus | split | documents | exact duplicates of training | '
           'near duplicates | sharing a 13-gram with training | '
           'personal data (train / eval) |',
           '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
  for name, r in reports.items():
    train_pii = sum(sum(p['counts'].values()) for k, p in
                    r['personal_data'].items() if k.split('.')[0] == 'train')
    for key, c in r['cross'].items():
      e, n, k = (c['exact_duplicates'], c['near_duplicates'],
                 c['contamination'])
      eval_pii = sum(r['personal_data'][key]['counts'].values())
      lines.append(
          f'| {name} | {key} | {r["stats"][key]["documents"]:,} | '
          f'{e["documents"]} ({100 * e["share"]:.2f}%) | '
          f'{n["documents"]} ({100 * n["share"]:.2f}%) | '
          f'{k["documents_contaminated"]} of {k["documents_checked"]} '
          f'({100 * k["documents_contaminated_share"]:.2f}%) | '
          f'{train_pii} / {eval_pii} |')
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=str(REPO / 'experiments' /
                                           'data_quality'))
  args = parser.parse_args()
  reports = {}
  for i, (name, config) in enumerate(CORPORA.items()):
    out = os.path.join(args.out, name)
    print(f'[{i + 1}/{len(CORPORA)}] {name} ({config})', flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, '-m', 'lm.data_report',
                           f'--config={config}', f'--out={out}'], cwd=REPO,
                          check=False)
    if done.returncode:
      sys.exit(f'{name}: lm.data_report failed (status {done.returncode})')
    with open(os.path.join(out, 'report.json')) as f:
      reports[name] = json.load(f)
    print(f'  {time.perf_counter() - start:.0f} s', flush=True)
  table = summary(reports)
  with open(os.path.join(args.out, 'summary.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  main()
