"""Study: what GloVe vectors buy a word-level language model. The
WikiText-2 word-level CPU recipe (`configs/wikitext2_word.py:cpu`, 20
minutes on 2 cores) at the vectors' width (50 wide, 5 heads of 10), its
token table started at random, from the GloVe 6B vectors
(../shared/data/glove, 90.2% of the 33,278 words, 93.4% of the training
tokens), or from them and frozen (the output layer is tied to the token
table, so it stays GloVe too), 3 seeds each. Columns: validation and test
word-level perplexity.

The sentence-classification half (SST-2 from scratch on words) is
`experiments/glove_init_sst2.py`: `lm.study` reads one base config per study.

  python -m lm.study experiments/glove_init.py
"""

import os

GLOVE = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data',
    'glove', 'glove.6B.50d.100k.txt.gz'))
# The arms both halves compare (random: the config's own start).
ARMS = {'random': {},
        'glove': {'model.init_embeddings': GLOVE},
        'glove_frozen': {'model.init_embeddings': GLOVE,
                         'optim.freeze_embeddings': True}}


def get_study():
  return {
      'base': 'configs/wikitext2_word.py:cpu',
      'overrides': {'model.embed_dim': 50, 'model.num_heads': 5},
      'grid': ARMS,
      'seeds': [0, 1, 2],
      'metrics': ['validation.perplexity', 'test.perplexity'],
      'out': 'experiments/glove_init',
  }
