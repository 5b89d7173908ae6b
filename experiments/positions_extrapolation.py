"""Study: train short, test long (after Press et al., ALiBi, ICLR 2022).

Each position scheme trains the nanoGPT CPU model on character-level Tiny
Shakespeare at context L = 64 (1,000 steps) and is evaluated on the whole validation split
at L, 2L, 4L and 8L (non-overlapping windows). The paper's finding to check:
sinusoidal (and learned, which cannot even run past its table) degrade past
L, rotary degrades less, ALiBi holds or improves. T5's bucketed relative
bias (its last bucket covers every distance past 128) joins as a sixth arm,
and the original Transformer's recipe as a seventh: the sinusoidal table
added to token embeddings scaled by sqrt(D) (drawn with std 1/sqrt(D)), not
to embeddings of std 0.02 that a unit-amplitude table swamps.

  python -m lm.study experiments/positions_extrapolation.py
"""


def get_study():
  return {
      'base': 'configs/shakespeare_char.py:cpu',
      'grid': {**{name: {'model.position': name}
                  for name in ('learned', 'sinusoidal', 'rope', 'alibi', 't5',
                               'none')},
               'sinusoidal_scaled': {'model.position': 'sinusoidal',
                                     'model.scale_embeddings': True},
               # T5's default buckets reach distance 128, past the 63 seen
               # in training; here the last bucket starts at 32, is trained,
               # and covers every longer distance.
               't5_max32': {'model.position': 't5',
                            'model.relative_max_distance': 32}},
      # 1,000 steps (half the recipe) keep the 18 runs near 20 minutes.
      'overrides': {'train.num_steps': 1000, 'train.eval_every': 250,
                    'checkpoint.every': 250},
      'seeds': [0, 1, 2],
      'metrics': ['validation.loss'],
      'eval_lens': [128, 256, 512],
      'out': 'experiments/positions_extrapolation',
  }
