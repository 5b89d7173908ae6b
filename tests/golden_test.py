"""Golden numbers: every shipped config's `:test` variant, pinned.

For each task on each tokenizer kind: the parameter count, the training loss
and gradient norm after one and after three steps, the evaluation figures of
the fixed evaluation sample after three steps, and the first tokens the
model picks greedily (a causal LM's generated continuation; for the other
tasks the argmax at the first scored positions of the first evaluation
batch). A refactoring must leave every number identical on CPU; a change
that has to move one says why in its commit. Counts and tokens compare
exactly; floats to a relative 1e-5, because XLA's CPU code differs in the
last bits between processors (AMD EPYC and Intel Xeon runs differ by about
1e-7), while any change to the computation moves them far more. To print
the current numbers:
`python -m pytest tests/golden_test.py -s --golden-print` (see conftest).
"""

import conftest
import jax
import numpy as np
import pytest

from lm import tasks
from lm.data import corpus as corpus_lib
from lm.eval import decode
from lm.parallel import sharding
from lm.train import trainer as train_lib
from lm.train import workdir as workdir_lib

# name -> (config, variant, overrides)
CASES = {
    'char_causal_lm': ('shakespeare_char', 'test', {}),
    'word_causal_lm': ('wikitext2_word', 'test', {}),
    'bpe_causal_lm': ('wikitext2_bpe', 'test', {}),
    'masked_lm': ('bert_wikitext2', 'test', {}),
    'replaced_token': ('bert_wikitext2', 'test', {'task': 'replaced_token'}),
    # Selection on dev (the rule before 2026-12-03: the pinned numbers
    # unchanged) and on held-out training sentences (the default since).
    'classification': ('sst2', 'test',
                       {'data': {'selection_split': 'validation'}}),
    'classification_heldout': ('sst2', 'test', {}),
}

GOLDEN = {
    'bpe_causal_lm': {
        'params': 45280,
        'loss_1': 6.928834438323975,
        'grad_norm_1': 1.040876030921936,
        'loss_3': 6.894128322601318,
        'grad_norm_3': 0.9814400672912598,
        'eval': {
            'eval/loss': 6.884136438369751
        },
        'tokens': [296, 296, 296, 296, 296, 296, 296, 296]
    },
    'char_causal_lm': {
        'params': 28064,
        'loss_1': 4.179473876953125,
        'grad_norm_1': 1.8369051218032837,
        'loss_3': 4.128355503082275,
        'grad_norm_3': 1.8096221685409546,
        'eval': {
            'eval/loss': 4.096349477767944
        },
        'tokens': [1, 1, 1, 1, 1, 1, 1, 1]
    },
    'classification': {
        'params': 46466,
        'loss_1': 0.691343367099762,
        'grad_norm_1': 0.6122375130653381,
        'loss_3': 0.6907651424407959,
        'grad_norm_3': 0.17468829452991486,
        'eval': {
            'eval/loss': 0.6933274841308594,
            'eval/accuracy': 0.495
        },
        'tokens': [1, 1, 1, 1, 1, 1, 1, 1]
    },
    'classification_heldout': {
        'params': 46466,
        'loss_1': 0.6914969682693481,
        'grad_norm_1': 0.2896130681037903,
        'loss_3': 0.693891167640686,
        'grad_norm_3': 0.13113735616207123,
        'eval': {
            'eval/loss': 0.6922459381305619,
            'eval/accuracy': 0.5695364238410596
        },
        'tokens': [1, 1, 1, 1, 1, 1, 1, 1]
    },
    'masked_lm': {
        'params': 47464,
        'loss_1': 6.899407386779785,
        'grad_norm_1': 3.3202857971191406,
        'loss_3': 6.916873455047607,
        'grad_norm_3': 3.764303207397461,
        'eval': {
            'eval/loss': 6.9071643352508545,
            'eval/accuracy': 0.0
        },
        'tokens': [200, 759, 973, 447, 973, 345, 70, 590]
    },
    'replaced_token': {
        'params': 67337,
        'loss_1': 41.384742736816406,
        'grad_norm_1': 20.898273468017578,
        'loss_3': 41.37503433227539,
        'grad_norm_3': 20.903104782104492,
        'eval': {
            'eval/loss': 6.916334629058838,
            'eval/accuracy': 0.0,
            'eval/detection_loss': 0.6892093420028687,
            'eval/detection_accuracy': 0.7890625,
            'eval/replaced': 0.125
        },
        'tokens': [139, 283, 903, 474, 139, 903, 399, 739]
    },
    'word_causal_lm': {
        'params': 1078176,
        'loss_1': 10.395171165466309,
        'grad_norm_1': 1.1373255252838135,
        'loss_3': 10.387117385864258,
        'grad_norm_3': 1.0602060556411743,
        'eval': {
            'eval/loss': 10.39910888671875
        },
        'tokens': [25029, 25029, 25029, 25029, 25029, 25029, 25029, 25029]
    },
}

