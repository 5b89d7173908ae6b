"""Optax optimizer: warmup + cosine or inverse-square-root schedule, clipping, masked weight decay.

`optim.freeze_embeddings`, `optim.embedding_lr_scale` and
`optim.encoder_lr_scale` split the parameters into groups: the embedding
tables, wherever they sit (frozen: never updated; or their learning rate
scaled; `optim.embedding_tables`: all of them, or the token table alone,
for pretrained word vectors beside trained positions), the pretrained
encoder of a fine-tuned classifier (its learning rate scaled; its tables by
both scales) and the rest (the new head, at the full rate).
`optim.layer_lr_decay` (ELECTRA's layer-wise learning-rate decay, Clark et
al. 2020) then scales the encoder by depth: block i of L by decay^(L - i),
the embeddings by decay^(L + 1); the head and what sits above the blocks
(the final norm) keep the rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def schedule(c_optim, num_steps: int) -> optax.Schedule:
  """Linear warmup to `lr`, then (`optim.schedule`) either cosine decay to
  `min_lr` and flat (nanoGPT's), or decay with the inverse square root of
  the step, lr * sqrt(warmup / step) (fairseq's `inverse_sqrt`; the original
  Transformer's schedule has this shape, with its peak set by d and the
  warmup).

  Warmup is lr * (step + 1) / (warmup + 1), so the first step already learns.
  """
  lr, min_lr, warmup = c_optim.lr, c_optim.min_lr, c_optim.warmup_steps
  decay = c_optim.decay_steps or num_steps
  inverse_sqrt = c_optim.get('schedule', 'cosine') == 'inverse_sqrt'

  def fn(step):
    step = jnp.asarray(step, jnp.float32)
    warm = lr * (step + 1) / (warmup + 1)
    if inverse_sqrt:
      return jnp.where(step < warmup, warm,
                       lr * jnp.sqrt(max(warmup, 1) / jnp.maximum(step, 1.0)))
    frac = jnp.clip((step - warmup) / max(decay - warmup, 1), 0.0, 1.0)
    cos = min_lr + 0.5 * (1.0 + jnp.cos(jnp.pi * frac)) * (lr - min_lr)
    return jnp.where(step < warmup, warm, cos)
  return fn


def decay_mask(params):
  """Weight decay only on matmul kernels: not biases, norms or embeddings."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


EMBEDDINGS = ('wte', 'wpe', 'wtt')
# `optim.embedding_tables`: which tables the embedding group holds.
TABLES = {'all': EMBEDDINGS, 'tokens': ('wte',)}


def param_group(path, _=None, tables=EMBEDDINGS) -> str:
  """'embeddings' for the `tables` (default: the token, position and type
  tables) at any depth (a GPT's, an encoder's, both stacks of an
  encoder-decoder), 'encoder' for the rest of an encoder's parameters (under
  'encoder'), else 'head'."""
  keys = [getattr(k, 'key', None) for k in path]
  if any(k in tables for k in keys[:2]):
    return 'embeddings'
  return 'encoder' if keys[0] == 'encoder' else 'head'


def depth_scale(path, num_layers: int, decay: float) -> float:
  """`layer_lr_decay`'s factor for the parameter at `path` (see above)."""
  keys = [getattr(k, 'key', None) for k in path]
  group = param_group(path)
  if group == 'embeddings':
    return decay ** (num_layers + 1)
  if group == 'encoder' and len(keys) > 2 and keys[1] == 'blocks':
    return decay ** (num_layers - int(keys[2]))
  return 1.0


def scale_by_depth(decay: float) -> optax.GradientTransformation:
  """Each encoder update times its `depth_scale` (the number of blocks read
  off the tree). Adam's, AdamW's and SGD's updates are linear in the
  learning rate, so this is the learning rate scaled by depth."""
  def scaled(updates):
    paths = [[getattr(k, 'key', None) for k in path] for path, _ in
             jax.tree_util.tree_flatten_with_path(updates)[0]]
    num_layers = len({keys[2] for keys in paths if len(keys) > 2 and
                      keys[:2] == ['encoder', 'blocks']})
    return jax.tree_util.tree_map_with_path(
        lambda path, u: u * depth_scale(path, num_layers, decay), updates)

  def update(updates, state, params=None):
    del params
    return scaled(updates), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _groups(tables):
  """The function of a parameter tree giving each leaf's `param_group`."""
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: param_group(path, tables=tables), params)


def make(c_optim, num_steps: int) -> optax.GradientTransformation:
  """The optimizer named by `optim.name`, with clipping and weight decay, and
  the fine-tuning groups when asked for (see the module docstring)."""
  lr = schedule(c_optim, num_steps)
  freeze, scale = c_optim.freeze_embeddings, c_optim.encoder_lr_scale
  table_scale = scale * c_optim.embedding_lr_scale
  groups = _groups(TABLES[c_optim.get('embedding_tables', 'all')])
  if not freeze and scale == 1.0 and table_scale == 1.0:
    tx = _base(c_optim, lr)
  else:
    tx = optax.multi_transform(
        {'head': _base(c_optim, lr),
         'encoder': _base(c_optim, lambda step: scale * lr(step)),
         'embeddings': (optax.set_to_zero() if freeze else
                        _base(c_optim, lambda step: table_scale * lr(step)))},
        groups)
  if c_optim.layer_lr_decay != 1.0:
    tx = optax.chain(tx, scale_by_depth(c_optim.layer_lr_decay))
  if c_optim.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(c_optim.grad_clip), tx)
  if freeze:  # Frozen gradients never count towards the clipping norm.
    frozen = lambda params: jax.tree.map(lambda g: g == 'embeddings',
                                         groups(params))
    tx = optax.chain(optax.masked(optax.set_to_zero(), frozen), tx)
  if c_optim.state_dtype != 'float32':
    tx = stored_as(tx, jnp.dtype(c_optim.state_dtype))
  return tx


def _base(c_optim, lr) -> optax.GradientTransformation:
  """The optimizer `optim.name` at learning-rate schedule `lr`."""
  if c_optim.name == 'adamw':
    tx = optax.adamw(lr, b1=c_optim.b1, b2=c_optim.b2, eps=c_optim.eps,
                     weight_decay=c_optim.weight_decay, mask=decay_mask)
  elif c_optim.name == 'adam':
    tx = optax.adam(lr, b1=c_optim.b1, b2=c_optim.b2, eps=c_optim.eps)
  elif c_optim.name == 'sgd':
    tx = optax.chain(
        optax.add_decayed_weights(c_optim.weight_decay, mask=decay_mask),
        optax.sgd(lr, momentum=c_optim.momentum or None))
  else:
    raise ValueError(f'unknown optimizer {c_optim.name!r}')
  return tx


def stored_as(tx: optax.GradientTransformation, dtype
              ) -> optax.GradientTransformation:
  """`tx` whose floating-point state (Adam's moments, momentum) is kept in
  `dtype` (e.g. bfloat16: half the optimizer memory) and computed in
  float32 within each update."""
  def cast(tree, to):
    return jax.tree.map(
        lambda x: x.astype(to) if jnp.issubdtype(x.dtype, jnp.floating)
        else x, tree)

  def init(params):
    return cast(tx.init(params), dtype)

  def update(updates, state, params=None):
    updates, state = tx.update(updates, cast(state, jnp.float32), params)
    return updates, cast(state, dtype)
  return optax.GradientTransformation(init, update)
