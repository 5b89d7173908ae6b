"""Study: what GloVe vectors buy a sentence classifier trained from scratch
on words. `configs/sst2.py:glove` (a 2-layer encoder 50 wide on lowercased
SST-2 words, every training word in the vocabulary), its token table started
at random, from the GloVe 6B vectors (84% of the 14,504 words, 97.4% of the
training tokens), or from them and frozen, 3 seeds each; and
`glove_scaled`, the vectors first scaled to the table's own init scale
(model.init_embeddings_std=0.02; GloVe's entries have a standard deviation
of about 0.69, 35 times the rows without vectors and the positions). The
best step is chosen on 5% of the training sentences held out (whole
sentences) and dev is scored once, as for the BERT recipe and the
bag-of-words baselines (`experiments/sst2_bow.py`). Columns: dev accuracy
and F1, and the held-out selection accuracy.

The language-model half is `experiments/glove_init.py`.

  python -m lm.study experiments/glove_init_sst2.py
"""

import glove_init  # The language-model half, beside this file.


def get_study():
  return {
      'base': 'configs/sst2.py:glove',
      'grid': {**glove_init.ARMS,
               'random': {'model.init_embeddings': ''},
               'glove_scaled': {**glove_init.ARMS['glove'],
                                'model.init_embeddings_std': 0.02}},
      'seeds': [0, 1, 2],
      'metrics': ['validation.accuracy', 'validation.f1',
                  'selection.accuracy'],
      'out': 'experiments/glove_init_sst2',
  }
