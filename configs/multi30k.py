"""English->German translation on Multi30k Task 1 with an encoder-decoder.

The original Transformer's recipe at Multi30k's size: post-norm blocks,
sinusoidal positions added to embeddings scaled by sqrt(d), ReLU, dropout
0.1, one embedding shared by encoder, decoder and output layer over a joint
SentencePiece vocabulary, Adam (0.9, 0.98) with inverse-square-root decay
after warmup, label smoothing 0.1, batches of about max_tokens tokens, beam
search (4, GNMT penalty 0.6) for the final test-set BLEU.

Variants, chosen with `--config=configs/multi30k.py:VARIANT`:
  (none)  gpu: 4+4 layers, width 256, vocabulary 10k (Wu et al.'s small
          Multi30k Transformer is 4+4 x 128 at 2.6M parameters).
  cpu     a model and step count sized for about an hour on 2 CPU cores.
  test    a tiny model on a tenth of the data, for the test suite.

The data path is relative to the repository root (the shared data folder
beside it); override it with --config.data.path=.
"""

from lm import config as lm_config


def get_config(arg=None):
  c = lm_config.default()
  c.task = 'translation'
  c.data.update(name='multi30k', config='en-de',
                path='../shared/data/multi30k', tokenizer='sentencepiece',
                vocab_size=10000, max_tokens=4096, length_bucket=8,
                batch_size=32)  # Pairs per batch of the eval-loss sample.
  c.model.update(num_layers=4, num_heads=4, embed_dim=256, mlp_dim=1024,
                 max_len=64, position='sinusoidal', scale_embeddings=True,
                 norm_position='post', activation='relu', dropout=0.1,
                 tie_embeddings=True, share_embeddings=True,
                 scaled_init=False)
  c.optim.update(name='adamw', lr=1e-3, warmup_steps=1000, b1=0.9, b2=0.98,
                 eps=1e-9, weight_decay=0.0001, grad_clip=0.0,
                 schedule='inverse_sqrt', label_smoothing=0.1)
  c.train.update(num_steps=20000, eval_every=1000, eval_batches=20,
                 log_every=50)
  c.checkpoint.update(every=1000, max_to_keep=10)
  c.eval.update(beam_size=4, alpha=0.6, penalty='gnmt', batch_size=64,
                extra_splits='test2017,mscoco2017')

  if arg in (None, '', 'gpu'):
    pass
  elif arg == 'cpu':
    c.model.update(num_layers=3, num_heads=4, embed_dim=256, mlp_dim=512)
    c.data.update(vocab_size=8000, max_tokens=2048)
    c.optim.update(warmup_steps=800, lr=1e-3)
    # About 1.4 steps/s on 2 cores: 50 minutes of training (15 epochs).
    c.train.update(num_steps=4200, eval_every=500, log_every=20)
    c.checkpoint.update(every=500)
  elif arg == 'test':
    c.model.update(num_layers=1, num_heads=2, embed_dim=32, mlp_dim=64,
                   max_len=32, dropout=0.0)
    c.data.update(vocab_size=500, max_tokens=256, train_split='train[:2000]',
                  eval_split='validation[:64]', test_split='test[:32]')
    c.optim.update(warmup_steps=4)
    c.train.update(num_steps=6, eval_every=3, eval_batches=2, log_every=1)
    c.checkpoint.update(every=3, async_save=False)
    c.eval.update(beam_size=2, batch_size=16, extra_splits='')
  else:
    raise ValueError(f'unknown variant {arg!r}; choose gpu, cpu or test')
  return c
