"""Tests of lm.data.encoder_rows: masked stream rows, whole-split tiles, sentences."""

import numpy as np
import pytest

from lm.data import encoder_rows as encoder_data
from lm.data import masking
from lm.data import tokenizer as tokenizer_lib
from lm.data import vocabulary

TEXTS = ['the cat sat on the mat .', 'a dog ran in the park !',
         'what a wonderful , moving film', 'dull and far too long'] * 20


@pytest.fixture(scope='module')
def tok():
  return tokenizer_lib.train('sentencepiece', TEXTS, vocab_size=390,
                             specials='bert')


def stream(n=500, seed=0):
  return np.random.default_rng(seed).integers(5, 390, n).astype(np.int32)


def test_stream_rows_are_cls_window_sep(tok):
  ids = tok.special_ids
  rows = encoder_data.StreamRows(stream(), 16, ids['cls'], ids['sep'])
  assert len(rows) == 500 - 14 + 1
  row = rows[7]['inputs']
  assert row.shape == (16,) and row[0] == ids['cls'] and row[-1] == ids['sep']
  np.testing.assert_array_equal(row[1:-1], stream()[7:21])


def test_mlm_batches_are_masked_seeded_and_resume_exactly(tok):
  ds = encoder_data.mlm_train_dataset(stream(), 16, 8, seed=3, tok=tok,
                                      rate=0.15)
  it = iter(ds)
  first = next(it)
  assert first['inputs'].shape == (8, 16)
  chosen = first['weights'] > 0
  assert chosen.sum(1).min() >= 1  # round(15% of 14) = 2 per row.
  # Only chosen positions differ from the targets; specials never chosen.
  assert (first['inputs'] != first['targets'])[~chosen].sum() == 0
  assert not chosen[:, 0].any() and not chosen[:, -1].any()
  assert_resumes_exactly(ds, it)


def test_whole_word_masking_in_both_pipelines(tok):
  tokens = tok.encode(' '.join(TEXTS))
  ds = encoder_data.mlm_train_dataset(tokens, 16, 8, seed=3, tok=tok,
                                      rate=0.4, whole_word=True)
  it = iter(ds)
  batches = [next(it) for _ in range(5)]
  batches += list(encoder_data.mlm_tiles(tokens, 16, 4, tok, 0.4, seed=0,
                                         whole_word=True))
  split_words = 0
  for batch in batches:
    for row, weights in zip(batch['targets'], batch['weights']):
      starts = np.flatnonzero(masking.word_starts(row, tok.word_kinds()))
      for word in np.split(weights, starts[1:]):  # Each word all or none.
        split_words += 0 < word.sum() < len(word)
  assert split_words == 0
  assert_resumes_exactly(ds, it)
  pieces = encoder_data.mlm_dataset(tokens, 16, 8, seed=3, tok=tok, rate=0.4)
  assert not np.array_equal(pieces[0]['weights'], batches[0]['weights'])
  char = tokenizer_lib.train('char', TEXTS)
  with pytest.raises(vocabulary.TokenizerError,
                     match='whole_word_mask needs pieces that mark words'):
    encoder_data.mask_spec(char, 0.4, whole_word=True)


def assert_resumes_exactly(ds, it, n=3):
  """A fresh iterator of `ds` set to `it`'s state yields `it`'s next n."""
  state = it.get_state()
  rest = [next(it) for _ in range(n)]
  again = iter(ds)
  again.set_state(state)
  for a, b in zip(rest, [next(again) for _ in range(n)]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_tiles_cover_every_token_once_with_fixed_masks(tok):
  ids = tok.special_ids
  tokens = stream(103)
  batches = list(encoder_data.mlm_tiles(tokens, 16, 4, tok, 0.15, seed=0))
  rows = np.concatenate([b['targets'] for b in batches])
  real = np.concatenate([b['weights'] for b in batches]).sum(1) > 0
  body = [r[1:list(r).index(ids['sep'])] for r in rows[real]]
  np.testing.assert_array_equal(np.concatenate(body), tokens)  # In order.
  again = list(encoder_data.mlm_tiles(tokens, 16, 4, tok, 0.15, seed=0))
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])
  # 8 rows of 14 tokens (the last 5): 2 batches, the second half filler.
  assert len(batches) == 2 and real.sum() == 8


