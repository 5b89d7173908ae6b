"""A corpus's data-quality report: sizes, duplicates, train/test
contamination and personal data, for the corpus a config trains on.

  python -m lm.data_report --config=configs/wikitext2_word.py:cpu --out=DIR

The corpus is read as training reads it (the same builder, splits,
preprocessing and tokenizer, trained on the training split); a parallel or
summarization corpus is checked on its sources and its targets apart
(a source repeated once per reference counted once). Writes DIR/report.json,
DIR/report.md and DIR/lengths.png:
- per split: documents, tokens, characters, words, the vocabulary, and the
  share of an evaluation split's words (and tokens read as unknown) that the
  training split lacks; document lengths (plot);
- exact duplicates (normalised text) within each split and between the
  training split and each evaluation split;
- near duplicates between them (MinHash LSH over word shingles, Jaccard at
  least --near_threshold), the closest pairs shown;
- contamination: the evaluation documents that share a word n-gram
  (--ngram, 13 as in the GPT-3 paper) with the training split, and the
  share of their words such n-grams cover;
- personal data: e-mail addresses, phone numbers, IP addresses and
  card numbers passing the Luhn check, counted, with redacted examples.
See docs/data_quality.md.
"""

from __future__ import annotations

import collections
import json
import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
import tqdm

from lm import cli
from lm import config as config_lib
from lm import errors
from lm.data import contamination as contamination_lib
from lm.data import corpus as corpus_lib
from lm.data import duplicates
from lm.data import pii

config_flags.DEFINE_config_file('config', None, 'Config file (its corpus is '
                                'read as training reads it).',
                                lock_config=True)
flags.DEFINE_string('out', None, 'Folder for report.json, report.md and '
                    'lengths.png.')
flags.DEFINE_integer('ngram', 13, 'Word n-gram size of the contamination '
                     'check (GPT-3: 13).')
flags.DEFINE_float('near_threshold', 0.8, 'Jaccard similarity (of word '
                   'shingle sets) from which two documents are near '
                   'duplicates, in (0, 1].')
flags.DEFINE_integer('shingle', 5, 'Words per shingle for near duplicates.')
flags.DEFINE_integer('min_words', 4, 'Documents of fewer words (headings, '
                     'fragments) are left out of the duplicate counts.')
flags.DEFINE_integer('examples', 5, 'Examples shown of each finding.')
flags.mark_flags_as_required(['config', 'out'])
FLAGS = flags.FLAGS


class ReportError(errors.UserError):
  """A report option that cannot be honoured, as one line."""


def _snippet(text: str, width: int = 100) -> str:
  text = ' '.join(text.split())
  return text if len(text) <= width else text[:width - 1] + '…'


def fields(by_split: dict) -> dict[str, dict[str, list[str]]]:
  """Each split's texts by field: {'text'} or, of pairs, {'source',
  'target'} (a source repeated once per reference, consecutively, once)."""
  out = {}
  for split, texts in by_split.items():
    if texts and isinstance(texts[0], tuple):
      sources = [s for i, (s, _) in enumerate(texts)
                 if i == 0 or s != texts[i - 1][0]]
      out[split] = {'source': sources, 'target': [t for _, t in texts]}
    else:
      out[split] = {'text': list(texts)}
  return out


def _encode(tok, text: str):
  """The text's token ids, or None where the tokenizer cannot read it (a
  character tokenizer meeting a character it was not trained on)."""
  try:
    return tok.encode(text)
  except ValueError:
    return None


def _key(split: str, field: str) -> str:
  """The report's name of a split's field: 'validation' or, of pairs,
  'validation.source'."""
  return split if field == 'text' else f'{split}.{field}'


