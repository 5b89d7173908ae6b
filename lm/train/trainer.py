"""The functional core: train state, loss, and the sharded train/eval steps.

The model is split once into a static graph definition and a pytree of
parameters; every step is a pure function of pytrees, jitted with explicit
in/out shardings (what pjit became) and a donated train state. The train
state is a plain dict: {'step', 'params', 'opt_state', 'rng', 'nonfinite'},
plus 'ema' (a moving average of 'params') when `train.ema_decay` > 0.
"""

from __future__ import annotations

from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from lm import tasks
from lm.parallel import sharding
from lm.train import optimizer as optimizer_lib

State = dict[str, Any]


BATCH_NAMES = ('batch',)  # Rows sharded; the rest of each array whole.


def _keys(path) -> tuple:
  return tuple(getattr(k, 'key', getattr(k, 'idx', None)) for k in path)


def _like_params(opt_state, param_shardings, other):
  """Shardings of the optimizer state: a leaf whose path ends with a
  parameter's path (Adam's moments, momentum; under multi_transform too,
  where frozen groups hold no state) is laid out as that parameter, the
  rest (counts, scalars) gets `other`."""
  by_path = {_keys(p): s for p, s in
             jax.tree_util.tree_leaves_with_path(param_shardings)}
  lengths = sorted({len(p) for p in by_path}, reverse=True)

  def sharding_of(path, leaf):
    keys = _keys(path)
    for n in lengths:
      if n <= len(keys) and keys[-n:] in by_path:
        return by_path[keys[-n:]]
    return other
  return jax.tree_util.tree_map_with_path(sharding_of, opt_state)


def model_params(state: State):
  """The parameters a run is evaluated and used with: the moving average
  (kept in float32) in the parameters' dtypes when the state keeps one
  (`train.ema_decay` > 0), else its parameters."""
  if 'ema' not in state:
    return state['params']
  return jax.tree.map(lambda e, p: e.astype(p.dtype), state['ema'],
                      state['params'])


def _float32_copy(params):
  """The moving average's start: a float32 copy of the parameters (in
  bfloat16, 0.2% of a step's change would round away)."""
  return jax.tree.map(lambda p: jnp.copy(p).astype(jnp.float32), params)


