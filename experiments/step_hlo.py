"""Fingerprints of a config's compiled train step, to compare two checkouts.

A refactoring that must not slow the step can show it compiles the same
program: run this in both checkouts and compare the hashes of the lowered
StableHLO and of the compiled HLO (XLA's optimised module). Equal hashes mean
the same computation on the device; any speed difference is then host-side.

  python experiments/step_hlo.py --config=shakespeare_char:cpu

It runs from the checkout's root (its own `lm` is imported), on one CPU
device, abstractly: no data is prepared and nothing is trained. Checkouts from
before `lm/` was split into subpackages are read too.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import pathlib
import sys

REPO = pathlib.Path.cwd()


def _modules():
  """(workdir helpers, trainer module, sharding module) of this checkout."""
  try:
    from lm.parallel import sharding  # pylint: disable=g-import-not-at-top
    from lm.train import trainer  # pylint: disable=g-import-not-at-top
    from lm.train import workdir  # pylint: disable=g-import-not-at-top
  except ImportError:  # Before the subpackages.
    from lm import run as workdir  # pylint: disable=g-import-not-at-top
    from lm import sharding  # pylint: disable=g-import-not-at-top
    from lm import train as trainer  # pylint: disable=g-import-not-at-top
  return workdir, trainer, sharding


def fingerprint(config: str, variant: str, vocab_size: int) -> dict:
  """md5 of the lowered and of the compiled train step of configs/CONFIG.py
  at VARIANT, with a vocabulary of `vocab_size`."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO / 'configs'))
  c = importlib.import_module(config).get_config(variant)
  workdir, trainer_lib, sharding = _modules()
  c = workdir.resolve(c, vocab_size)
  trainer = trainer_lib.Trainer(c, sharding.make_mesh(c.mesh))
  shape = (c.data.batch_size, c.model.max_len)
  batch = {k: jax.ShapeDtypeStruct(shape, np.int32,
                                   sharding=trainer.batch_sharding)
           for k in ('inputs', 'targets')}
  lowered = trainer.train_step.lower(trainer.abstract_state, batch)
  md5 = lambda text: hashlib.md5(text.encode()).hexdigest()
  return {'checkout': str(REPO), 'config': f'{config}:{variant}',
          'stablehlo_md5': md5(lowered.as_text()),
          'compiled_md5': md5(lowered.compile().as_text())}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--config', default='shakespeare_char:cpu',
                  help='CONFIG:VARIANT of configs/ (a causal LM)')
  ap.add_argument('--vocab_size', type=int, default=65,
                  help='the vocabulary the data would give (65: Tiny '
                  'Shakespeare characters)')
  args = ap.parse_args()
  config, _, variant = args.config.partition(':')
  if not (REPO / 'configs' / f'{config}.py').exists():
    ap.error(f'--config={args.config}: no configs/{config}.py here; run from '
             'a checkout\'s root')
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  print(json.dumps(fingerprint(config, variant or None, args.vocab_size)))


if __name__ == '__main__':
  main()
