"""BERT step times on this machine: masked-LM pretraining (pieces or whole
words masked), ELECTRA pretraining (with --variant=cpu, the electra
variant) and SST-2 fine-tuning with and without length-grouped
batches, one after another (--probes picks some).

Each probe is a short ordinary run (its own workdir under --runs, no
checkpoints, no final evaluation); the figure is the median of its logged
steps/s after the first log (compilation excluded by the loop), so run it
on an idle machine:

  python experiments/bert_speed.py --variant=mini --steps=60 \\
      --out=experiments/results/bert_speed.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

PROBES = {
    'pretrain': ('lm.main', 'configs/bert_wikitext2.py', []),
    'pretrain_whole_word': ('lm.main', 'configs/bert_wikitext2.py',
                            ['--config.data.whole_word_mask=true']),
    'pretrain_electra': ('lm.main', 'configs/bert_wikitext2.py',
                         ['--config.task=replaced_token',
                          '--config.data.mask_rate=0.25']),
    'finetune_rows_64': ('lm.finetune', 'configs/sst2.py',
                         ['--config.data.length_bucket=0']),
    'finetune_length_grouped': ('lm.finetune', 'configs/sst2.py', []),
}


def probe(name: str, variant: str, steps: int, runs: str) -> dict:
  module, config, extra = PROBES[name]
  workdir = os.path.join(runs, name)
  shutil.rmtree(workdir, ignore_errors=True)
  cmd = [sys.executable, '-m', module, f'--config={config}:{variant}',
         f'--workdir={workdir}', f'--config.train.num_steps={steps}',
         '--config.train.log_every=10', f'--config.train.eval_every={steps}',
         '--config.train.early_stopping=0', '--config.eval.final=false',
         f'--config.checkpoint.every={steps}', *extra]
  print(name + ': ' + ' '.join(cmd[1:]), flush=True)
  subprocess.run(cmd, cwd=REPO, check=True)
  with open(os.path.join(REPO, workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  # Neither the first log nor the last (the final step's, next to its
  # evaluation and save).
  rates = [r for r in rows if 'steps_per_sec' in r][1:-1]
  if not rates:
    raise SystemExit(f'error: {name} logged too few steps; raise --steps')
  return {'command': ' '.join(['python', *cmd[1:]]),
          'steps_per_sec': statistics.median(r['steps_per_sec']
                                             for r in rates),
          'tokens_per_sec': statistics.median(r['tokens_per_sec']
                                              for r in rates),
          'logs': len(rates)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variant', default='mini')
  parser.add_argument('--steps', type=int, default=60,
                      help='steps per probe (logged every 10)')
  parser.add_argument('--probes', default=','.join(PROBES),
                      help=f'comma-separated, of {", ".join(PROBES)}')
  parser.add_argument('--runs', default='runs/bert_speed')
  parser.add_argument('--out', required=True, help='results JSON file')
  args = parser.parse_args()
  if args.steps < 40:
    parser.error('--steps must be at least 40 (2 logs past the first)')
  probes = [p for p in args.probes.split(',') if p]
  unknown = [p for p in probes if p not in PROBES]
  if unknown or not probes:
    parser.error(f'unknown --probes {",".join(unknown)!r}; choose from '
                 f'{", ".join(PROBES)}')
  results = {'date': datetime.date.today().isoformat(),
             'cpu': machine.cpu_model(), 'cores': os.cpu_count(),
             'variant': args.variant, 'steps': args.steps}
  for name in probes:
    results[name] = probe(name, args.variant, args.steps, args.runs)
    print(f'{name}: {results[name]["steps_per_sec"]:.3f} steps/s, '
          f'{results[name]["tokens_per_sec"]:,.0f} row positions/s',
          flush=True)
  machine.write_results(results, args.out)


if __name__ == '__main__':
  main()
