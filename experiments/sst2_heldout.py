"""Study: the BERT recipe's SST-2 accuracy under honest model selection.

The recipe of BENCHMARKS.md's "BERT: SST-2 after 30 minutes of CPU
pretraining" (`configs/bert_wikitext2.py:cpu`, 1,800 steps, then
`configs/sst2.py:cpu`), re-scored the way the bag-of-words baselines and
the GloVe study are: the best step (and early stopping) chosen on 5% of the
training sentences held out of training (`data.selection_split`, the
default), dev scored once. Its 81.85% (18 seeds) was the best of every 250
steps by dev accuracy itself. One pretraining run (seed 0), three
fine-tuning seeds (0-2, as the GloVe study; the same seeds as the history's
dev-selected runs, for paired differences); the `scratch` cell is the same
encoder fine-tuned without pretraining. Columns: dev accuracy and F1, the
held-out selection accuracy.

  python -m lm.study experiments/sst2_heldout.py
"""


def get_study():
  return {
      'base': 'configs/sst2.py:cpu',
      'before': {'pretrain': {'config': 'configs/bert_wikitext2.py:cpu'}},
      'grid': {'recipe': {'init_from': '{out}/pretrain'},
               'scratch': {}},
      'seeds': [0, 1, 2],
      'metrics': ['validation.accuracy', 'validation.f1',
                  'selection.accuracy'],
      'out': 'experiments/sst2_heldout',
  }
