"""The functional core: train state, loss, and the sharded train/eval steps.

The model is split once into a static graph definition and a pytree of
parameters; every step is a pure function of pytrees, jitted with explicit
in/out shardings (what pjit became) and a donated train state. The train
state is a plain dict: {'step', 'params', 'opt_state', 'rng', 'nonfinite'},
plus 'ema' (a moving average of 'params') when `train.ema_decay` > 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm import config as config_lib
from lm import heads
from lm import masking
from lm import model as model_lib
from lm import optimizer as optimizer_lib
from lm import sharding

State = dict[str, Any]


class Detection(NamedTuple):
  """replaced_token (ELECTRA): what one batch gives the loss and the sums."""
  logits: Any  # [B, K, V] the generator's, at the chosen positions,
  targets: Any  # [B, K] their original ids,
  weights: Any  # [B, K] 1 where chosen.
  bce: Any  # [B, L] the discriminator's binary cross-entropy,
  correct: Any  # [B, L] 1 where it called original/replaced right,
  real: Any  # [B, L] the tokens it is scored on,
  replaced: Any  # [B, L] 1 where its input was replaced.
BATCH_NAMES = ('batch',)  # Rows sharded; the rest of each array whole.


def cross_entropy(logits_BxLxV, targets_BxL, weights_BxL=None):
  """Mean next-token cross-entropy (natural log) over weighted positions."""
  nll_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV,
                                                            targets_BxL)
  if weights_BxL is None:
    return nll_BxL.mean()
  return (nll_BxL * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)


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
    self.model_cfg = model_lib.GPTConfig.from_config(config.model)
    self.task = config.task
    self.num_classes = config.model.num_classes
    self.tx = optimizer_lib.make(config.optim, config.train.num_steps)
    self.lr = optimizer_lib.schedule(config.optim, config.train.num_steps)

    self.graphdef, abstract_params = heads.abstract(
        self.model_cfg, self.task, self.num_classes)
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
    model = heads.build(self.model_cfg, self.task, self.num_classes,
                        rngs=nnx.Rngs(params=params_rng))
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

  def logits(self, params, batch, rng=None, **kw):
    """Logits of a batch (packed rows: with their segments and positions):
    [B, L, V] for the language-model tasks, [B, C] for classification."""
    model = self.merge(params)
    train = rng is not None and self.model_cfg.dropout > 0
    logits, _ = model(batch['inputs'], positions=batch.get('positions'),
                      segment_ids_BxL=batch.get('segment_ids'),
                      token_types_BxL=batch.get('token_types'),
                      deterministic=not train,
                      rngs=nnx.Rngs(dropout=rng) if train else None, **kw)
    return logits

  def _masked_at(self, batch):
    """Masked-LM rows: the positions [B, K] that may be chosen, at most
    round(mask_rate x (L - 2)) a row (lm.masking), every chosen one first."""
    # A row's [CLS] and [SEP] are never candidates.
    k = masking.chosen_count(batch['targets'].shape[1] - 2,
                             self.config.data.mask_rate)
    return jax.lax.top_k(batch['weights'], k)[1]

  def scored(self, params, batch, rng=None):
    """(logits, targets, weights) of the positions the loss counts. A
    masked-LM batch sends only its chosen positions through the output layer
    (for replaced_token: the generator's)."""
    targets, weights = batch['targets'], batch.get('weights')
    if self.task not in config_lib.MASKED_TASKS:
      return self.logits(params, batch, rng), targets, weights
    if self.task == 'replaced_token':
      return self.detect(params, batch, rng)[:3]  # The generator's.
    at_BxK = self._masked_at(batch)
    gather = lambda x: jnp.take_along_axis(x, at_BxK, axis=1)
    return (self.logits(params, batch, rng, predict_at_BxK=at_BxK),
            gather(targets), gather(weights))

  def detect(self, params, batch, rng=None) -> Detection:
    """replaced_token (ELECTRA): the generator's and the discriminator's
    outputs; the discriminator is scored on every token of a row with a
    chosen position (filler rows count nothing). The sample is drawn from
    `rng` (a fixed key when None: evaluations repeat)."""
    at_BxK = self._masked_at(batch)
    gather = lambda x: jnp.take_along_axis(x, at_BxK, axis=1)
    train = rng is not None and self.model_cfg.dropout > 0
    sample_key = (jax.random.PRNGKey(0) if rng is None
                  else jax.random.fold_in(rng, 1))
    generated_BxKxV, detect_BxL, replaced_BxL = self.merge(params)(
        batch['inputs'], originals_BxL=batch['targets'],
        predict_at_BxK=at_BxK, chosen_BxK=gather(batch['weights']),
        sample_key=sample_key, positions=batch.get('positions'),
        segment_ids_BxL=batch.get('segment_ids'),
        token_types_BxL=batch.get('token_types'), deterministic=not train,
        rngs=nnx.Rngs(dropout=rng) if train else None)
    real_BxL = jnp.broadcast_to(
        (batch['weights'].sum(1, keepdims=True) > 0).astype(jnp.float32),
        detect_BxL.shape)
    if 'segment_ids' in batch:
      real_BxL = real_BxL * (batch['segment_ids'] > 0)
    bce_BxL = optax.sigmoid_binary_cross_entropy(detect_BxL, replaced_BxL)
    correct_BxL = ((detect_BxL > 0) == (replaced_BxL > 0)).astype(
        jnp.float32)
    return Detection(generated_BxKxV, gather(batch['targets']),
                     gather(batch['weights']), bce_BxL, correct_BxL,
                     real_BxL, replaced_BxL)

  def loss(self, params, batch, rng=None):
    """Mean cross-entropy of the batch; dropout is on when `rng` is given.
    replaced_token: the generator's plus optim.detection_weight times the
    discriminator's mean binary cross-entropy."""
    if self.task != 'replaced_token':
      return cross_entropy(*self.scored(params, batch, rng))
    d = self.detect(params, batch, rng)
    detection = (d.bce * d.real).sum() / jnp.maximum(d.real.sum(), 1.0)
    return (cross_entropy(d.logits, d.targets, d.weights) +
            self.config.optim.detection_weight * detection)

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
      # anyway (lm.run), so no step waits on a check. The global norm is
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
    """Summed NLL, correct predictions and weight of the batch's weighted
    targets (every target when the batch has no weights); replaced_token
    also the discriminator's summed binary cross-entropy ('detection_nll'),
    correct calls, tokens and replaced tokens among them."""
    with sharding.activation_rules(self.mesh, self.rules):
      out = (self.detect(params, batch) if self.task == 'replaced_token'
             else self.scored(params, batch))
      logits, targets, weights = out[:3]
      if weights is None:
        weights = jnp.ones(targets.shape, jnp.float32)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
      correct = (logits.argmax(-1) == targets).astype(jnp.float32)
      sums = {'nll': (nll * weights).sum(),
              'correct': (correct * weights).sum(), 'count': weights.sum()}
      if self.task == 'replaced_token':
        sums.update(detection_nll=(out.bce * out.real).sum(),
                    detection_correct=(out.correct * out.real).sum(),
                    detection_count=out.real.sum(),
                    replaced=(out.replaced * out.real).sum())
      return sums

  def _nll_step(self, params, batch):
    """Summed NLL (nats, float32) over the batch's weighted positions."""
    with sharding.activation_rules(self.mesh, self.rules):
      logits, targets, weights = self.scored(params, batch)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
      return (nll * weights).sum()
