"""Training throughput on CPU, this project vs nanoGPT, side by side in one run.

Both train nanoGPT's CPU shakespeare_char recipe (4 layers, 4 heads, 128 wide,
block 64, batch 12, log every step) for `--iters` steps; the rounds alternate
between the two so that load from other processes falls on both alike. Each
run's per-step times are its own: nanoGPT's printed `time XXms` lines, and
this project's `tokens_per_sec` in metrics.jsonl (log_every=1, so both sync
on the loss every step). The first `--skip` steps (compilation, warm-up) are
dropped; the median of the rest is reported.

nanoGPT is not part of this project: pass a checkout of it
(github.com/karpathy/nanoGPT) and a Python that has PyTorch, numpy and
requests (experiments/nanogpt.py runs it):

  python experiments/cpu_throughput.py --nanogpt_dir=PATH/nanoGPT \
      --torch_python=PATH/bin/python --rounds=3 --iters=200

Variants of this project can be compared in the same rounds with
`--variant NAME=ENV_OR_FLAG ...` (e.g. `--variant nomalloc=LM_KEEP_FREED_MEMORY=0`),
and another checkout of it (e.g. the commit before a refactoring) with
`--checkout NAME=PATH`: its `python -m lm.main` runs from PATH, so its own `lm`
is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
import nanogpt  # pylint: disable=g-import-not-at-top,wrong-import-position

TOKENS_PER_STEP = 12 * 64


def run_nanogpt(nanogpt_dir, torch_python, iters, out_dir) -> list[float]:
  return nanogpt.step_times_ms(nanogpt.train(
      nanogpt_dir, torch_python, out_dir, f'--max_iters={iters}',
      f'--eval_interval={iters + 1000}', '--always_save_checkpoint=False'))


def run_lm(iters, workdir, env_extra, flags, repo=REPO) -> list[float]:
  env = dict(os.environ, **env_extra)
  subprocess.run(
      [sys.executable, '-m', 'lm.main',
       '--config=configs/shakespeare_char.py:cpu', f'--workdir={workdir}',
       f'--config.train.num_steps={iters}', '--config.train.log_every=1',
       f'--config.train.eval_every={iters + 1000}',
       f'--config.checkpoint.every={iters + 1000}', *flags],
      cwd=repo, env=env, capture_output=True, text=True, check=True)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [1000 * TOKENS_PER_STEP / r['tokens_per_sec'] for r in rows
          if 'tokens_per_sec' in r]


def parse_variant(spec: str):
  name, _, setting = spec.partition('=')
  if setting.startswith('--'):
    return name, {}, [setting]
  key, _, value = setting.partition('=')
  return name, ({key: value} if key else {}), []


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--nanogpt_dir', required=True, type=pathlib.Path,
                  help='a checkout of karpathy/nanoGPT')
  ap.add_argument('--torch_python', required=True,
                  help='a Python interpreter with PyTorch installed')
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--iters', type=int, default=200)
  ap.add_argument('--skip', type=int, default=10,
                  help='first steps of each run left out of the median')
  ap.add_argument('--variant', action='append', default=[],
                  help='NAME=ENV=VALUE or NAME=--config.KEY=VALUE: another '
                  'configuration of this project, timed in the same rounds')
  ap.add_argument('--checkout', action='append', default=[],
                  help='NAME=PATH: another checkout of this project, timed in '
                  'the same rounds')
  ap.add_argument('--out', type=pathlib.Path,
                  default=REPO / 'experiments' / 'results' /
                  'cpu_throughput.json')
  args = ap.parse_args()
  problem = nanogpt.check(args.nanogpt_dir, args.torch_python)
  if problem:
    ap.error(problem)
  nanogpt.prepare(args.nanogpt_dir, args.torch_python)

  contenders = {'nanoGPT': None, 'lm': ({}, [])}
  for spec in args.variant:
    name, env, flags = parse_variant(spec)
    contenders[name] = (env, flags)
  for spec in args.checkout:
    name, _, path = spec.partition('=')
    if not (pathlib.Path(path) / 'lm' / 'main.py').exists():
      ap.error(f'--checkout {spec}: {path} is not a checkout of this project')
    contenders[name] = ({}, [], pathlib.Path(path).resolve())
  times = {name: [] for name in contenders}
  round_medians = {name: [] for name in contenders}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.rounds):
      for name, setting in contenders.items():
        start = time.time()
        out = os.path.join(tmp, f'{name}-{r}')
        if setting is None:
          ms = run_nanogpt(args.nanogpt_dir, args.torch_python, args.iters, out)
        else:
          ms = run_lm(args.iters, out, *setting)
        run_median = statistics.median(ms[args.skip:])
        round_medians[name].append(run_median)
        times[name].extend(ms[args.skip:])
        print(f'round {r + 1}/{args.rounds} {name:>10}: median '
              f'{run_median:6.1f} ms/step ({time.time() - start:.0f}s)',
              flush=True)

  base = statistics.median(times['nanoGPT'])
  results = {'iters': args.iters, 'rounds': args.rounds, 'skip': args.skip,
             'cpu': machine.cpu_model(), 'cores': os.cpu_count(),
             'date': time.strftime('%Y-%m-%d'), 'contenders': {}}
  print(f'\n| contender | median ms/step | tokens/s | speed vs nanoGPT |\n'
        f'| --- | ---: | ---: | ---: |')
  for name, ms in times.items():
    med = statistics.median(ms)
    results['contenders'][name] = {'median_ms': med,
                                   'tokens_per_sec': TOKENS_PER_STEP / med * 1e3,
                                   'speedup_vs_nanogpt': base / med,
                                   # Each round's median, for paired
                                   # comparisons between contenders.
                                   'round_medians_ms': round_medians[name]}
    print(f'| {name} | {med:.1f} | {TOKENS_PER_STEP / med * 1e3:,.0f} | '
          f'{base / med:.2f}x |')
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(results, indent=2) + '\n')
  print(f'\nwrote {args.out}')


if __name__ == '__main__':
  main()
