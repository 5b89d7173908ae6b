"""Study: what the Multi30k recipe's choices are worth. Label smoothing on
and off, post- against pre-norm blocks, and sinusoidal (scaled embeddings,
the original recipe) against rotary and learned positions, each changed
alone from `configs/multi30k.py:cpu`, 3 seeds.

Every cell is a full CPU recipe run (about 50 minutes on 2 cores), 18 runs
in all; on one GPU they take minutes each. The recipe's three runs are the
decoding study's (`experiments/multi30k_decoding.py`: the same config and
seeds), trained once for both. Columns: sacreBLEU and tokenized BLEU of
test2016, test2017 and mscoco2017 (beam 4, GNMT 0.6) and the best validation
loss of the run's evaluations (unsmoothed: `train.best_eval_loss`).

  python -m lm.study experiments/multi30k_architecture.py
"""


def get_study():
  return {
      'base': 'configs/multi30k.py:cpu',
      'grid': {
          'recipe': {},
          'no_label_smoothing': {'optim.label_smoothing': 0.0},
          'pre_norm': {'model.norm_position': 'pre'},
          'rope': {'model.position': 'rope', 'model.scale_embeddings': False},
          'learned': {'model.position': 'learned',
                      'model.scale_embeddings': False},
          'sinusoidal_unscaled': {'model.scale_embeddings': False},
      },
      'seeds': [0, 1, 2],
      'metrics': ['test.bleu', 'test.tokenized_bleu',
                  'test2017.tokenized_bleu', 'mscoco2017.tokenized_bleu',
                  'train.best_eval_loss'],
      'shared': {'recipe': 'experiments/multi30k_decoding'},
      'out': 'experiments/multi30k_architecture',
  }
