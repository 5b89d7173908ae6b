"""Text preprocessing options: Unicode normalisation, lower-casing, stop words.

Each option changes the text a model sees, so choose them knowingly:

- Stop-word removal is for classification pipelines (bag-of-words style
  features, sentiment). It is wrong for language modelling: it changes the
  very text whose probability is measured, so the perplexity is no longer
  that of the corpus.
- Normalisation and lower-casing change the vocabulary, and therefore make
  perplexities incomparable with published numbers (WikiText results are on
  the raw, cased text).

`make` composes the chosen options into one text -> text function; with all
of them off it is the identity, and the corpus is read as published.
"""

from __future__ import annotations

import functools
import re
from typing import Callable
from typing import Iterable
import unicodedata

FORMS = ('none', 'NFC', 'NFKC')

# Common English function words: articles, pronouns, prepositions,
# conjunctions, auxiliaries, and a few frequent adverbs and contractions.
# Negations ('not', 'no', 'nor', "n't" forms) are deliberately absent: they
# carry the polarity that sentiment features need.
ENGLISH_STOPWORDS = frozenset('''
a an the this that these those
i me my mine myself we us our ours ourselves you your yours yourself
yourselves he him his himself she her hers herself it its itself they them
their theirs themselves
who whom whose which what where when why how there here
am is are was were be been being have has had having do does did doing
will would shall should can could may might must
i'm i've i'll you're we're they're it's that's there's let's
and or but if then so than as because while until unless although though
whether either yet
of at by for with about against between into through during before after
above below to from up down in out on off over under again further once
upon within without toward towards among across along around behind
all any both each few more most other some such only own same too very
just also even ever still much many
'''.split())

_BLANKS = re.compile(r'[ \t]+')
# Apostrophes count as word characters, so "it" never matches inside "it's".
_WORD_EDGE = r"\w'\u2019"


def _form(form: str) -> str | None:
  """The unicodedata name of normal form `form` (None for 'none')."""
  forms = {f.lower(): f for f in FORMS}
  if str(form).lower() not in forms:
    raise ValueError(f'unknown normalisation form {form!r}; use one of '
                     f'{", ".join(FORMS)}')
  name = forms[str(form).lower()]
  return None if name == 'none' else name


def normalize(text: str, form: str = 'NFKC') -> str:
  """`text` in Unicode normal form `form`, each run of spaces and tabs within
  a line collapsed to one space; newlines are kept. 'none' returns `text`.

  NFKC also folds compatibility characters ('ﬁ' -> 'fi', full-width letters,
  no-break spaces); NFC only composes accents.
  """
  name = _form(form)
  if name is None:
    return text
  return _BLANKS.sub(' ', unicodedata.normalize(name, text))


def lowercase(text: str) -> str:
  """`text` in lower case."""
  return text.lower()


@functools.lru_cache(maxsize=8)
def _stopword_pattern(stopwords: frozenset[str]) -> re.Pattern[str]:
  # Sorted: a pattern independent of set order (longest first backtracks
  # less).
  words = sorted(stopwords, key=lambda w: (-len(w), w))
  # A typographic apostrophe matches a straight one: "it’s" is "it's".
  alternatives = '|'.join(re.escape(w).replace("'", "['\u2019]")
                          for w in words)
  return re.compile(rf"(?<![{_WORD_EDGE}])(?:{alternatives})(?![{_WORD_EDGE}])",
                    re.IGNORECASE)


def remove_stopwords(text: str,
                     stopwords: Iterable[str] = ENGLISH_STOPWORDS) -> str:
  """`text` without the whole words in `stopwords` (any case), each line's
  remaining words joined by single spaces; the lines themselves are kept.

  Punctuation stays ('the, end' -> ', end').
  """
  stopwords = frozenset(w.lower() for w in stopwords)
  if not stopwords:
    return text
  pattern = _stopword_pattern(stopwords)
  return '\n'.join(' '.join(pattern.sub('', line).split())
                   for line in text.split('\n'))


# make()'s arguments shadow the functions of the same names.
_normalize, _lowercase, _remove_stopwords = (normalize, lowercase,
                                             remove_stopwords)


def make(normalize: str = 'none', lowercase: bool = False,
         remove_stopwords: bool = False) -> Callable[[str], str]:
  """The text -> text function applying the chosen options in this order:
  `normalize` (a form of FORMS), `lowercase`, `remove_stopwords`.

  With every option off it returns texts unchanged.
  """
  steps = []
  if _form(normalize) is not None:  # Checks the form now, not per text.
    steps.append(functools.partial(_normalize, form=normalize))
  if lowercase:
    steps.append(_lowercase)
  if remove_stopwords:
    steps.append(_remove_stopwords)

  def transform(text: str) -> str:
    for step in steps:
      text = step(text)
    return text

  return transform