def test_sentences_are_padded_counted_and_cut(tok):
  ids = tok.special_ids
  texts = ['dull', 'the cat sat on the mat . ' * 5]
  s = encoder_data.Sentences.encode(tok, texts, [0, 1], max_len=12)
  assert s.inputs.shape == (2, 12)
  n = len(tok.encode('dull'))
  assert list(s.inputs[0, :n + 2]) == [ids['cls'], *tok.encode('dull'),
                                       ids['sep']]
  assert (s.inputs[0, n + 2:] == ids['pad']).all()
  np.testing.assert_array_equal(s.segment_ids[0], [1] * (n + 2) + [0] *
                                (10 - n))
  assert s.inputs[1, -1] == ids['sep'] and s.segment_ids[1].all()
  assert s.truncated == 1 and s.longest == len(tok.encode(texts[1]))
  note = s.truncation_note('train', 12)
  assert note.startswith('train: 1 of 2 sentences are longer than 10 pieces')
  assert encoder_data.Sentences.encode(tok, ['dull'], [0], 12
                                       ).truncation_note('x', 12) == ''


def test_sentence_batches_fill_the_last_with_weight_zero(tok):
  s = encoder_data.Sentences.encode(tok, TEXTS[:5], [0, 1, 1, 0, 1], 16)
  batches = list(encoder_data.sentence_batches(s, 4))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]['weights'], [1, 0, 0, 0])
  np.testing.assert_array_equal(
      np.concatenate([b['targets'][b['weights'] > 0] for b in batches]),
      [0, 1, 1, 0, 1])


def varied_sentences(tok, n=200):
  """n sentences of 1 to 20 words, each labelled with its index."""
  rng = np.random.default_rng(0)
  words = ' '.join(TEXTS[:4]).split()
  texts = [' '.join(rng.choice(words, rng.integers(1, 21))) for _ in range(n)]
  return encoder_data.Sentences.encode(tok, texts, np.arange(n), 48)


def test_length_grouped_batches_cover_an_epoch_in_short_rows(tok):
  s = varied_sentences(tok)
  grouped = encoder_data.LengthGroupedBatches(s, 8, seed=1, bucket=8, pool=5)
  assert grouped.batches_per_epoch == 25
  epoch = [grouped[i] for i in range(25)]
  for b in epoch:
    index, width = b['targets'], b['inputs'].shape[1]
    longest = s.segment_ids[index].sum(1).max()
    assert width == min(-(-longest // 8) * 8, 48)  # Rounded up to 8.
    np.testing.assert_array_equal(b['inputs'], s.inputs[index, :width])
    assert not s.segment_ids[index, width:].any()  # No real token cut.
  seen = np.concatenate([b['targets'] for b in epoch])
  assert sorted(seen) == list(range(200))  # Each sentence once an epoch.
  # Sorted pools: batches are of similar lengths, so rows are far shorter
  # than data.seq_len on average (every row 48 without grouping).
  widths = [b['inputs'].shape[1] for b in epoch]
  assert len(set(widths)) > 1 and np.mean(widths) < 40
  # The same index is the same batch; a new epoch reshuffles.
  again = encoder_data.LengthGroupedBatches(s, 8, seed=1, bucket=8, pool=5)
  np.testing.assert_array_equal(again[3]['inputs'], epoch[3]['inputs'])
  assert not all(np.array_equal(grouped[25 + i]['targets'], epoch[i]['targets'])
                 for i in range(25))


def test_length_grouped_iterator_resumes_exactly(tok):
  ds = encoder_data.sentence_train_dataset(varied_sentences(tok), 8, seed=2,
                                           bucket=8)
  it = iter(ds)
  for _ in range(30):  # Into the second epoch.
    next(it)
  assert_resumes_exactly(ds, it, 5)


@pytest.mark.parametrize('bucket', [0, 8])
def test_token_dropout_masks_training_pieces_and_resumes_exactly(tok, bucket):
  s = varied_sentences(tok)
  ids = tok.special_ids
  plain = iter(encoder_data.sentence_train_dataset(s, 8, seed=2,
                                                   bucket=bucket))
  ds = encoder_data.sentence_train_dataset(s, 8, seed=2, bucket=bucket,
                                           tok=tok, token_dropout=0.3)
  it = iter(ds)
  dropped = ordinary = 0
  for _ in range(30):
    a, b = next(plain), next(it)
    np.testing.assert_array_equal(a['targets'], b['targets'])  # Same order.
    np.testing.assert_array_equal(a['segment_ids'], b['segment_ids'])
    changed = a['inputs'] != b['inputs']
    assert (b['inputs'][changed] == ids['mask']).all()
    special = np.isin(a['inputs'], list(ids.values()))
    assert not changed[special].any()  # [CLS], [SEP], [PAD] kept.
    dropped += changed.sum()
    ordinary += (~special).sum()
  assert 0.25 < dropped / ordinary < 0.35
  assert_resumes_exactly(ds, it, 5)