def split_stats(tok, texts, train_words=None
                ) -> tuple[dict, np.ndarray, set[str]]:
  """(figures, tokens per document, its words) of one split's field."""
  lengths, ids_all, unreadable = [], [], 0
  unk = tok.special_ids.get('unk')
  unknown_tokens = 0
  word_counts = collections.Counter()
  for t in texts:
    ids = _encode(tok, t)
    if ids is None:
      unreadable += 1
      lengths.append(0)
    else:
      lengths.append(len(ids))
      ids_all.append(ids)
      if unk is not None:
        unknown_tokens += int((ids == unk).sum())
    word_counts.update(duplicates.words(t))
  lengths = np.asarray(lengths, np.int64)
  tokens = int(lengths.sum())
  words = sum(word_counts.values())
  stats = {
      'documents': len(texts),
      'empty_documents': sum(not duplicates.normalize(t) for t in texts),
      'characters': sum(len(t) for t in texts),
      'tokens': tokens,
      'token_vocabulary': (len(np.unique(np.concatenate(ids_all)))
                           if ids_all else 0),
      'words': words,
      'word_vocabulary': len(word_counts),
      'tokens_per_document': {
          'mean': float(lengths.mean()) if len(lengths) else 0.0,
          'median': float(np.median(lengths)) if len(lengths) else 0.0,
          'max': int(lengths.max()) if len(lengths) else 0},
  }
  if unreadable:
    stats['documents_the_tokenizer_cannot_read'] = unreadable
  if unk is not None:
    stats['unknown_token_share'] = unknown_tokens / tokens if tokens else 0.0
  if train_words is not None:
    missing = sum(c for w, c in word_counts.items() if w not in train_words)
    stats['words_not_in_training'] = missing
    stats['words_not_in_training_share'] = missing / words if words else 0.0
  return stats, lengths, set(word_counts)


def _exact_within(texts, examples: int, min_words: int) -> dict:
  groups = duplicates.exact_groups(texts, min_words)
  groups.sort(key=lambda g: (-len(g), g[0]))
  return {
      'duplicate_documents': sum(len(g) - 1 for g in groups),
      'groups': len(groups),
      'examples': [{'copies': len(g), 'text': _snippet(texts[g[0]])}
                   for g in groups[:examples]],
  }


def _cross(train, keys, index, ngrams, texts, *, examples, min_words
           ) -> dict:
  """Exact and near duplicates of `texts` in `train` (`keys`, its
  `duplicates.text_keys`; `index`, its `duplicates.NearIndex`), and
  contamination (`ngrams`, its `contamination.NgramIndex`)."""
  exact = duplicates.exact_in(keys, texts, min_words)
  near = index.query(texts)
  near_docs = sorted({i for i, _, _ in near})
  # The closest training document of each, exact copies shown above.
  closest, shown = [], set(exact)
  for i, j, score in near:
    if i not in shown:
      shown.add(i)
      closest.append((i, j, score))
  found = ngrams.check(texts)
  summary = found.summary()
  summary['most_contaminated'] = [
      {'document': i, 'share': round(share, 4), 'text': _snippet(texts[i])}
      for i, share in found.worst(examples)]
  return {
      'exact_duplicates': {
          'documents': len(exact),
          'share': len(exact) / max(1, len(texts)),
          'examples': [_snippet(texts[i]) for i in exact[:examples]]},
      'near_duplicates': {
          'threshold': index.threshold, 'shingle_words': index.shingle,
          'documents': len(near_docs),
          'share': len(near_docs) / max(1, len(texts)),
          'closest_pairs': [
              {'jaccard': round(score, 4), 'document': i,
               'training_document': j, 'text': _snippet(texts[i]),
               'training_text': _snippet(train[j])}
              for i, j, score in closest[:examples]]},
      'contamination': {'ngram': ngrams.n, **summary},
  }


