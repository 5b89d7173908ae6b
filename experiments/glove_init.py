"""Study: what GloVe vectors buy a word-level language model. The
WikiText-2 word-level CPU recipe (`configs/wikitext2_word.py:cpu`, 20
minutes on 2 cores) at the vectors' width (50 wide, 5 heads of 10), its
token table started at random, from the GloVe 6B vectors
(../shared/data/glove, 90.2% of the 33,278 words, 93.4% of the training
tokens), or from them and frozen (the token table alone: the learned
positions train), 3 seeds each. The recipe ties the output layer to the
token table, so a frozen table freezes the output layer too; three more
arms untie it (its own 33,278 x 50 matrix, trained) beside a token table
started at random, from GloVe, or from GloVe and frozen: the same three
starts again, with a frozen input told apart from a frozen output. Columns:
validation and test word-level perplexity.

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
                         'optim.freeze_embeddings': True,
                         'optim.embedding_tables': 'tokens'}}
# A language model's own: its output layer untied from the token table.
UNTIED = {'random_untied': {'model.tie_embeddings': False},
          'glove_untied': {**ARMS['glove'], 'model.tie_embeddings': False},
          'glove_frozen_untied': {**ARMS['glove_frozen'],
                                  'model.tie_embeddings': False}}


def get_study():
  return {
      'base': 'configs/wikitext2_word.py:cpu',
      'overrides': {'model.embed_dim': 50, 'model.num_heads': 5},
      'grid': {**ARMS, **UNTIED},
      'seeds': [0, 1, 2],
      'metrics': ['validation.perplexity', 'test.perplexity'],
      'out': 'experiments/glove_init',
  }
