"""Word-level GPT on WikiText-2 (vocabulary 33,278, <eos> ending every line).

The corpus is read from `data.path` (default: ../shared/data/wikitext-2 beside
the repository when it is there, else downloaded); it is prepared once into
TFDS ArrayRecords under `data.tfds_dir`. Training reads the training split as
one stream (`data.pack='stream'`), as the WikiText literature does; the final
evaluation reports word-level perplexity of the whole validation and test
splits.

Variants, chosen with `--config=configs/wikitext2_word.py:VARIANT`:
  (none)  one GPU: 6 layers, 512 wide, context 256, heavy dropout (WikiText-2
          is small), 20k steps of batch 32.
  cpu     about 20 minutes on a 2-core CPU: 2 layers, 256 wide, context
          128, batch 16, 950 steps (one epoch of WikiText-2 train).
  test    a tiny model for the test suite.
"""

import os

from lm import config as lm_config

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                      'shared', 'data')


def local_copy(folder: str) -> str:
  """../shared/data/FOLDER beside the repository if present, else '' (download)."""
  path = os.path.normpath(os.path.join(SHARED, folder))
  return path if os.path.isdir(path) else ''


def get_config(arg=None):
  c = lm_config.default()
  c.data.update(name='wikitext2', config='tokens', tokenizer='word',
                path=local_copy('wikitext-2'))
  c.optim.update(name='adamw', b2=0.99, weight_decay=0.1, grad_clip=1.0)

  if arg in (None, '', 'gpu'):
    c.model.update(num_layers=6, num_heads=8, embed_dim=512, max_len=256,
                   dropout=0.3)
    c.data.batch_size = 32
    c.optim.update(lr=6e-4, min_lr=6e-5, warmup_steps=500)
    c.train.update(num_steps=20000, eval_every=1000, eval_batches=50,
                   log_every=50)
    c.checkpoint.every = 1000
  elif arg == 'cpu':
    # Under one epoch in 20 minutes: no dropout. The 33,278-word output layer
    # is most of the compute (about 1.1 s a step of 16 x 128 tokens here).
    c.model.update(num_layers=2, num_heads=4, embed_dim=256, max_len=128,
                   dropout=0.0)
    c.data.batch_size = 16
    c.optim.update(lr=2e-3, min_lr=2e-4, warmup_steps=100)
    c.train.update(num_steps=950, eval_every=250, eval_batches=10,
                   log_every=10)
    c.checkpoint.every = 250
  elif arg == 'test':
    c.model.update(num_layers=1, num_heads=2, embed_dim=32, max_len=16)
    c.data.batch_size = 8
    c.optim.warmup_steps = 2
    c.train.update(num_steps=4, eval_every=2, eval_batches=2, log_every=1)
    c.checkpoint.update(every=2, async_save=False)
    c.eval.batch_size = 256
  else:
    raise ValueError(f'unknown variant {arg!r}; choose gpu, cpu or test')
  return c