PROMPT_TOKENS = 4  # A causal LM continues the first eval row's first tokens,
NEW_TOKENS = 8  # greedily, this many.


def measure(name: str) -> dict:
  """The golden numbers of case `name`, computed now."""
  config, variant, overrides = CASES[name]
  c = conftest.load_config(config, variant)
  c.update(overrides)
  corpus = corpus_lib.load_corpus(c.data,
                                  c.model.max_len,
                                  specials=tasks.TASKS[c.task].specials)
  c = workdir_lib.resolve(c, corpus.tokenizer.vocab_size)
  mesh = sharding.make_mesh(c.mesh)
  trainer = train_lib.Trainer(c, mesh)
  task = tasks.get(c, corpus)
  train_iter = task.train_dataset()
  state = trainer.init(jax.random.PRNGKey(c.seed))
  out = {'params': int(sum(x.size for x in jax.tree.leaves(state['params'])))}
  for step in (1, 2, 3):
    state, metrics = trainer.train_step(
        state, trainer.global_batch(next(train_iter)))
    if step in (1, 3):
      m = jax.device_get(metrics)
      out[f'loss_{step}'] = float(m['train/loss'])
      out[f'grad_norm_{step}'] = float(m['train/grad_norm'])
  params = train_lib.model_params(state)
  eval_batches = task.eval_batches()
  out['eval'] = task.evaluate(trainer, params, eval_batches)
  batch = trainer.global_batch(eval_batches[0])
  if task.generates:
    sampler = decode.Sampler(trainer.graphdef, trainer.model_cfg,
                             valid_vocab=corpus.tokenizer.vocab_size)
    prompt = np.asarray(batch['inputs'])[0, :PROMPT_TOKENS]
    tokens = sampler.generate(jax.device_get(params), prompt, NEW_TOKENS,
                              temperature=0.0)[0]
  else:
    with sharding.activation_rules(mesh, trainer.rules):
      logits = jax.jit(lambda p, b: trainer.scored(p, b)[0])(params, batch)
    tokens = np.asarray(logits).argmax(-1).reshape(-1)[:NEW_TOKENS]
  out['tokens'] = [int(t) for t in tokens]
  return out


@pytest.mark.parametrize('name', sorted(CASES))
def test_golden(name, request):
  got = measure(name)
  if request.config.getoption('--golden-print'):
    print(f'\n    {name!r}: {got!r},')
  assert _same(got, GOLDEN[name]), (
      f'{name}: golden numbers changed: got {got}, pinned {GOLDEN[name]}')


def _same(got, pinned) -> bool:
  """Equal structure, counts and tokens; floats equal to a relative 1e-5."""
  if isinstance(pinned, dict):
    return (isinstance(got, dict) and got.keys() == pinned.keys() and
            all(_same(got[k], pinned[k]) for k in pinned))
  if isinstance(pinned, float):
    return isinstance(got, float) and got == pytest.approx(pinned, rel=1e-5)
  return got == pinned


def test_same_tells_a_real_change_from_the_last_bits():
  pinned = {'params': 10, 'loss': 4.179473876953125, 'tokens': [1, 2]}
  assert _same({**pinned, 'loss': 4.179473638534546}, pinned)  # Last bits.
  assert not _same({**pinned, 'loss': 4.1796}, pinned)
  assert not _same({**pinned, 'tokens': [1, 3]}, pinned)
  assert not _same({**pinned, 'params': 11}, pinned)
  assert not _same({'params': 10, 'loss': 4.179473876953125}, pinned)
