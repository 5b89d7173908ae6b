"""BERT on a 2-core CPU: pretrain on WikiText-2, fine-tune on SST-2, and the
same encoder fine-tuned from scratch; one results file for the report.

Runs, in order (a stage whose workdir already holds its results is only
collected):
  pretrain  python -m lm.main --config=configs/bert_wikitext2.py:VARIANT
  finetune  python -m lm.finetune --config=configs/sst2.py:VARIANT
                --config.init_from=<pretrain workdir>
  scratch   python -m lm.finetune --config=configs/sst2.py:VARIANT
and writes each run's wall-clock time (the command's, or for a collected run
the time from its tokenizer file, written when training starts, to its
eval_results.json), its final evaluation and its eval curve.

  python experiments/sst2_cpu.py --variant=mini --runs=runs/bert \
      --stages=pretrain,finetune,finetune@5e-4,scratch@5e-4 \
      --out=experiments/results/sst2_cpu.json

`--variant=cpu` runs the measured CPU recipe (rotary positions, 40% masking;
configs/bert_wikitext2.py).
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


def command(stage: str, variant: str, runs: str) -> list[str]:
  """The stage's command; 'finetune@LR' and 'scratch@LR' at optim.lr=LR, in
  workdirs RUNS/finetune_lrLR and RUNS/scratch_lrLR."""
  if stage == 'pretrain':
    return ['lm.main', f'--config=configs/bert_wikitext2.py:{variant}',
            f'--workdir={runs}/pretrain']
  name, _, lr = stage.partition('@')
  if name not in ('finetune', 'scratch'):
    raise SystemExit(f'error: unknown stage {stage!r}; use pretrain, '
                     'finetune[@LR] or scratch[@LR]')
  args = ['lm.finetune', f'--config=configs/sst2.py:{variant}',
          f'--workdir={runs}/{name}' + (f'_lr{lr}' if lr else '')]
  if name == 'finetune':
    args.append(f'--config.init_from={runs}/pretrain')
  if lr:
    args.append(f'--config.optim.lr={lr}')
  return args


def collect(workdir: str, seconds: float | None) -> dict:
  """What a finished run left in its workdir."""
  results = os.path.join(workdir, 'eval_results.json')
  with open(results) as f:
    final = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  if seconds is None:
    seconds = (os.path.getmtime(results) -
               os.path.getmtime(os.path.join(workdir, 'tokenizer.json')))
  rates = sorted(r['tokens_per_sec'] for r in rows if 'tokens_per_sec' in r)
  return {'seconds': round(seconds, 1), 'final': final,
          'steps': max(r['step'] for r in rows),
          'median_tokens_per_sec': rates[len(rates) // 2] if rates else None,
          'eval': {r['step']: {k: r[k] for k in ('eval/loss', 'eval/accuracy')
                               if k in r}
                   for r in rows if 'eval/loss' in r}}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variant', default='mini')
  parser.add_argument('--runs', default='runs/bert',
                      help='folder of the three workdirs')
  parser.add_argument('--stages', default='pretrain,finetune,scratch',
                      help='comma-separated: pretrain, finetune[@LR], '
                      'scratch[@LR] (@LR: at that optim.lr, its own workdir)')
  parser.add_argument('--out', required=True, help='results JSON file')
  args = parser.parse_args()
  run_stages(args.stages.split(','), lambda stage: command(
      stage, args.variant, args.runs), args.out, variant=args.variant)
  print(f'written to {args.out}')


def run_stages(stages, command_of, out: str, **about) -> dict:
  """Runs each stage's `python -m` command (`command_of(stage)`, its
  workdir the third argument's value) unless its workdir holds its results
  already, collects it, and writes all stages' results to `out` after each
  (keeping those an earlier call measured); returns them."""
  results = {'date': datetime.date.today().isoformat(),
             'cpu': machine.cpu_model(), 'cores': os.cpu_count(), **about}
  if os.path.exists(out):  # Keep stages measured by an earlier call.
    with open(out) as f:
      results = {**json.load(f), **results}
  for stage in stages:
    cmd = command_of(stage)
    workdir = cmd[2].split('=', 1)[1]
    seconds = None
    if not os.path.exists(os.path.join(workdir, 'eval_results.json')):
      print(f'{stage}: python -m {" ".join(cmd)}', flush=True)
      start = time.perf_counter()
      subprocess.run([sys.executable, '-m', *cmd], cwd=REPO, check=True)
      seconds = time.perf_counter() - start
    results[stage] = {'command': 'python -m ' + ' '.join(cmd),
                      **collect(os.path.join(REPO, workdir), seconds)}
    print(f'{stage}: {results[stage]["seconds"] / 60:.1f} min, final '
          f'{json.dumps(results[stage]["final"])[:300]}', flush=True)
    with open(out, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  main()
