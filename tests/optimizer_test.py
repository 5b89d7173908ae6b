"""Tests of lm.optimizer: nanoGPT's schedule, the decay mask, clipping."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm import config as config_lib
from lm import optimizer as optimizer_lib


def nanogpt_lr(it, lr=1e-3, min_lr=1e-4, warmup=100, decay=2000):
  """nanoGPT's get_lr, written out from its description."""
  if it < warmup:
    return lr * (it + 1) / (warmup + 1)
  if it > decay:
    return min_lr
  ratio = (it - warmup) / (decay - warmup)
  return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_schedule_matches_nanogpt():
  c = config_lib.default().optim
  fn = optimizer_lib.schedule(c, 2000)
  for step in [0, 1, 50, 99, 100, 101, 500, 1000, 1999, 2000, 2500]:
    np.testing.assert_allclose(fn(step), nanogpt_lr(step), rtol=1e-5)


def test_decay_mask_spares_biases_norms_embeddings():
  params = {'wte': 1, 'wpe': 1, 'ln_f': {'scale': 1, 'bias': 1},
            'mlp': {'up': {'kernel': 1, 'bias': 1}}}
  mask = optimizer_lib.decay_mask(params)
  assert mask == {'wte': False, 'wpe': False,
                  'ln_f': {'scale': False, 'bias': False},
                  'mlp': {'up': {'kernel': True, 'bias': False}}}


def test_adamw_decays_only_kernels():
  c = config_lib.default().optim
  c.update(grad_clip=0.0, weight_decay=0.5, warmup_steps=0)
  tx = optimizer_lib.make(c, 10)
  params = {'kernel': jnp.ones(3), 'bias': jnp.ones(3)}
  zero = {'kernel': jnp.zeros(3), 'bias': jnp.zeros(3)}
  updates, _ = tx.update(zero, tx.init(params), params)
  assert float(updates['bias'][0]) == 0.0
  np.testing.assert_allclose(updates['kernel'], -1e-3 * 0.5, rtol=1e-5)


def test_clipping_bounds_the_global_norm():
  c = config_lib.default().optim
  c.update(name='sgd', momentum=0.0, weight_decay=0.0, warmup_steps=0,
           lr=1.0, min_lr=1.0, grad_clip=1.0)
  tx = optimizer_lib.make(c, 10)
  params = {'kernel': jnp.zeros(4)}
  updates, _ = tx.update({'kernel': jnp.full(4, 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(optax.tree.norm(updates), 1.0, rtol=1e-5)