def build_report(config, *, ngram: int = 13, threshold: float = 0.8,
                 shingle: int = 5, min_words: int = 4, examples: int = 5,
                 log=print) -> tuple[dict, dict]:
  """(report, tokens per document of each split and field)."""
  if not 0 < threshold <= 1:
    raise ReportError(f'--near_threshold={threshold} is outside (0, 1]')
  if shingle < 1:
    raise ReportError(f'--shingle={shingle}: give at least 1 word')
  config_lib.validate(config)
  start = time.perf_counter()
  log(f'reading {config.data.name} as training reads it (tokenizer '
      f'{config.data.tokenizer})')
  corpus = corpus_lib.load_corpus(config.data, config.model.max_len)
  # The corpus's further splits are evaluation splits too (Multi30k's
  # test2017, mscoco2017, test2018).
  others = corpus_lib.other_splits(corpus.builder, corpus.splits)
  texts = dict(corpus.texts)
  texts.update((s, corpus_lib.read_split(corpus.builder, s, corpus.transform))
               for s in others)
  by_split = fields(texts)
  for split, by_field in by_split.items():
    if not any(by_field.values()):
      raise ReportError(f'the {split} split of {config.data.name} is empty')
  report = {'corpus': config.data.name, 'config': config.data.config,
            'splits': {**corpus.splits, **{s: s for s in others}},
            'tokenizer': corpus.tokenizer.kind,
            'options': {'ngram': ngram, 'near_threshold': threshold,
                        'shingle': shingle, 'min_words': min_words},
            'notes': [], 'stats': {}, 'exact_within': {}, 'cross': {},
            'personal_data': {}}
  lengths, train_words = {}, {}
  train = by_split.get('train', {})
  eval_splits = [s for s in by_split if s != 'train']
  held = corpus.splits.get('validation', '')
  if held.startswith(corpus.splits['train'].split('[')[0] + '['):
    report['notes'].append(
        f'the corpus has no validation split: it is {held}, held out of the '
        'training examples (data.val_fraction), as training does')
  if not eval_splits:
    report['notes'].append('the corpus has no evaluation split: the '
                           'cross-split parts are skipped')
  else:
    longest = max(len(duplicates.words(t)) for s in eval_splits
                  for texts in by_split[s].values() for t in texts)
    try:
      contamination_lib.check_ngram(ngram, longest)
    except ValueError as e:
      raise ReportError(f'--ngram: {e}') from None
  log('sizes, vocabulary and exact duplicates of each split')
  for split in sorted(by_split, key=lambda s: s != 'train'):  # Train first.
    for field, texts in by_split[split].items():
      key = _key(split, field)
      report['stats'][key], lengths[key], words = split_stats(
          corpus.tokenizer, texts,
          None if split == 'train' else train_words.get(field))
      if split == 'train':
        train_words[field] = words
      report['exact_within'][key] = _exact_within(texts, examples, min_words)
  total = sum(len(t) for t in train.values()) * bool(eval_splits) + sum(
      len(by_split[s][f]) for s in eval_splits for f in by_split[s])
  with tqdm.tqdm(total=total, desc='near duplicates and contamination',
                 unit='doc', leave=False, dynamic_ncols=True) as bar:
    for field in train if eval_splits else ():
      index = duplicates.NearIndex(train[field], threshold, shingle=shingle,
                                   min_words=min_words, progress=bar.update)
      ngrams = contamination_lib.NgramIndex(train[field], ngram)
      keys = duplicates.text_keys(train[field], min_words)
      for split in eval_splits:
        report['cross'][_key(split, field)] = _cross(
            train[field], keys, index, ngrams, by_split[split][field],
            examples=examples, min_words=min_words)
  log('personal data')
  for split, by_field in by_split.items():
    for field, texts in by_field.items():
      report['personal_data'][_key(split, field)] = pii.survey(texts,
                                                              examples)
  report['seconds'] = round(time.perf_counter() - start, 1)
  return report, lengths


