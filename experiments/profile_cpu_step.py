"""Where a CPU train step's time goes: a jax.profiler trace, summed by op kind.

Profiles `--steps` steps of the train step of `configs/shakespeare_char.py:cpu`
and groups the XLA:CPU thunks of the trace by what they compute (matmuls in
YNNPACK or Eigen, reductions, elementwise loop fusions), using the optimized
HLO that XLA dumps beside the trace. Writes the table to --out.

  python experiments/profile_cpu_step.py --steps 10
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--steps', type=int, default=10)
  ap.add_argument('--out', type=pathlib.Path, default=REPO / 'experiments' /
                  'results' / 'profile_cpu_step.txt')
  args = ap.parse_args()
  tmp = tempfile.mkdtemp()
  os.environ['XLA_FLAGS'] = (f'--xla_dump_to={tmp}/hlo --xla_dump_hlo_as_text '
                             + os.environ.get('XLA_FLAGS', ''))
  import jax  # pylint: disable=g-import-not-at-top
  from lm.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from lm.data import rows as rows_lib  # pylint: disable=g-import-not-at-top
  from lm.parallel import host  # pylint: disable=g-import-not-at-top
  from lm.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from lm.parallel import sharding  # pylint: disable=g-import-not-at-top
  from lm.train import trainer as train  # pylint: disable=g-import-not-at-top
  host.keep_freed_memory()
  sys.path.insert(0, str(REPO / 'configs'))
  import shakespeare_char  # pylint: disable=g-import-not-at-top
  c = workdir_lib.resolve(shakespeare_char.get_config('cpu'), 65)
  trainer = train.Trainer(c, sharding.make_mesh(c.mesh))
  state = trainer.init(jax.random.PRNGKey(0))
  corpus = corpus_lib.load_corpus(c.data, c.model.max_len)
  batches = iter(
      rows_lib.train_dataset(corpus.train, c.model.max_len, c.data.batch_size,
                             0))
  for _ in range(5):  # Compile and warm up outside the trace.
    state, m = trainer.train_step(state, trainer.global_batch(next(batches)))
    float(m['train/loss'])
  with jax.profiler.trace(f'{tmp}/trace', create_perfetto_trace=True):
    for _ in range(args.steps):
      state, m = trainer.train_step(state, trainer.global_batch(next(batches)))
      float(m['train/loss'])

  trace = json.load(gzip.open(glob.glob(f'{tmp}/trace/**/*.trace.json.gz',
                                        recursive=True)[0]))
  events = [e for e in trace['traceEvents'] if e.get('ph') == 'X']
  hlo = glob.glob(f'{tmp}/hlo/*jit__train_step*after_optimizations.txt')[0]
  kinds = {}
  for line in open(hlo):
    m = re.match(r'\s*%?([\w.\-]+) = \S+ (\w[\w-]*)\(', line)
    if m:
      op_name = re.search(r'op_name="([^"]+)"', line)
      last = op_name.group(1).split('/')[-1] if op_name else m.group(2)
      if m.group(1).startswith('ynn_fusion'):
        kinds[m.group(1)] = 'YNNPACK ' + ('matmul' if 'dot_general' in last
                                          else last)
      elif m.group(2) == 'dot':
        kinds[m.group(1)] = 'Eigen matmul'
      elif m.group(2) == 'fusion':
        kinds[m.group(1)] = 'loop fusion: ' + last
  totals = collections.defaultdict(lambda: [0, 0.0])
  for e in events:
    if e['name'] in kinds:
      totals[kinds[e['name']]][0] += 1
      totals[kinds[e['name']]][1] += e.get('dur', 0) / 1e3
  n = args.steps
  lines = [f'# XLA:CPU thunks of one train step ({c.model.num_layers} layers, '
           f'{c.model.embed_dim} wide, batch {c.data.batch_size} x '
           f'{c.model.max_len}), mean over {n} steps',
           f'total thunk time {sum(t for _, t in totals.values()) / n:.1f} ms '
           f'in {sum(k for k, _ in totals.values()) / n:.0f} thunks',
           '', '| ms/step | thunks/step | kind |', '| ---: | ---: | --- |']
  for kind, (count, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
    if ms / n >= 0.05:
      lines.append(f'| {ms / n:.2f} | {count / n:.0f} | {kind} |')
  text = '\n'.join(lines) + '\n'
  print(text)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(text)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
