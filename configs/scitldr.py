"""Summarization of SciTLDR-A (abstract -> one-sentence TLDR) with an
encoder-decoder, pretrained by T5's span corruption.

Two steps, one config: pretrain (`:pretrain_*`, task=span_corruption) on
WikiText-2 followed by the SciTLDR training abstracts (the abstracts only:
never a summary or title of any split), then fine-tune (task=summarization)
on every (abstract, TLDR) training pair, starting from it:

  python -m lm.main --config=configs/scitldr.py:pretrain_cpu --workdir=PRE
  python -m lm.main --config=configs/scitldr.py:cpu \\
      --config.init_from=PRE --workdir=RUN

The fine-tune ends with ROUGE-1/2/L of the test split (best reference,
stemmed), beside the lead-sentence baseline and the sentence oracle. Both
steps share the model and the SentencePiece vocabulary (with T5's 100
sentinels), which the pretraining run trains on its text and the fine-tune
keeps. The model is a T5-style encoder-decoder: pre-norm, T5's relative
position buckets, GELU, one embedding shared by encoder, decoder and output
layer, no dropout while pretraining and 0.1 while fine-tuning.

Variants (`--config=configs/scitldr.py:VARIANT`):
  cpu, pretrain_cpu    3+3 layers of width 256, abstracts cut at 384
                       pieces: about an hour on 2 CPU cores for both.
  gpu, pretrain_gpu    6+6 layers of width 512 and a longer pretraining.
  test, pretrain_test  a tiny model for the test suite.
"""

from lm import config as lm_config

wikitext2_word = lm_config.sibling(__file__, 'wikitext2_word')

# Variant size -> (layers, width, heads, MLP width, pretraining steps,
# fine-tuning steps).
SHAPES = {'cpu': (3, 256, 4, 1024, 900, 400),
          'gpu': (6, 512, 8, 2048, 20000, 3000),
          'test': (1, 32, 2, 64, 4, 4)}


def model(c, size: str):
  """The encoder-decoder of `size` (shared by both steps)."""
  layers, width, heads, mlp, _, _ = SHAPES[size]
  c.model.update(num_layers=layers, num_heads=heads, embed_dim=width,
                 mlp_dim=mlp, max_len=384, position='t5',
                 norm_position='pre', activation='gelu', dropout=0.0,
                 tie_embeddings=True, share_embeddings=True)
  c.data.update(tokenizer='sentencepiece', vocab_size=8000, target_len=64)
  if size == 'test':
    c.model.max_len = 96
    c.data.update(vocab_size=600, target_len=32)
  return c


def get_config(arg=None):
  arg = arg or 'cpu'
  pretrain = arg.startswith('pretrain_')
  size = arg.removeprefix('pretrain_')
  if size not in SHAPES:
    raise ValueError(f'unknown variant {arg!r}; choose '
                     f'{", ".join(SHAPES)} or pretrain_ + one of them')
  c = lm_config.default()
  model(c, size)
  _, _, _, _, pre_steps, steps = SHAPES[size]
  c.optim.update(name='adamw', lr=1e-3, min_lr=1e-5, warmup_steps=200,
                 b1=0.9, b2=0.98, eps=1e-9, weight_decay=0.01,
                 grad_clip=1.0)
  # No trigram twice in a summary, as BART's summarization configs decode.
  c.eval.update(beam_size=4, alpha=0.6, penalty='gnmt', batch_size=32,
                no_repeat_ngram=3)
  if pretrain:
    c.task = 'span_corruption'
    c.data.update(name='wikitext2', config='tokens',
                  path=wikitext2_word.local_copy('wikitext-2'),
                  extra_name='scitldr',
                  extra_path=wikitext2_word.local_copy('scitldr'),
                  extra_split='train', batch_size=16,
                  noise_density=0.15, mean_span=3.0,
                  # The spans of a 426-token window (inputs of 384): 86.
                  target_len=96 if size != 'test' else 32)
    c.train.update(num_steps=pre_steps, eval_every=300, eval_batches=8,
                   log_every=25)
  else:
    c.task = 'summarization'
    c.model.dropout = 0.1
    c.data.update(name='scitldr', path=wikitext2_word.local_copy('scitldr'),
                  max_tokens=4096, length_bucket=32, batch_size=16)
    c.optim.update(lr=5e-4, warmup_steps=100, label_smoothing=0.1)
    c.train.update(num_steps=steps, eval_every=100, eval_batches=10,
                   log_every=25)
  c.checkpoint.update(every=300 if pretrain else 100)
  if size == 'test':
    c.data.update(batch_size=8, max_tokens=384)
    c.optim.update(warmup_steps=2)
    c.train.update(eval_every=2, eval_batches=2, log_every=1)
    c.checkpoint.update(every=2, async_save=False)
    c.eval.update(beam_size=2, batch_size=8)
    if pretrain:  # A slice of WikiText-2, not all of it.
      c.data.update(train_split='train[:2000]',
                    eval_split='validation[:400]', test_split='test[:400]')
    else:
      c.data.update(train_split='train[:200]', eval_split='validation[:40]',
                    test_split='test[:40]')
  return c
