"""Character-level GPT on Tiny Shakespeare, after nanoGPT's shakespeare_char.

Variants, chosen with `--config=configs/shakespeare_char.py:VARIANT`:
  (none)  nanoGPT's GPU config: 6 layers, 6 heads, 384 wide, block 256,
          batch 64, dropout 0.2, 5000 steps (far too slow for a laptop CPU).
          Compute is bfloat16 on accelerators, float32 on CPU (dtype auto).
  cpu     nanoGPT's CPU config: 4 layers, 4 heads, 128 wide, block 64,
          batch 12, 2000 steps, dropout 0 (a few minutes on a laptop).
  quick   the cpu model for 500 steps: a one-minute smoke run.
  test    a tiny model for the test suite.
"""

from lm import config as lm_config


def get_config(arg=None):
  c = lm_config.default()
  # Shared by all variants (nanoGPT: lr 1e-3 -> 1e-4, warmup 100, beta2 0.99,
  # weight decay 0.1, clip 1.0).
  c.optim.lr = 1e-3
  c.optim.min_lr = 1e-4
  c.optim.warmup_steps = 100
  c.optim.b2 = 0.99
  c.optim.weight_decay = 0.1
  c.optim.grad_clip = 1.0

  if arg in (None, '', 'gpu'):
    c.model.update(num_layers=6, num_heads=6, embed_dim=384, max_len=256,
                   dropout=0.2)
    c.data.batch_size = 64
    c.train.update(num_steps=5000, eval_every=250, eval_batches=200,
                   log_every=10)
    c.checkpoint.every = 250
  elif arg in ('cpu', 'quick'):
    c.model.update(num_layers=4, num_heads=4, embed_dim=128, max_len=64,
                   dropout=0.0)
    c.data.batch_size = 12
    c.train.update(num_steps=2000, eval_every=250, eval_batches=20,
                   log_every=10)
    c.checkpoint.every = 250
    if arg == 'quick':
      c.train.update(num_steps=500, eval_every=100)
      c.checkpoint.every = 100
  elif arg == 'test':
    c.model.update(num_layers=2, num_heads=2, embed_dim=32, max_len=16)
    c.data.batch_size = 8
    c.optim.warmup_steps = 2
    c.train.update(num_steps=10, eval_every=5, eval_batches=2, log_every=1)
    c.checkpoint.update(every=5, async_save=False)
  else:
    raise ValueError(f'unknown variant {arg!r}; choose gpu, cpu, quick or test')
  return c
