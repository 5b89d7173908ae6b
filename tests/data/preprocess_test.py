"""Tests of lm.data.preprocess."""

import pytest

from lm.data import preprocess


def test_normalize_nfkc_folds_compatibility_characters():
  assert preprocess.normalize('ﬁne ﬂour') == 'fine flour'
  assert preprocess.normalize('ＡＢＣ１２') == 'ABC12'  # Full-width forms.
  assert preprocess.normalize('ﬁ', 'NFC') == 'ﬁ'  # NFC keeps the ligature.


def test_normalize_nfc_composes_accents():
  decomposed = 'cafe\u0301'
  assert preprocess.normalize(decomposed, 'NFC') == 'caf\u00e9'
  assert preprocess.normalize(decomposed, 'none') == decomposed


def test_normalize_collapses_blanks_but_keeps_newlines():
  text = 'a  b\t\tc \u00a0d\n\n  e\n'
  assert preprocess.normalize(text) == 'a b c d\n\n e\n'
  assert preprocess.normalize(text, 'none') == text


def test_unknown_form_is_a_one_line_value_error():
  for call in (lambda: preprocess.normalize('x', 'NFD'),
               lambda: preprocess.make(normalize='nfkd')):
    with pytest.raises(ValueError, match='unknown normalisation form') as e:
      call()
    assert '\n' not in str(e.value)


def test_lowercase():
  assert preprocess.lowercase('The CAT, Él\n') == 'the cat, él\n'


def test_stopwords_are_whole_words_in_any_case():
  text = 'The theme of The Island\nIt is, in short, an anthem'
  assert preprocess.remove_stopwords(text) == 'theme Island\n, short, anthem'


def test_stopword_removal_keeps_lines():
  text = 'the cat\n\nand the\nof\nsat on a mat\n'
  out = preprocess.remove_stopwords(text)
  assert out == 'cat\n\n\n\nsat mat\n'
  assert out.count('\n') == text.count('\n')


def test_stopwords_keep_negations_and_contractions_whole():
  assert preprocess.remove_stopwords("it's not good, isn't it") == (
      "not good, isn't")
  assert preprocess.remove_stopwords('it\u2019s fine') == 'fine'
  assert {'not', 'no', 'nor'}.isdisjoint(preprocess.ENGLISH_STOPWORDS)


def test_custom_stopwords():
  assert preprocess.remove_stopwords('Red fish BLUE fish',
                                     {'fish', 'blue'}) == 'Red'
  assert preprocess.remove_stopwords('a  b', ()) == 'a  b'


def test_english_stopwords_are_lower_case_function_words():
  words = preprocess.ENGLISH_STOPWORDS
  assert 120 <= len(words) <= 200
  assert all(w == w.lower() and ' ' not in w for w in words)
  assert {'the', 'a', 'of', 'and', 'is', 'to'} <= words


def test_make_is_the_identity_when_all_options_are_off():
  text = 'Ｔhe  ﬁsh\tof\nTHE sea  \n'
  assert preprocess.make()(text) == text


def test_make_applies_options_in_order():
  text = 'Ｔhe  ﬁsh\tOF\nTHE sea  \n'
  assert preprocess.make('NFKC')(text) == 'The fish OF\nTHE sea \n'
  assert preprocess.make('NFKC', lowercase=True)(text) == (
      'the fish of\nthe sea \n')
  # Without normalisation the full-width 'Ｔhe' is no stop word.
  assert preprocess.make(remove_stopwords=True)(text) == 'Ｔhe ﬁsh\nsea\n'
  assert preprocess.make('NFKC', True, True)(text) == 'fish\nsea\n'
