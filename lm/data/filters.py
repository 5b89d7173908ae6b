"""Data filters acting on what `lm.data_report` finds, applied to the
training split only (evaluation splits stay as published, so their figures
remain comparable with other work):

  data.decontaminate  drop training documents that share a word n-gram
                      (data.decontaminate_ngram, 13) with any evaluation split
  data.dedup          'exact' or 'near' (Jaccard >= data.dedup_threshold):
                      of each group of duplicate training documents keep the
                      first (documents under 4 words, headings and
                      fragments, are never dropped)
  data.scrub_pii      replace e-mail addresses, phone numbers, IP addresses
                      and card numbers with <EMAIL>, <PHONE>, <IP>, <CARD>

in that order, before the tokenizer is trained. Each is a deterministic
function of the text and the config, so a resumed run reads the same
filtered split. A pair (translation, summarization) is one document: it is
dropped if its source or its target shares an n-gram with an evaluation
split's sources or targets, and it is a duplicate of another pair as a whole.
"""

from __future__ import annotations

import collections

import numpy as np

from lm.data import contamination
from lm.data import duplicates
from lm.data import pii

# Documents of fewer words (headings, fragments) are never dropped as
# duplicates, as `lm.data_report` leaves them out of its counts.
MIN_WORDS = 4


def active(d) -> bool:
  """Whether data config `d` turns any filter on."""
  return d.dedup != 'none' or d.decontaminate or d.scrub_pii


def _fields(texts) -> list[list[str]]:
  """A split's texts as fields: [texts], or of pairs [sources, targets]."""
  if texts and isinstance(texts[0], tuple):
    return [[a for a, _ in texts], [b for _, b in texts]]
  return [list(texts)]


def apply(d, texts: dict, labels: dict, others: dict | None = None
          ) -> tuple[dict, dict, dict]:
  """(texts, labels, what changed) after data config `d`'s filters; `texts`
  maps each split to its documents (strings or (source, target) pairs) and
  `labels` (maybe empty) each split to an array aligned with them; `others`
  the corpus's further splits, which decontamination checks against too
  (Multi30k's test2017)."""
  train = list(texts['train'])
  keep = np.ones(len(train), bool)
  changed = {}
  if d.decontaminate:
    evaluation_splits = {**{s: t for s, t in texts.items() if s != 'train'},
                         **(others or {})}
    dirty = np.zeros(len(train), bool)
    for i, field in enumerate(_fields(train)):
      evaluation = [t for split in evaluation_splits.values()
                    for t in _fields(split)[i]]
      index = contamination.NgramIndex(evaluation, d.decontaminate_ngram)
      dirty |= index.check(field).contaminated
    keep &= ~dirty
    changed['decontaminate'] = {
        'ngram': d.decontaminate_ngram, 'against': list(evaluation_splits),
        'dropped': int(dirty.sum()), 'of': len(train)}
  if d.dedup != 'none':
    kept = np.flatnonzero(keep)
    # A pair is one document: its source and target side by side.
    whole = [train[i] if isinstance(train[i], str) else ' \n '.join(train[i])
             for i in kept]
    first = np.asarray(duplicates.keep_first(
        whole, d.dedup, d.dedup_threshold, min_words=MIN_WORDS), bool)
    keep[kept[~first]] = False
    changed['dedup'] = {'mode': d.dedup, 'dropped': int((~first).sum()),
                        'of': len(kept)}
    if d.dedup == 'near':
      changed['dedup']['threshold'] = d.dedup_threshold
  train = [t for t, k in zip(train, keep) if k]
  if d.scrub_pii:
    replaced, documents = collections.Counter(), 0

    def scrub(text):
      nonlocal documents
      out, counts = pii.scrub(text)
      replaced.update(counts)
      documents += bool(counts)
      return out
    train = [tuple(scrub(x) for x in t) if isinstance(t, tuple) else scrub(t)
             for t in train]
    changed['scrub_pii'] = {'documents': documents,
                            'replaced': {k: replaced[k] for k in pii.KINDS}}
  texts = dict(texts, train=train)
  if 'train' in labels:
    labels = dict(labels, train=labels['train'][keep])
  return texts, labels, changed


def describe(changed: dict) -> list[str]:
  """One line per filter that ran, for the run's log."""
  lines = []
  if 'decontaminate' in changed:
    c = changed['decontaminate']
    lines.append(f'data.decontaminate: dropped {c["dropped"]:,} of '
                 f'{c["of"]:,} training documents sharing a {c["ngram"]}-gram '
                 f'with {", ".join(c["against"]) or "no evaluation split"}')
  if 'dedup' in changed:
    c = changed['dedup']
    lines.append(f'data.dedup={c["mode"]}: dropped {c["dropped"]:,} of '
                 f'{c["of"]:,} training documents as duplicates')
  if 'scrub_pii' in changed:
    c = changed['scrub_pii']
    kinds = ', '.join(f'{n} {k}' for k, n in c['replaced'].items() if n)
    lines.append(f'data.scrub_pii: replaced {kinds or "nothing"} in '
                 f'{c["documents"]:,} training documents')
  return lines
