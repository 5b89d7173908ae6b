"""Speed of a study's cells side by side: train steps and KV-cache decoding.

A study's `train.tokens_per_sec` comes from separate runs minutes apart, so
on a shared machine it carries the load of whatever else ran then. This
script builds every cell of a study file in one process and times them in
alternating rounds (so load falls on all alike), reporting the median of
each and its ratio to the first cell:

* train: jitted train steps (the study's batch and context) per second;
* decode: new tokens per second of batched KV-cache sampling over a long
  context (`--decode_len`, default 1024), where the cache read dominates and
  fewer key/value heads should pay off.

  python experiments/variant_speed.py experiments/attention_heads.py
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'experiments'))
from lm import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.eval import decode as decode_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.models import transformer  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.models import layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.parallel import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm import study as study_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.train import trainer as train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

VOCAB = 65  # Tiny Shakespeare's characters; speed does not depend on text.


class Cell:
  """One cell's jitted train step and decoder, on random tokens."""

  def __init__(self, name, c, decode_len, decode_batch):
    c.model.vocab_size = c.model.vocab_size or VOCAB
    c.model.mlp_dim = c.model.mlp_dim or 4 * c.model.embed_dim
    if c.model.dtype == 'auto':
      c.model.dtype = 'float32'
    config_lib.validate(c)
    self.name = name
    self.trainer = train_lib.Trainer(c, sharding.make_mesh(c.mesh))
    self.state = self.trainer.init(jax.random.PRNGKey(0))
    B, L = c.data.batch_size, c.model.max_len
    rng = np.random.default_rng(0)
    ids = rng.integers(0, c.model.vocab_size, (B, L + 1), dtype=np.int32)
    self.batch = self.trainer.global_batch(
        {'inputs': ids[:, :-1], 'targets': ids[:, 1:]})
    self.train_tokens = B * L
    # Decoding: the same layers with a context of decode_len (positions
    # that need a table get one that long; its values do not matter).
    long = c.model.copy_and_resolve_references()
    long.max_len = decode_len
    self.dcfg = layers.TransformerConfig.from_config(long)
    graphdef, params = nnx.split(nnx.eval_shape(
        lambda: transformer.GPT(self.dcfg, rngs=nnx.Rngs(0))), nnx.Param)
    self.params = jax.tree.map(
        lambda s: jnp.full(s.shape, 0.02, s.dtype), params)
    self.sampler = decode_lib.Sampler(graphdef, self.dcfg)
    prompt = np.zeros((decode_batch, decode_len), np.int32)
    self.cache, self.logits = self.sampler.prefill(self.params, prompt, 1)
    self.decode_tokens = decode_batch * (decode_len - 1)

  def train(self, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.trainer.train_step(self.state, self.batch)
    jax.block_until_ready(metrics)
    return steps * self.train_tokens / (time.perf_counter() - t0)

  def decode(self):
    t0 = time.perf_counter()
    out = self.sampler.decode(self.params, self.cache, self.logits, 1,
                              self.dcfg.max_len, jax.random.PRNGKey(0), 0, 1.0)
    jax.block_until_ready(out)
    return self.decode_tokens / (time.perf_counter() - t0)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('study', help='a study file, e.g. experiments/attention_heads.py')
  p.add_argument('--rounds', type=int, default=5)
  p.add_argument('--steps', type=int, default=20,
                 help='train steps per cell per round')
  p.add_argument('--decode_len', type=int, default=1024)
  p.add_argument('--decode_batch', type=int, default=16)
  args = p.parse_args(argv)
  try:
    study = study_lib.load_study(args.study)
    base = study_lib.load_config(study['base'])
  except (config_lib.ConfigError, OSError, ValueError) as error:
    raise SystemExit(f'error: {error}') from None
  cells = []
  for name, overrides in study['grid'].items():
    c = study_lib.cell_config(base, {**study.get('overrides', {}),
                                     **overrides}, seed=0)
    print(f'compiling {name}', flush=True)
    cell = Cell(name, c, args.decode_len, args.decode_batch)
    cell.train(2)  # Compile and warm up.
    cell.decode()
    cells.append(cell)
  train = {cell.name: [] for cell in cells}
  decode = {cell.name: [] for cell in cells}
  for r in range(args.rounds):
    print(f'round {r + 1}/{args.rounds}', flush=True)
    for cell in cells:
      train[cell.name].append(cell.train(args.steps))
      decode[cell.name].append(cell.decode())
  first = cells[0].name
  med = lambda xs: statistics.median(xs)
  print(f'\n{args.study}: {machine.cpu_model()}, {jax.devices()[0].platform}, '
        f'jax {jax.__version__}, {datetime.date.today()}; medians of '
        f'{args.rounds} rounds')
  print(f'| cell | train tokens/s | vs {first} | decode tokens/s '
        f'(context {args.decode_len}, batch {args.decode_batch}) | vs {first} |')
  print('| --- | ---: | ---: | ---: | ---: |')
  for cell in cells:
    t, d = med(train[cell.name]), med(decode[cell.name])
    print(f'| {cell.name} | {t:,.0f} | {t / med(train[first]):.2f} | '
          f'{d:,.0f} | {d / med(decode[first]):.2f} |')


if __name__ == '__main__':
  main()
