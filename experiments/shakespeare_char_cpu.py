"""nanoGPT's CPU shakespeare_char recipe, trained here over several seeds.

Trains `configs/shakespeare_char.py:cpu` (4 layers, 4 heads, 128 wide, block
64, batch 12, 2000 steps) once per seed, then reports for each run the best
validation loss as the run logged it (20 fixed batches per eval, nanoGPT's
--eval_iters=20 protocol) and the loss of the final parameters on the whole
validation split (non-overlapping 64-token windows), which is not noisy.
Throughput is measured apart, in cpu_throughput.py.

  python experiments/shakespeare_char_cpu.py --seeds 0 1 2 --out_dir runs/bench

With --nanogpt_dir and --torch_python, nanoGPT's own run of the recipe is
trained too (its seed is fixed) and measured the same two ways.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import nanogpt  # pylint: disable=g-import-not-at-top,wrong-import-position


def full_validation_loss(workdir: str) -> float:
  """Mean next-token loss of the run's latest parameters on the whole split."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lm.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from lm.data import rows as rows_lib  # pylint: disable=g-import-not-at-top
  from lm.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from lm.parallel import sharding  # pylint: disable=g-import-not-at-top
  from lm.train import trainer as train  # pylint: disable=g-import-not-at-top
  c = workdir_lib.saved_config(workdir)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  corpus = corpus_lib.load_corpus(c.data, c.model.max_len)
  trainer = train.Trainer(c, sharding.make_mesh(c.mesh, jax.devices()[:1]))
  params = workdir_lib.load_params(trainer.abstract_state['params'], workdir)
  losses = [float(trainer.eval_step(params, trainer.global_batch(b)))
            for b in rows_lib.tiled_batches(corpus.val, c.model.max_len, 64)]
  return float(np.mean(losses))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  ap.add_argument('--out_dir', default='runs/shakespeare_char_cpu',
                  help='workdirs of the runs (one per seed)')
  ap.add_argument('--out', type=pathlib.Path, default=REPO / 'experiments' /
                  'results' / 'shakespeare_char_cpu.json')
  ap.add_argument('--nanogpt_dir', type=pathlib.Path,
                  help='a checkout of karpathy/nanoGPT, to train as baseline')
  ap.add_argument('--torch_python', help='a Python with PyTorch, for nanoGPT')
  ap.add_argument('overrides', nargs='*', help='extra --config.KEY=VALUE')
  args = ap.parse_args()
  baseline = None
  if args.nanogpt_dir:
    problem = nanogpt.check(args.nanogpt_dir, args.torch_python or '')
    if problem:
      ap.error(problem)
    nanogpt.prepare(args.nanogpt_dir, args.torch_python)
    out = os.path.abspath(os.path.join(args.out_dir, 'nanogpt'))
    print(f'nanoGPT: training in {out} ...', flush=True)
    evals = nanogpt.val_losses(nanogpt.train(args.nanogpt_dir,
                                             args.torch_python, out))
    baseline = {'best_eval_loss': min(evals), 'final_eval_loss': evals[-1],
                'full_val_loss': nanogpt.full_val_loss(
                    args.nanogpt_dir, args.torch_python, out)}
    print(json.dumps(baseline), flush=True)
  rows = []
  for seed in args.seeds:
    workdir = os.path.abspath(os.path.join(args.out_dir, f'seed{seed}'))
    start = time.time()
    print(f'seed {seed}: training in {workdir} ...', flush=True)
    subprocess.run([sys.executable, '-m', 'lm.main',
                    '--config=configs/shakespeare_char.py:cpu',
                    f'--config.seed={seed}', f'--workdir={workdir}',
                    *args.overrides], cwd=REPO, check=True)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      metrics = [json.loads(line) for line in f]
    evals = [r['eval/loss'] for r in metrics if 'eval/loss' in r]
    row = {'seed': seed, 'best_eval_loss': min(evals),
           'final_eval_loss': evals[-1],
           'full_val_loss': full_validation_loss(workdir),
           'minutes': round((time.time() - start) / 60, 1)}
    rows.append(row)
    print(json.dumps(row), flush=True)
  print('\n| seed | best eval loss (20 batches) | final | full validation '
        'split |\n| --- | ---: | ---: | ---: |')
  for r in rows:
    print(f'| {r["seed"]} | {r["best_eval_loss"]:.4f} | '
          f'{r["final_eval_loss"]:.4f} | {r["full_val_loss"]:.4f} |')
  mean = {k: statistics.mean(r[k] for r in rows)
          for k in ('best_eval_loss', 'full_val_loss')}
  print(f'| mean | {mean["best_eval_loss"]:.4f} | | '
        f'{mean["full_val_loss"]:.4f} |')
  if baseline:
    print(f'| nanoGPT (seed 1337) | {baseline["best_eval_loss"]:.4f} | '
          f'{baseline["final_eval_loss"]:.4f} | '
          f'{baseline["full_val_loss"]:.4f} |')
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps({'date': time.strftime('%Y-%m-%d'),
                                  'overrides': args.overrides, 'runs': rows,
                                  'mean': mean, 'nanogpt': baseline},
                                 indent=2) + '\n')
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
