"""SentencePiece GPT on WikiText-2: subwords trained on the training split.

The same corpus and splits as wikitext2_word.py; the tokenizer is a
SentencePiece BPE model (`data.spm_model_type='unigram'` for unigram) trained
on the training split and saved in the run directory. The final evaluation
reports word-level perplexity (total NLL over the WikiText word count), so the
figure is comparable with the word-level model's.

Variants, chosen with `--config=configs/wikitext2_bpe.py:VARIANT`:
  (none)  one GPU: 6 layers, 512 wide, context 512, 8k vocabulary.
  cpu     about 20 minutes on a 2-core CPU: the word config's model
          (2 layers, 256 wide, context 128, batch 16), 2,200 steps.
  test    a tiny model for the test suite.
"""

from lm import config as lm_config

wikitext2_word = lm_config.sibling(__file__, 'wikitext2_word')


def get_config(arg=None):
  c = wikitext2_word.get_config(arg)
  c.data.update(tokenizer='sentencepiece', spm_model_type='bpe',
                vocab_size=8000)
  if arg in (None, '', 'gpu'):
    c.model.max_len = 512
  elif arg == 'cpu':
    # The word config's model; an 8k output layer makes a step about 2.3x
    # cheaper, so the same 20 minutes buy 2,200 steps (~1.7 epochs).
    c.model.dropout = 0.1
    c.train.update(num_steps=2200, eval_every=500)
    c.checkpoint.every = 500
  elif arg == 'test':
    # WikiText-2 has 541 distinct characters: SentencePiece needs room for
    # them all (500 failed to train). Part of the splits: seconds to prepare.
    c.data.update(vocab_size=1000, train_split='train[:10%]',
                  eval_split='validation[:20%]', test_split='')
  return c
