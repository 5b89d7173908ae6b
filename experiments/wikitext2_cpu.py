"""A WikiText-2 training run on CPU, timed, with its final evaluation.

Runs `python -m lm.main --config=CONFIG --workdir=WORKDIR` (or, with
--collect_only, reads a finished workdir) and writes one results file: the
wall-clock time of the whole command, training tokens/s, the periodic
validation losses and the final whole-split metrics (eval_results.json).

  python experiments/wikitext2_cpu.py --config=configs/wikitext2_word.py:cpu \
      --workdir=runs/wt2_word_cpu --out=experiments/results/wikitext2_word_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position


def collect(workdir: str) -> dict:
  """What a finished run left in its workdir."""
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    final = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  rates = [r['tokens_per_sec'] for r in rows if 'tokens_per_sec' in r]
  return {'final': final,
          'eval_loss': {r['step']: r['eval/loss'] for r in rows
                        if 'eval/loss' in r},
          'median_tokens_per_sec': sorted(rates)[len(rates) // 2] if rates
                                   else None,
          'model': config['model'], 'data': config['data'],
          'optim': config['optim'], 'steps': config['train']['num_steps']}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True,
                      help='configs/NAME.py:VARIANT')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True, help='results JSON to write')
  parser.add_argument('--collect_only', action='store_true',
                      help='read a finished workdir instead of training')
  parser.add_argument('--wall_seconds', type=float, default=None,
                      help='with --collect_only: the measured wall time')
  args, overrides = parser.parse_known_args()
  command = [sys.executable, '-m', 'lm.main', f'--config={args.config}',
             f'--workdir={args.workdir}', *overrides]
  wall = args.wall_seconds
  if not args.collect_only:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    wall = time.perf_counter() - start
  record = {'command': ' '.join(['python', '-m', 'lm.main'] + command[3:]),
            'date': datetime.date.today().isoformat(), 'cpu': machine.cpu_model(),
            'cores': os.cpu_count(), 'wall_seconds': wall,
            **collect(args.workdir)}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=2)
  print(json.dumps(record['final'], indent=2))
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
