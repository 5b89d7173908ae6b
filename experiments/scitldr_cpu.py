"""SciTLDR on a 2-core CPU: pretrain by span corruption, fine-tune on
SciTLDR-A from it, and the same model fine-tuned from scratch; one results
file with each run's wall-clock time and final evaluation (ROUGE-1/2/L of
the test split beside the lead-sentence baseline and the oracle).

Runs, in order (a stage whose workdir already holds its results is only
collected):
  pretrain  python -m lm.main --config=configs/scitldr.py:pretrain_VARIANT
  finetune  python -m lm.main --config=configs/scitldr.py:VARIANT
                --config.init_from=<pretrain workdir>
  scratch   python -m lm.main --config=configs/scitldr.py:VARIANT

  python experiments/scitldr_cpu.py --runs=runs/scitldr \
      --out=experiments/results/scitldr_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import sst2_cpu  # pylint: disable=g-import-not-at-top,wrong-import-position

STAGES = ('pretrain', 'finetune', 'scratch')


def command(stage: str, variant: str, runs: str) -> list[str]:
  """The stage's `python -m` arguments (workdir RUNS/STAGE)."""
  if stage not in STAGES:
    raise SystemExit(f'error: unknown stage {stage!r}; use '
                     f'{", ".join(STAGES)}')
  config = f'pretrain_{variant}' if stage == 'pretrain' else variant
  args = ['lm.main', f'--config=configs/scitldr.py:{config}',
          f'--workdir={runs}/{stage}']
  if stage == 'finetune':
    args.append(f'--config.init_from={runs}/pretrain')
  return args


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variant', default='cpu')
  parser.add_argument('--runs', default='runs/scitldr',
                      help='folder of the workdirs')
  parser.add_argument('--stages', default=','.join(STAGES),
                      help='comma-separated: ' + ', '.join(STAGES))
  parser.add_argument('--out', required=True, help='results JSON file')
  args = parser.parse_args()
  results = sst2_cpu.run_stages(
      args.stages.split(','), lambda stage: command(stage, args.variant,
                                                    args.runs),
      args.out, variant=args.variant)
  if 'pretrain' in results and 'finetune' in results:
    total = results['pretrain']['seconds'] + results['finetune']['seconds']
    results['pretrain_plus_finetune_minutes'] = round(total / 60, 1)
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'pretraining plus fine-tuning: {total / 60:.1f} minutes')
  print(f'written to {args.out}')


if __name__ == '__main__':
  main()
