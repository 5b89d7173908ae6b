"""What every training task provides: `Task`, and the pieces tasks share.

A task owns what differs between training a GPT, a masked-LM encoder, an
ELECTRA encoder and a classifier: its model and heads, its loss and
evaluation sums (pure functions of a merged model and a batch, traced inside
the trainer's jitted steps), its training and evaluation rows, its final
evaluation, the metric that picks the best step, the batch a dry run
compiles, which runs it may start from, and the Hugging Face class it maps
to. The loop, trainer, dry run, sampler and converter ask the task; they
never compare task names.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.data import rows as rows_lib
from lm.models import layers


class Scored(NamedTuple):
  """The positions a loss counts: logits [..., V], targets and weights."""
  logits: jax.Array
  targets: jax.Array
  weights: jax.Array | None


def cross_entropy(logits_BxLxV, targets_BxL, weights_BxL=None):
  """Mean next-token cross-entropy (natural log) over weighted positions."""
  nll_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV,
                                                            targets_BxL)
  if weights_BxL is None:
    return nll_BxL.mean()
  return (nll_BxL * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)


def sums_of(logits, targets, weights) -> dict:
  """Summed NLL, correct predictions and weight of weighted targets (every
  target when `weights` is None)."""
  if weights is None:
    weights = jnp.ones(targets.shape, jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (logits.argmax(-1) == targets).astype(jnp.float32)
  return {'nll': (nll * weights).sum(),
          'correct': (correct * weights).sum(), 'count': weights.sum()}


def batch_sums(trainer, params, batches, batch_size: int) -> dict[str, float]:
  """`trainer.sums_step` totals over global batches (batch_size 0: batches
  already this process's rows)."""
  rows = rows_lib.local_rows(batch_size) if batch_size else slice(None)
  totals = {}
  for batch in batches:
    local = trainer.global_batch({k: v[rows] for k, v in batch.items()})
    for k, v in jax.device_get(trainer.sums_step(params, local)).items():
      totals[k] = totals.get(k, 0.0) + float(v)
  return totals


class Task(abc.ABC):
  """One training task on config `c` (and, for its data, a prepared
  `corpus`). Subclasses set the class attributes and implement `build`,
  the data methods and `final`."""

  name = ''
  specials = ''  # The special tokens its tokenizer needs ('bert': encoders).
  best_metric = ('eval/loss', 'min')  # (eval metric, mode) of the best step.
  # Runs it may start from (init_from): task name -> the part of their
  # parameters it loads ('' all of them).
  starts_from: dict[str, str] = {}
  body = ''  # Where the Transformer's parameters sit ('' at the top).
  generates = False  # Generates text (lm.sample, text perplexity).
  classifies = False  # Labels sentences (lm.finetune).
  translates = False  # Maps a source sentence to a target (lm.translate).
  hf_architecture = ''  # The Hugging Face class it exports to.
  # More Hugging Face classes it imports (an encoder-decoder's export class
  # follows from the model: lm.interop.hf_seq2seq.architecture_of).
  hf_imports: tuple[str, ...] = ()
  encoder_decoder = False  # Its model is an EncoderDecoder.
  hf_refusal = ''  # Why it has none.
  hf_data_name = ''  # An imported checkpoint's corpus (data.name).

  def __init__(self, c, corpus=None):
    self.c, self.corpus = c, corpus
    self.tok = corpus.tokenizer if corpus is not None else None
    self.model_cfg = layers.TransformerConfig.from_config(c.model)

  @classmethod
  def loads_from(cls, task: str) -> str | None:
    """The part of a `task` run's parameters this task starts from ('' all
    of them), or None when it cannot start from one."""
    return cls.starts_from.get(task)

  # -- model (pure: traced inside the trainer's jitted steps) ----------------

  @abc.abstractmethod
  def build(self, *, rngs: nnx.Rngs) -> nnx.Module:
    """The model this task trains."""

  def abstract(self):
    """(graphdef, parameter State of shapes) of `build`, allocating
    nothing."""
    return nnx.split(nnx.eval_shape(lambda: self.build(rngs=nnx.Rngs(0))),
                     nnx.Param)

  def dropout(self, rng):
    """(deterministic, rngs) of a forward pass: dropout on when `rng` is
    given and the model has any."""
    train = rng is not None and self.model_cfg.dropout > 0
    return not train, nnx.Rngs(dropout=rng) if train else None

  def forward(self, model, batch, rng=None, **kw):
    """The model's output on a batch (packed rows: with their segments and
    positions); dropout is on when `rng` is given."""
    deterministic, rngs = self.dropout(rng)
    out, _ = model(batch['inputs'], positions=batch.get('positions'),
                   segment_ids_BxL=batch.get('segment_ids'),
                   token_types_BxL=batch.get('token_types'),
                   deterministic=deterministic, rngs=rngs, **kw)
    return out

  def scored(self, model, batch, rng=None) -> Scored:
    """The logits, targets and weights of the positions the loss counts."""
    return Scored(self.forward(model, batch, rng), batch['targets'],
                  batch.get('weights'))

  def loss(self, model, batch, rng=None):
    """The training loss of a batch; dropout is on when `rng` is given."""
    return cross_entropy(*self.scored(model, batch, rng))

  def sums(self, model, batch) -> dict:
    """Summed evaluation figures of a batch (see `sums_of`)."""
    return sums_of(*self.scored(model, batch))

  # -- data -------------------------------------------------------------------

  @property
  def seq_len(self) -> int:
    return self.c.model.max_len

  def batch_shapes(self) -> dict[str, tuple]:
    """name -> (shape, dtype) of a global training batch (the dry run)."""
    B, L = self.c.data.batch_size, self.seq_len
    return {'inputs': ((B, L), np.int32), 'targets': ((B, L), np.int32)}

  def notes(self) -> list[str]:
    """Lines to tell the user before training."""
    return []

  @abc.abstractmethod
  def train_dataset(self):
    """The endless training iterator (its state is checkpointed)."""

  @abc.abstractmethod
  def eval_batches(self) -> list[dict[str, np.ndarray]]:
    """The fixed validation sample scored at every evaluation."""

  def evaluate(self, trainer, params, batches) -> dict[str, float]:
    """The `figures` of global batches, as eval/NAME."""
    t = batch_sums(trainer, params, batches,
                   len(next(iter(batches))['inputs']))
    return {f'eval/{k}': v for k, v in self.figures(t).items()}

  def figures(self, t: dict[str, float]) -> dict[str, float]:
    """Mean loss and accuracy from `batch_sums` totals."""
    return {'loss': t['nll'] / max(t['count'], 1.0),
            'accuracy': t['correct'] / max(t['count'], 1.0)}

  @abc.abstractmethod
  def final(self, trainer, params, writer=None) -> dict[str, dict]:
    """The final evaluation of each whole evaluation split."""

  @abc.abstractmethod
  def next_step(self, workdir: str) -> str:
    """What to run after training (the last line of lm.main)."""
