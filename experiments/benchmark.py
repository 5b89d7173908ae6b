"""Training speed of GPT-2 small and medium: tokens/s, step time, MFU, memory.

Builds the model (GPT-2 shapes: vocabulary 50,304, context 1,024, GELU,
tied head) on every device present, data parallel unless the mesh flags say
otherwise, trains on random tokens (the input pipeline is measured by
experiments/input_pipeline.py) and times `--steps` steps after `--warmup`
(compilation). Model FLOPs follow lm/train/flops.py (6N + 12·L·H·K·T, PaLM's
convention); MFU is against the chip's dense bf16 peak. Memory: the
compiled step's per-device peak (lm.train.dryrun), and the device's measured peak
where the backend reports one. Each run appends a row to BENCHMARKS.md.

  python experiments/benchmark.py                        # on a GPU or TPU
  python experiments/benchmark.py --models=tiny --steps=2 --no_record  # CPU
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'experiments'))
from lm import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import dryrun  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import flops  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.parallel import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import trainer as train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

# name: (layers, heads, width); GPT-2's vocabulary padded to 50,304.
MODELS = {'gpt2': (12, 12, 768), 'gpt2-medium': (24, 16, 1024),
          'tiny': (2, 2, 64)}
SECTION = '## GPT-2 training speed (`experiments/benchmark.py`)'
HEADER = ('| date | model | devices | mesh | dtype | attention, remat | '
          'batch x seq | '
          'step ms | tokens/s | MFU | peak memory / device (compiled, '
          'measured) |\n| --- | --- | --- | --- | --- | --- | ---: | ---: | '
          '---: | ---: | ---: |')


def model_config(name, args):
  layers, heads, width = MODELS[name]
  c = config_lib.default()
  c.model.update(num_layers=layers, num_heads=heads, embed_dim=width,
                 max_len=args.seq_len if name != 'tiny' else 64,
                 vocab_size=50304 if name != 'tiny' else 256,
                 attention_impl=args.attention_impl, remat=args.remat,
                 scan_layers=args.scan_layers, dtype=args.dtype)
  c.data.batch_size = args.batch_size
  c.mesh.update(data=args.data, fsdp=args.fsdp, tensor=args.tensor)
  c.train.num_steps = args.warmup + args.steps
  config_lib.validate(c)
  return workdir_lib.resolve(c, c.model.vocab_size)


def measure(name, args) -> dict:
  c = model_config(name, args)
  mesh = sharding.make_mesh(c.mesh)
  sharding.check_batch(c, mesh)
  sharding.check_model(c, mesh)
  trainer = train_lib.Trainer(c, mesh)
  report = dryrun.analyse(c, trainer=trainer)
  train_step = report.compiled  # Compiled once, for the report and the run.
  state = trainer.init(jax.random.PRNGKey(0))
  B, L = c.data.batch_size, c.model.max_len
  ids = np.random.default_rng(0).integers(0, c.model.vocab_size, (B, L + 1),
                                          dtype=np.int32)
  batch = trainer.global_batch({'inputs': ids[:, :-1], 'targets': ids[:, 1:]})
  for _ in range(args.warmup):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for i in range(args.steps):
    t0 = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    print(f'  {name} step {i + 1}/{args.steps}: {times[-1] * 1e3:.1f} ms',
          flush=True)
  step = float(np.median(times))
  tokens_per_sec = B * L / step
  device = jax.devices()[0]
  peak = flops.peak_flops(device.device_kind)
  per_token = flops.train_flops_per_token(trainer.model_cfg,
                                          report.num_params)
  mfu = (tokens_per_sec * per_token / (peak * jax.device_count())
         if peak else None)
  measured = (device.memory_stats() or {}).get('peak_bytes_in_use') if (
      device.platform != 'cpu') else None
  return {'model': f'{name} ({report.num_params / 1e6:.3g}M)',
          'devices': f'{jax.device_count()} x {device.device_kind}',
          'mesh': 'x'.join(str(v) for v in report.mesh.values()),
          'dtype': c.model.dtype,
          'attention': f'{c.model.attention_impl}, remat {c.model.remat}' + (
              ', scan' if c.model.scan_layers else ''),
          'shape': f'{B} x {L}', 'step_ms': step * 1e3,
          'tokens_per_sec': tokens_per_sec, 'mfu': mfu,
          'compiled_peak': report.peak_bytes, 'measured_peak': measured,
          'loss': float(metrics['train/loss'])}


def row(r: dict) -> str:
  size = lambda b: '—' if b is None else dryrun.format_bytes(b)
  mfu = '—' if r['mfu'] is None else f"{r['mfu']:.1%}"
  return (f"| {datetime.date.today()} | {r['model']} | {r['devices']} | "
          f"{r['mesh']} | {r['dtype']} | {r['attention']} | {r['shape']} | "
          f"{r['step_ms']:,.1f} | {r['tokens_per_sec']:,.0f} | {mfu} | "
          f"{size(r['compiled_peak'])}, {size(r['measured_peak'])} |")


def record(rows: list[str], path: pathlib.Path) -> None:
  """Appends the rows to the benchmark section's table (made if absent)."""
  text = path.read_text() if path.exists() else '# Benchmarks\n'
  if SECTION not in text:
    text = (text.rstrip('\n') + f'\n\n{SECTION}\n\nRows appended by '
            '`python experiments/benchmark.py [flags]`: random tokens, the '
            'median step after warm-up; MFU against the dense bf16 peak '
            f'(lm/train/flops.py).\n\n{HEADER}\n')
  start = text.index(SECTION)
  end = text.find('\n## ', start + len(SECTION))
  end = len(text) if end < 0 else end
  section = text[start:end].rstrip('\n') + '\n' + '\n'.join(rows) + '\n'
  path.write_text(text[:start] + section + text[end:])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--models', default='gpt2,gpt2-medium',
                 help=f'comma-separated, of {", ".join(MODELS)}')
  p.add_argument('--batch_size', type=int, default=16,
                 help='global batch (rows of --seq_len tokens)')
  p.add_argument('--seq_len', type=int, default=1024)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--dtype', default='auto',
                 help='compute dtype; auto: bfloat16 off CPU')
  p.add_argument('--attention_impl', default='auto',
                 help='auto: cudnn on GPU, splash on TPU, xla elsewhere')
  p.add_argument('--remat', default='none', choices=('none', 'full', 'dots'))
  p.add_argument('--scan_layers', action='store_true')
  p.add_argument('--data', type=int, default=-1)
  p.add_argument('--fsdp', type=int, default=1)
  p.add_argument('--tensor', type=int, default=1)
  p.add_argument('--no_record', action='store_true',
                 help='print the rows only; leave BENCHMARKS.md alone')
  p.add_argument('--out', default=str(REPO / 'BENCHMARKS.md'))
  args = p.parse_args(argv)
  if args.attention_impl == 'auto':
    args.attention_impl = {'gpu': 'cudnn', 'tpu': 'splash'}.get(
        jax.default_backend(), 'xla')
  names = args.models.split(',')
  unknown = [n for n in names if n not in MODELS]
  if unknown:
    raise SystemExit(f'error: unknown model {unknown[0]!r}; choose from '
                     f'{", ".join(MODELS)}')
  print(f'{jax.device_count()} x {jax.devices()[0].device_kind} '
        f'({machine.cpu_model()} host), jax {jax.__version__}', flush=True)
  rows = []
  for name in names:
    try:
      r = measure(name, args)
    except (config_lib.ConfigError, sharding.MeshError) as error:
      raise SystemExit(f'error: {error}') from None
    rows.append(row(r))
    print(HEADER.splitlines()[0] + '\n' + rows[-1], flush=True)
  if not args.no_record:
    record(rows, pathlib.Path(args.out))
    print(f'appended {len(rows)} row(s) to {args.out}')


if __name__ == '__main__':
  main()
