"""Translation metrics: corpus BLEU and chrF of detokenized, cased output as
sacreBLEU computes them, and the tokenized, lowercased BLEU that Multi30k
papers report.

`corpus_scores` is the comparable figure: sacreBLEU's defaults (13a
tokenization, mixed case, exponential smoothing; chrF2) with the signatures
that say exactly what was computed. `tokenized_bleu` is the papers' figure:
the hypotheses go through the pipeline that made Multi30k's official
lowercased, tokenized references (`research_tokenize`) and are scored against
those references split on whitespace only, as multi-bleu.perl does. The two
figures are not comparable with each other.
"""

from __future__ import annotations

import functools
import gzip
import os

import sacrebleu


def _check_lengths(hypotheses: list[str], references: list[str]) -> None:
  """Raises ValueError unless there is one reference per hypothesis."""
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} '
                     'references; give exactly one reference per hypothesis')


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict:
  """Corpus BLEU and chrF of cased, detokenized hypotheses against one
  reference each, with sacreBLEU's default settings.

  Returns:
    {'bleu', 'chrf'}: the scores in 0..100, and {'bleu_signature',
    'chrf_signature'}: sacreBLEU's signatures of the settings, e.g.
    'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0'.
  """
  _check_lengths(hypotheses, references)
  bleu = sacrebleu.metrics.BLEU()
  chrf = sacrebleu.metrics.CHRF()
  return {
      'bleu': float(bleu.corpus_score(hypotheses, [references]).score),
      'chrf': float(chrf.corpus_score(hypotheses, [references]).score),
      'bleu_signature': str(bleu.get_signature()),
      'chrf_signature': str(chrf.get_signature()),
  }


@functools.cache
def _moses(lang: str):
  """The punctuation normalizer and tokenizer of `lang`, built once (the
  tokenizer loads its nonbreaking-prefix lists). sacremoses is imported
  here, not with the module: its import compiles regular expressions for
  half a second (`python -X importtime -c 'import lm.main'`), which every
  command line would otherwise pay."""
  import sacremoses  # pylint: disable=g-import-not-at-top
  # perl_parity: Moses's normalize-punctuation.perl turns a ’ that is not
  # between two letters into ", where sacremoses by default writes '.
  return (sacremoses.MosesPunctNormalizer(lang, perl_parity=True),
          sacremoses.MosesTokenizer(lang))


def research_tokenize(text: str, lang: str) -> str:
  """One raw sentence as Multi30k's scripts/task1-tokenize.sh makes it:
  lowercase.perl | normalize-punctuation.perl -l LANG | tokenizer.perl -l LANG,
  that is lowercased, punctuation-normalised and Moses-tokenized with the
  tokenizer's defaults: no aggressive hyphen splitting (no -a) and XML
  escaping of & | < > ' " [ ] (no -no-escape).
  """
  normalizer, tokenizer = _moses(lang)
  # The Perl normaliser sees each line with its newline, so its rule for
  # de/es/fr that moves a period out of a closing quote (`."` then any
  # character but `<`) fires at the end of a line too; sacremoses sees no
  # newline unless given one. The normaliser strips it again.
  normalized = normalizer.normalize(text.lower() + '\n')
  return tokenizer.tokenize(normalized, aggressive_dash_splits=False,
                            return_str=True, escape=True)


def tokenized_bleu(hypotheses: list[str], tok_references: list[str],
                   lang: str) -> float:
  """BLEU as Multi30k papers report it: raw hypotheses through
  `research_tokenize`, scored against the official lowercased, tokenized
  references with no further tokenization (multi-bleu.perl's figure)."""
  _check_lengths(hypotheses, tok_references)
  tokenized = [research_tokenize(h, lang) for h in hypotheses]
  # force: sacreBLEU otherwise warns that the input looks tokenized, which
  # here it is on purpose.
  bleu = sacrebleu.metrics.BLEU(tokenize='none', force=True)
  return float(bleu.corpus_score(tokenized, [tok_references]).score)


def read_lines(path: str | os.PathLike) -> list[str]:
  """The lines of a UTF-8 text file, gzip-compressed if its name ends in .gz,
  without their line ends (LF or CR LF)."""
  opener = gzip.open if os.fspath(path).endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8', newline='') as f:
    text = f.read()
  # Split on '\n' only: str.splitlines would also break at the form feeds and
  # Unicode line separators a sentence may contain.
  lines = text.split('\n')
  if lines[-1] == '':
    lines.pop()
  return [line.removesuffix('\r') for line in lines]
