"""CPU checks of the scale-out targets, on 8 simulated devices.

1. Compile time of the train step against depth, unrolled vs scanned over
   layers (`model.scan_layers`): the scanned stack should stay flat.
2. Per-device parameter + optimizer memory under FSDP over 8 devices, from
   the compiled step's memory analysis, against one device's: the target is
   at most 1/8 of it plus 5%.

  python experiments/scale_checks.py [--layers=4,8,16,32]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'configs'))
sys.path.insert(0, str(REPO / 'experiments'))
import shakespeare_char  # pylint: disable=g-import-not-at-top,wrong-import-position
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import dryrun  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def config(layers=4, scan=False, **mesh):
  c = shakespeare_char.get_config('cpu')
  c.model.update(num_layers=layers, scan_layers=scan)
  c.data.batch_size = 16
  c.mesh.update(**mesh)
  return workdir_lib.resolve(c, 65)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--layers', default='4,8,16,32')
  args = p.parse_args(argv)
  print(f'{machine.cpu_model()}, jax {jax.__version__}; the nanoGPT CPU model '
        '(128 wide, context 64, batch 16)\n')
  one = jax.devices()[:1]
  print('| layers | compile, unrolled (s) | compile, scanned (s) |')
  print('| ---: | ---: | ---: |')
  for n in map(int, args.layers.split(',')):
    plain = dryrun.analyse(config(n), devices=one).compile_seconds
    scanned = dryrun.analyse(config(n, scan=True), devices=one).compile_seconds
    print(f'| {n} | {plain:.1f} | {scanned:.1f} |', flush=True)

  single = dryrun.analyse(config(data=-1), devices=one)
  fsdp = dryrun.analyse(config(data=1, fsdp=8))
  s1, s8 = single.state_bytes, fsdp.state_bytes
  print('\n| mesh | params + optimizer state per device (compiled) | ratio |')
  print('| --- | ---: | ---: |')
  print(f'| 1 device | {s1:,} B | 1 |')
  print(f'| fsdp = 8 | {s8:,} B | 1/{s1 / s8:.2f} |')
  print(f'\ntarget <= 1/8 + 5% = {s1 / 8 * 1.05:,.0f} B: '
        f'{"met" if s8 <= s1 / 8 * 1.05 else "NOT met"}')


if __name__ == '__main__':
  main()
