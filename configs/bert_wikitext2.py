"""BERT masked-language-model pretraining on WikiText-2 (task=masked_lm).

A bidirectional encoder (token, learned position and token-type embeddings,
pre-norm blocks (stabler than BERT's post-norm on short budgets), GELU) trained on BERT's recipe: 15% of the
tokens of each `[CLS] ... [SEP]` row chosen, 80% of those replaced by [MASK],
10% by a random piece, 10% left; the loss only on the chosen. The vocabulary
is an 8,000-piece SentencePiece BPE model with BERT's special tokens, trained
on the training split. The final evaluation reports masked-token loss,
perplexity and accuracy over the whole validation and test splits.

Fine-tune the result on SST-2 with configs/sst2.py and the same VARIANT.

Variants (`--config=configs/bert_wikitext2.py:VARIANT`), BERT's shapes:
  tiny    2 layers, 128 wide, 2 heads.
  mini    4 layers, 256 wide, 4 heads (the default): about 30 minutes on a
          2-core CPU.
  base    12 layers, 768 wide, 12 heads (BERT-base), for an accelerator.
  cpu     BERT-mini with the measured 30-minute CPU recipe (BENCHMARKS.md):
          rotary positions (`model.position=rope`) instead of learned ones,
          40% of tokens masked (80-10-10 within them) and no dropout. With
          rotary positions the masked-LM predicts 29% of masked tokens after
          300 steps, where learned positions reach 17% after 600.
          configs/sst2.py:cpu fine-tunes it.
  electra the cpu encoder pretrained as ELECTRA's discriminator
          (task=replaced_token, Clark et al., 2020): a generator a quarter
          as wide (one head) fills 25% of the tokens with its samples, and
          the encoder learns from every token which were replaced.
          configs/sst2.py:cpu fine-tunes it too.
  test    a very small model for the test suite.
"""

from lm import config as lm_config

wikitext2_word = lm_config.sibling(__file__, 'wikitext2_word')

# Variant -> (layers, width, heads): the BERT miniatures of Turc et al.
# (2019) and BERT-base.
SHAPES = {'tiny': (2, 128, 2), 'mini': (4, 256, 4), 'base': (12, 768, 12),
          'cpu': (4, 256, 4), 'electra': (4, 256, 4), 'test': (1, 32, 2)}


def encoder(c, arg):
  """Sets `c` to BERT's encoder of shape `arg` (shared with configs/sst2.py)."""
  if arg not in SHAPES:
    raise ValueError(f'unknown variant {arg!r}; choose '
                     f'{", ".join(SHAPES)}')
  layers, width, heads = SHAPES[arg]
  c.model.update(num_layers=layers, embed_dim=width, num_heads=heads,
                 causal=False, norm_position='pre', type_vocab_size=2,
                 activation='gelu', position='learned', max_len=128,
                 dropout=0.1, dropout_sites='embed,attention,residual')
  if arg in ('cpu', 'electra'):  # Relative positions from the first step.
    c.model.position = 'rope'
  # Uncased (BERT-uncased; SST-2's text is lowercase).
  c.data.update(tokenizer='sentencepiece', spm_model_type='bpe',
                vocab_size=8000, lowercase=arg != 'test')
  if arg == 'test':
    c.model.max_len = 16
    c.data.vocab_size = 1000
  return c


def get_config(arg=None):
  arg = arg or 'mini'
  c = wikitext2_word.get_config('test' if arg == 'test' else 'cpu')
  c.task = 'masked_lm'
  encoder(c, arg)
  c.optim.update(lr=1e-3, min_lr=1e-4, warmup_steps=200, b2=0.99,
                 weight_decay=0.01)
  if arg == 'base':
    c.data.batch_size = 128
    c.optim.update(lr=1e-4, min_lr=1e-5, warmup_steps=2000)
    c.train.update(num_steps=40000, eval_every=2000, eval_batches=50,
                   log_every=100)
    c.checkpoint.every = 2000
  elif arg in ('mini', 'tiny', 'cpu', 'electra'):
    # The SST-2 training sentences (no labels, never dev) in the stream
    # after WikiText-2's: in-domain text for the fine-tune.
    c.data.update(extra_name='sst2',
                  extra_path=wikitext2_word.local_copy('sst2'))
    c.data.batch_size = 32
    # 1,800 steps of 32 x 128 (7.4M tokens, about two epochs): about 0.92 s
    # a step for mini on 2 CPU cores (the output layer only at the masked
    # positions).
    c.train.update(num_steps=1800, eval_every=300, eval_batches=10,
                   log_every=10)
    c.checkpoint.every = 300
  if arg in ('cpu', 'electra'):
    # Wettig et al. (2023): more masked positions, more signal per step. Each
    # token is seen about twice, so dropout only slows learning.
    c.data.mask_rate = 0.4
    c.model.dropout = 0.0
  if arg == 'electra':
    # Every token teaches the discriminator; the generator's masked share is
    # ELECTRA-small++'s 25% (15% in the paper's other models).
    c.task = 'replaced_token'
    c.data.mask_rate = 0.25
  if arg == 'test':  # Part of the splits: a few seconds to prepare.
    c.data.update(train_split='train[:10%]', eval_split='validation[:20%]',
                  test_split='')
  return c
