"""Study: SciTLDR-A ROUGE against span-corruption pretraining budget.

The CPU encoder-decoder of configs/scitldr.py pretrained by span corruption
(WikiText-2, then the SciTLDR training abstracts) for 1, 450 and 900 steps
of 16 windows of 426 tokens, each budget one complete run (its own warmup
and cosine decay), then fine-tuned on SciTLDR-A (configs/scitldr.py:cpu)
with three seeds. One step (at warmup learning rate 5e-6) leaves the model
at its initialisation: that cell is "no pretraining" with the same
vocabulary as the others (T5's sentinels included), so the vocabulary is
not confounded with pretraining. The `scratch` cell is the usual
from-scratch baseline, its vocabulary trained on the SciTLDR pairs alone.
Pretraining uses seed 0; the seeds vary the fine-tuning (dropout, data
order). Metrics: test ROUGE-1/2/L (best reference, stemmed), beside which
every cell's eval_results.json holds the lead-sentence and oracle figures.

  python -m lm.study experiments/scitldr_pretraining.py
"""

PRETRAIN = 'configs/scitldr.py:pretrain_cpu'


def get_study():
  budgets = (1, 450, 900)
  return {
      'base': 'configs/scitldr.py:cpu',
      'before': {f'pretrain_{n}': {
          'config': PRETRAIN,
          'overrides': {'train.num_steps': n,
                        'train.eval_every': min(n, 300),
                        'checkpoint.every': n, 'eval.final': False}}
                 for n in budgets},
      'grid': {'scratch': {},
               **{f'steps_{n}': {'init_from': f'{{out}}/pretrain_{n}'}
                  for n in budgets}},
      'seeds': [0, 1, 2],
      'metrics': ['test.rouge1', 'test.rouge2', 'test.rougeL'],
      'out': 'experiments/scitldr_pretraining',
  }