def markdown(report: dict) -> str:
  """The report's headline tables."""
  out = [f'# Data report: {report["corpus"]}'
         + (f' ({report["config"]})' if report['config'] else ''), '',
         f'Tokenizer: {report["tokenizer"]}. Splits: ' + ', '.join(
             f'{k} = `{v}`' for k, v in report['splits'].items() if v) + '.',
         '']
  out += [f'Note: {n}.' for n in report['notes']]
  out += ['## Sizes', '',
          '| split | documents | empty | tokens | characters | words | '
          'token vocabulary | words not in training |',
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for key, s in report['stats'].items():
    oov = s.get('words_not_in_training_share')
    out.append(f'| {key} | {s["documents"]:,} | {s["empty_documents"]:,} | '
               f'{s["tokens"]:,} | {s["characters"]:,} | {s["words"]:,} | '
               f'{s["token_vocabulary"]:,} | '
               + ('—' if oov is None else f'{100 * oov:.2f}%') + ' |')
  out += ['', '## Exact duplicates within each split', '',
          f'Documents of at least {report["options"]["min_words"]} words.', '',
          '| split | duplicate documents | groups | most copied |',
          '| --- | ---: | ---: | --- |']
  for key, d in report['exact_within'].items():
    top = d['examples'][0] if d['examples'] else None
    out.append(f'| {key} | {d["duplicate_documents"]:,} | {d["groups"]:,} | '
               + (f'{top["copies"]}x "{_md(top["text"])}"' if top else '—')
               + ' |')
  if report['cross']:
    opts = report['options']
    out += ['', '## Evaluation splits against the training split', '',
            f'Duplicates: documents of at least {opts["min_words"]} words; '
            f'near: Jaccard at least {opts["near_threshold"]} of '
            f'{opts["shingle"]}-word shingles (exact copies included). '
            'Contamination: documents '
            f'sharing a {opts["ngram"]}-word n-gram with training.', '',
            '| split | exact duplicates | near duplicates | contaminated '
            'documents | contaminated words |',
            '| --- | ---: | ---: | ---: | ---: |']
    for key, c in report['cross'].items():
      e, n, k = (c['exact_duplicates'], c['near_duplicates'],
                 c['contamination'])
      out.append(
          f'| {key} | {e["documents"]:,} ({100 * e["share"]:.2f}%) | '
          f'{n["documents"]:,} ({100 * n["share"]:.2f}%) | '
          f'{k["documents_contaminated"]:,} of {k["documents_checked"]:,} '
          f'({100 * k["documents_contaminated_share"]:.2f}%) | '
          f'{100 * k["words_contaminated_share"]:.2f}% |')
    for key, c in report['cross'].items():
      worst = c['contamination']['most_contaminated']
      pairs = c['near_duplicates']['closest_pairs']
      if worst or pairs:
        out += ['', f'### {key}', '']
      for w in worst:
        out.append(f'- {100 * w["share"]:.0f}% of document {w["document"]} '
                   f'covered: "{_md(w["text"])}"')
      for p in pairs:
        out.append(f'- near duplicate (Jaccard {p["jaccard"]:.2f}): document '
                   f'{p["document"]} "{_md(p["text"])}" ~ training document '
                   f'{p["training_document"]}')
  out += ['', '## Personal data', '',
          '| split | ' + ' | '.join(pii.KINDS) + ' | documents | examples |',
          '| --- |' + ' ---: |' * (len(pii.KINDS) + 1) + ' --- |']
  for key, p in report['personal_data'].items():
    shown = '; '.join(f'{k}: {", ".join(v)}' for k, v in
                      p['examples'].items() if v)
    out.append(f'| {key} | ' + ' | '.join(
        f'{p["counts"][k]:,}' for k in pii.KINDS)
               + f' | {p["documents"]:,} | {_md(shown) or "—"} |')
  out += ['', f'Made in {report["seconds"]} s.', '']
  return '\n'.join(out)


def _md(text: str) -> str:
  return text.replace('|', '\\|')


def plot_lengths(lengths: dict, path: str) -> None:
  """Histograms of tokens per document, one per split and field."""
  # pylint: disable-next=g-import-not-at-top
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4))
  top = max((int(v.max()) for v in lengths.values() if len(v)), default=1)
  bins = np.unique(np.geomspace(1, max(top, 2) + 1, 40).astype(int))
  for key, v in lengths.items():
    ax.hist(np.maximum(v, 1), bins=bins, histtype='step', density=True,
            label=f'{key} ({len(v):,} docs)')
  ax.set_xscale('log')
  ax.set_xlabel('tokens per document')
  ax.set_ylabel('density')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  cli.start(argv)
  cli.exit_on_user_error(cli.check_output_dir, 'out', FLAGS.out)

  def run():
    report, lengths = build_report(
        FLAGS.config, ngram=FLAGS.ngram, threshold=FLAGS.near_threshold,
        shingle=FLAGS.shingle, min_words=FLAGS.min_words,
        examples=FLAGS.examples)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, 'report.json'), 'w') as f:
      json.dump(report, f, indent=2)
    with open(os.path.join(FLAGS.out, 'report.md'), 'w') as f:
      f.write(markdown(report))
    plot_lengths(lengths, os.path.join(FLAGS.out, 'lengths.png'))
    return report
  report = cli.exit_on_user_error(run)
  for n in report['notes']:
    print(f'note: {n}')
  for key, c in report['cross'].items():
    k = c['contamination']
    print(f'{key}: {c["exact_duplicates"]["documents"]} exact and '
          f'{c["near_duplicates"]["documents"]} near duplicates of training '
          f'documents; {k["documents_contaminated"]} of '
          f'{k["documents_checked"]} documents share a {k["ngram"]}-gram '
          f'with training ({100 * k["words_contaminated_share"]:.2f}% of '
          'words)')
  found = sum(sum(p['counts'].values())
              for p in report['personal_data'].values())
  print(f'personal data: {found} finding(s). Report in {report["seconds"]} s: '
        f'{os.path.join(FLAGS.out, "report.md")}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
