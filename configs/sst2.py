"""SST-2 sentiment: a BERT encoder fine-tuned as a [CLS] classifier.

  python -m lm.finetune --config=configs/sst2.py:mini
      --config.init_from=runs/bert_mini --workdir=runs/sst2_mini

`init_from` is a masked-LM or ELECTRA run (configs/bert_wikitext2.py, the
same VARIANT): its encoder and tokenizer start this run under a new classifier.
Without it the same encoder is trained from scratch (its tokenizer trained on
the SST-2 training sentences): the baseline that shows what pretraining is
worth. Sentences are `[CLS] pieces [SEP]` rows of `data.seq_len` (longer ones
are cut, and counted); the best step is chosen on 5% of the training
sentences held out of training (whole sentences; data.selection_split), and
training stops after `train.early_stopping` evaluations without a better
one; dev is scored once, at the end, for the chosen step. GLUE's test labels
are hidden, so dev accuracy is the reported figure.

Variants: tiny, mini (default), base, cpu, electra, test, as in
configs/bert_wikitext2.py. `glove`: a small encoder (2 layers, 50 wide, 5
heads) from scratch on words (data.tokenizer=word, lowercased, every
training word), its token table started from the GloVe 6B vectors of
../shared/data/glove (model.init_embeddings; '' for a random start), with
`cpu`'s schedule. `cpu` (or `electra`, the same) fine-tunes those
variants' encoders (rotary positions) with the measured recipe: a moving average of the parameters
(`train.ema_decay=0.998`, evaluated and kept) and the schedule compressed
into 3,000 steps; the final evaluation is of the best step (patience 6).
"""

from lm import config as lm_config

bert_wikitext2 = lm_config.sibling(__file__, 'bert_wikitext2')
wikitext2_word = lm_config.sibling(__file__, 'wikitext2_word')


GLOVE_FILE = 'glove.6B.50d.100k.txt.gz'


def get_config(arg=None):
  arg = arg or 'mini'
  c = wikitext2_word.get_config('test' if arg == 'test' else 'cpu')
  c.task = 'classification'
  bert_wikitext2.encoder(c, 'tiny' if arg == 'glove' else arg)
  c.data.update(name='sst2', config='', path=wikitext2_word.local_copy('sst2'),
                seq_len=64, batch_size=32,
                # Training phrases average 18 pieces: batched by length, rows
                # cut to multiples of 16 cost about a third of rows of 64.
                length_bucket=16)
  c.model.num_classes = 2
  c.optim.update(lr=2e-4, min_lr=1e-5, warmup_steps=100, weight_decay=0.01)
  # About 2.4 epochs of the 67k training phrases; selection accuracy is
  # checked every 250 steps and training stops after 4 checks without a
  # better one.
  c.train.update(num_steps=5000, eval_every=250, log_every=25,
                 early_stopping=4)
  c.checkpoint.update(every=250, max_to_keep=1)
  if arg in ('cpu', 'electra', 'glove'):
    c.train.update(ema_decay=0.998, num_steps=3000, early_stopping=6)
  if arg == 'glove':
    glove = wikitext2_word.local_copy('glove')
    c.model.update(num_layers=2, embed_dim=50, num_heads=5,
                   init_embeddings=glove and f'{glove}/{GLOVE_FILE}')
    c.data.update(tokenizer='word', lowercase=True, vocab_size=0)
    c.optim.lr = 1e-3
  if arg == 'test':  # Part of the splits: a few seconds to prepare.
    c.data.update(seq_len=12, batch_size=8, length_bucket=0,
                  train_split='train[:3000]',
                  eval_split='validation[:200]', test_split='')
    c.optim.warmup_steps = 2
    c.train.update(num_steps=4, eval_every=2, log_every=1, early_stopping=0)
    c.checkpoint.update(every=2, async_save=False)
  return c
