"""Study: SST-2 dev accuracy against masked-LM pretraining steps (BERT-tiny).

BERT-tiny (2 layers, 128 wide) pretrained (configs/bert_wikitext2.py:tiny:
uncased WikiText-2 followed by the SST-2 training sentences without labels)
for 1, 300 and 1,200 steps of 32 x 128 tokens, each budget one complete run
(its own warmup and cosine decay), then fine-tuned on SST-2 with three
seeds. One step (at warmup learning rate 5e-6) leaves the encoder at its
initialisation: that cell is "no pretraining" with the same tokenizer as the
others, so the tokenizer is not confounded with pretraining. The
`scratch` cell is the usual from-scratch baseline, its tokenizer trained on
the SST-2 training sentences alone. Pretraining uses seed 0; the seeds vary
the fine-tuning (classifier init, dropout, data order).

  python -m lm.study experiments/sst2_pretraining.py
"""

PRETRAIN = 'configs/bert_wikitext2.py:tiny'


def get_study():
  budgets = (1, 300, 1200)
  return {
      'base': 'configs/sst2.py:tiny',
      'before': {f'pretrain_{n}': {
          'config': PRETRAIN,
          'overrides': {'train.num_steps': n, 'train.eval_every': n,
                        'checkpoint.every': n, 'eval.final': False}}
                 for n in budgets},
      'grid': {'scratch': {},
               **{f'steps_{n}': {'init_from': f'{{out}}/pretrain_{n}'}
                  for n in budgets}},
      'seeds': [0, 1, 2],
      'overrides': {'train.num_steps': 1000, 'train.eval_every': 200},
      'metrics': ['validation.accuracy', 'validation.f1'],
      'out': 'experiments/sst2_pretraining',
  }
