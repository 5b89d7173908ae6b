"""Tests of lm.tokenizer."""

import pytest

from lm import tokenizer as tokenizer_lib


def test_round_trip_and_sorted_ids(tmp_path):
  tok = tokenizer_lib.CharTokenizer.from_text('hello world')
  assert tok.vocab_size == 8 and tok.chars == ' dehlorw'
  ids = tok.encode('hold')
  assert ids.tolist() == [3, 5, 4, 1] and tok.decode(ids) == 'hold'
  tok.save(tmp_path / 't.json')
  again = tokenizer_lib.CharTokenizer.load(tmp_path / 't.json')
  assert again.chars == tok.chars


def test_unknown_characters_are_named():
  tok = tokenizer_lib.CharTokenizer.from_text('abc')
  with pytest.raises(tokenizer_lib.TokenizerError, match="'xz'"):
    tok.encode('axbz')


def test_load_missing_or_foreign_file(tmp_path):
  with pytest.raises(tokenizer_lib.TokenizerError, match='no tokenizer'):
    tokenizer_lib.CharTokenizer.load(tmp_path / 'missing.json')
  (tmp_path / 'bpe.json').write_text('{"type": "bpe"}')
  with pytest.raises(tokenizer_lib.TokenizerError, match="unknown tokenizer "
                     "type 'bpe'"):
    tokenizer_lib.CharTokenizer.load(tmp_path / 'bpe.json')
