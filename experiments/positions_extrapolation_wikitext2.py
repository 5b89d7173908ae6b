"""Study: train short, test long on WikiText-2 (the Wikipedia arm).

The same question as positions_extrapolation.py on another corpus: the
nanoGPT CPU model (4 layers, 4 heads, 128 wide) reads WikiText-2 (the
tokenized release) as bytes, trains at context L = 64 for 1,000 steps and is
evaluated at L, 2L, 4L and 8L on the first 131,072 bytes of the validation
split (about as much text as Tiny Shakespeare's whole validation split; a
byte-level model keeps the 18 runs near half an hour on a 2-core CPU, where
the word-level 33,278-way output layer would take hours).

  python -m lm.study experiments/positions_extrapolation_wikitext2.py
"""


def get_study():
  return {
      'base': 'configs/wikitext2_word.py:cpu',
      'grid': {**{name: {'model.position': name}
                  for name in ('learned', 'sinusoidal', 'rope', 'alibi', 't5',
                               'none')},
               # T5's default buckets reach distance 128, past the 63 seen
               # in training; here the last bucket starts at 32, is trained,
               # and covers every longer distance.
               't5_max32': {'model.position': 't5',
                            'model.relative_max_distance': 32}},
      'overrides': {
          'data.tokenizer': 'byte', 'data.batch_size': 12,
          'model.num_layers': 4, 'model.num_heads': 4, 'model.embed_dim': 128,
          'model.max_len': 64,
          'optim.lr': 1e-3, 'optim.min_lr': 1e-4, 'optim.warmup_steps': 100,
          'train.num_steps': 1000, 'train.eval_every': 250,
          'checkpoint.every': 250, 'eval.max_tokens': 131072},
      'seeds': [0, 1, 2],
      'metrics': ['validation.loss'],
      'eval_lens': [128, 256, 512],
      'out': 'experiments/positions_extrapolation_wikitext2',
  }