class Trainer:
  """Builds the sharded state and the jitted steps for one model and mesh."""

  def __init__(self, config, mesh: Mesh):
    self.config = config
    self.mesh = mesh
    self.rules = tuple(config.mesh.rules)
    self.task = tasks.get(config)
    self.model_cfg = self.task.model_cfg
    self.tx = optimizer_lib.make(config.optim, config.train.num_steps)
    self.lr = optimizer_lib.schedule(config.optim, config.train.num_steps)

    self.graphdef, abstract_params = self.task.abstract()
    self.param_names = jax.tree.map(
        tuple, nnx.to_pure_dict(nnx.get_partition_spec(abstract_params)),
        is_leaf=lambda x: isinstance(x, P))
    abstract_state = jax.eval_shape(self._init, jax.random.PRNGKey(0))
    self.state_shardings = self._state_shardings(abstract_state)
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract_state, self.state_shardings)
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharding = sharding.named(mesh, BATCH_NAMES, self.rules)

    self.init = jax.jit(self._init, out_shardings=self.state_shardings)
    self.train_step = jax.jit(
        self._train_step,
        in_shardings=(self.state_shardings, self.batch_sharding),
        out_shardings=(self.state_shardings, self.replicated),
        donate_argnums=0)
    self.eval_step = self._jit_on_params(self._eval_step)
    self.nll_step = self._jit_on_params(self._nll_step)
    self.sums_step = self._jit_on_params(self._sums_step)
    self.logits_step = self._jit_on_params(self.logits)

  def _jit_on_params(self, fn):
    """`fn(params, batch)` jitted over sharded parameters and a batch, with
    a replicated result."""
    return jax.jit(fn, in_shardings=(self.state_shardings['params'],
                                     self.batch_sharding),
                   out_shardings=self.replicated)

  # -- state -----------------------------------------------------------------

  def _init(self, rng) -> State:
    params_rng, dropout_rng = jax.random.split(rng)
    model = self.task.build(rngs=nnx.Rngs(params=params_rng))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    state = {'step': jnp.zeros((), jnp.int32), 'params': params,
             'opt_state': self.tx.init(params), 'rng': dropout_rng,
             # Skipped non-finite updates: how many, the first one's step
             # (-1: none) and its first non-finite gradient leaf.
             'nonfinite': {'count': jnp.zeros((), jnp.int32),
                           'first_step': -jnp.ones((), jnp.int32),
                           'first_leaf': jnp.zeros((), jnp.int32)}}
    if self.config.train.ema_decay > 0:
      state['ema'] = _float32_copy(params)
    return state

  def _state_shardings(self, abstract_state: State):
    params = sharding.tree_shardings(abstract_state['params'],
                                     self.param_names, self.mesh, self.rules)
    replicated = NamedSharding(self.mesh, P())
    opt_state = _like_params(abstract_state['opt_state'], params, replicated)
    shardings = {'step': replicated, 'params': params, 'opt_state': opt_state,
                 'rng': replicated,
                 'nonfinite': jax.tree.map(lambda _: replicated,
                                           abstract_state['nonfinite'])}
    if 'ema' in abstract_state:
      shardings['ema'] = params
    return shardings

  def restart_ema(self, state: State) -> State:
    """`state` with its moving average restarted at its parameters (a fresh
    run, after any init_from); unchanged when it keeps none."""
    if 'ema' in state:
      state['ema'] = jax.jit(
          _float32_copy,
          out_shardings=self.state_shardings['params'])(state['params'])
    return state

  def merge(self, params):
    """The model with these parameters (used inside jitted functions)."""
    return nnx.merge(self.graphdef, params)

  def global_batch(self, local_batch: dict[str, np.ndarray]):
    """This process's share of a batch, assembled into global arrays."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in local_batch.items()}

  # -- steps -----------------------------------------------------------------

  def logits(self, params, batch):
    """Logits of a batch: [B, L, V] for the language-model tasks, [B, C]
    for classification."""
    return self.task.forward(self.merge(params), batch)

  def scored(self, params, batch, rng=None):
    """(logits, targets, weights) of the positions the loss counts."""
    return self.task.scored(self.merge(params), batch, rng)

  def loss(self, params, batch, rng=None):
    """The task's loss of the batch; dropout is on when `rng` is given."""
    return self.task.loss(self.merge(params), batch, rng)

  def _grads(self, params, batch, rng):
    """Loss and gradients, averaged over `grad_accum_steps` micro-batches."""
    accum = self.config.optim.grad_accum_steps
    grad_fn = jax.value_and_grad(self.loss)
    if accum == 1:
      return grad_fn(params, batch, rng)
    # Micro-batch i takes rows i, i + accum, ...: every data-parallel device
    # holds a contiguous block of rows, so each micro-batch spans all devices.
    micro = jax.tree.map(
        lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]
                            ).swapaxes(0, 1), batch)

    def body(carry, xs):
      i, mb = xs
      loss, grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, carry, (loss, grads)), None
    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
    return jax.tree.map(lambda x: x / accum, total)

  def _train_step(self, state: State, batch) -> tuple[State, dict]:
    with sharding.activation_rules(self.mesh, self.rules):
      rng = jax.random.fold_in(state['rng'], state['step'])
      loss, grads = self._grads(state['params'], batch, rng)
      # A non-finite loss or gradient never reaches the state: the update is
      # skipped (one branch of a cond, so the state is still updated in
      # place) and recorded in the state, read by the host when it syncs
      # anyway (lm.train.loop), so no step waits on a check. The global norm is
      # non-finite when some gradient is (and, in float32, when the squared
      # sum overflows, past ~1e19).
      grad_norm = optax.tree.norm(grads)
      finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
      bad = state['nonfinite']

      def update():
        updates, opt_state = self.tx.update(grads, state['opt_state'],
                                            state['params'])
        return (optax.apply_updates(state['params'], updates), opt_state,
                bad)

      def skip():
        finite_leaves = jnp.stack(
            [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)] +
            [jnp.isfinite(loss)])
        first = bad['first_step'] < 0
        return state['params'], state['opt_state'], {
            'count': bad['count'] + 1,
            'first_step': jnp.where(first, state['step'] + 1,
                                    bad['first_step']),
            'first_leaf': jnp.where(first, jnp.argmin(finite_leaves),
                                    bad['first_leaf']).astype(jnp.int32)}
      params, opt_state, nonfinite = jax.lax.cond(finite, update, skip)
    metrics = {'train/loss': loss, 'train/grad_norm': grad_norm,
               'train/lr': self.lr(state['step']),
               'train/nonfinite_steps': nonfinite['count']}
    new_state = {'step': state['step'] + 1, 'params': params,
                 'opt_state': opt_state, 'rng': state['rng'],
                 'nonfinite': nonfinite}
    if 'ema' in state:
      d = self.config.train.ema_decay
      new_state['ema'] = jax.tree.map(
          lambda e, p: d * e + (1 - d) * p.astype(jnp.float32),
          state['ema'], params)
    return new_state, metrics

  def nonfinite_leaf(self, index: int) -> str:
    """The name of `nonfinite['first_leaf']`: a gradient's path, or loss."""
    paths = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_leaves_with_path(self.abstract_state['params'])]
    return (f'gradient of params{paths[index]}' if index < len(paths)
            else 'the loss')

  def _eval_step(self, params, batch):
    with sharding.activation_rules(self.mesh, self.rules):
      return self.loss(params, batch)

  def _sums_step(self, params, batch):
    """The task's summed evaluation figures of the batch."""
    with sharding.activation_rules(self.mesh, self.rules):
      return self.task.sums(self.merge(params), batch)

  def _nll_step(self, params, batch):
    """Summed NLL (nats, float32) over the batch's weighted positions."""
    with sharding.activation_rules(self.mesh, self.rules):
      logits, targets, weights = self.scored(params, batch)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
      return (nll * weights).sum()
