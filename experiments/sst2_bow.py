"""The bag-of-words baseline for SST-2: logistic regression (scikit-learn).

Reads SST-2 through the project's TFDS builder (the same sentences and
labels the encoder sees), counts lowercased words (unigrams, and unigrams
plus bigrams), weights them by TF-IDF and fits a logistic regression whose
regularisation C is chosen as the classifiers' best step is: on 5% of the
training sentences held out of training, by whole sentences
(`lm.data.selection`, seed 0; `--selection=heldout`, the default), or by
5-fold cross-validation on the training split (`--selection=cv`, whose
folds split sentences from their own phrases). The dev split is scored
once. Writes accuracy, F1 and the confusion matrix of each feature set.

  python experiments/sst2_bow.py --out=experiments/results/sst2_bow.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys
import time
import warnings

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'experiments'))
# pylint: disable=g-import-not-at-top,wrong-import-position
import machine
from lm.data import builders
from lm.data import prepare as prepare_lib
from lm.data import corpus as corpus_lib
from lm.data import selection as selection_lib
from lm.eval import metrics as metrics_lib

DEFAULT_DATA = REPO.parent / 'shared' / 'data' / 'sst2'


def load(path: str, tfds_dir: str, max_train: int):
  """(train texts, train labels, dev texts, dev labels)."""
  builder = prepare_lib.prepare('sst2', path=path, data_dir=tfds_dir)
  out = []
  for split in ('train', 'validation'):
    source = prepare_lib.source(builder, split)
    texts, labels = corpus_lib.read_texts(source), corpus_lib.read_labels(
        source)
    if split == 'train' and max_train:
      texts, labels = texts[:max_train], labels[:max_train]
    out += [texts, labels]
  return out


CS = (1.0, 4.0, 16.0, 64.0)


def fit(train_x, train_y, dev_x, dev_y, ngrams: int, folds: int,
        selection: str = 'heldout') -> dict:
  """A TF-IDF logistic regression, C chosen on the held-out training
  sentences (or by cross-validation); its dev metrics."""
  from sklearn.feature_extraction.text import TfidfVectorizer
  from sklearn.linear_model import LogisticRegression
  from sklearn.linear_model import LogisticRegressionCV
  start = time.perf_counter()
  vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(1, ngrams),
                               token_pattern=r'\S+', sublinear_tf=True)
  extra = {}
  with warnings.catch_warnings():  # scikit-learn's notice of API changes.
    warnings.simplefilter('ignore', FutureWarning)
    if selection == 'cv':
      features = vectorizer.fit_transform(train_x)
      model = LogisticRegressionCV(Cs=list(CS), cv=folds, max_iter=2000,
                                   n_jobs=1).fit(features, train_y)
      chosen = float(model.C_[0])
    else:
      held = selection_lib.held_out(train_x, 0.05, seed=0)
      fit_x = [t for t, h in zip(train_x, held) if not h]
      pick_x = [t for t, h in zip(train_x, held) if h]
      features = vectorizer.fit_transform(fit_x)
      pick = vectorizer.transform(pick_x)
      scores = {}
      for c in CS:
        m = LogisticRegression(C=c, max_iter=2000).fit(features,
                                                       train_y[~held])
        scores[c] = float((m.predict(pick) == train_y[held]).mean())
      chosen = max(CS, key=lambda c: (scores[c], -c))
      model = LogisticRegression(C=chosen, max_iter=2000).fit(
          features, train_y[~held])
      extra = {'selection_sentences': int(held.sum()),
               'selection_accuracy': scores}
  predictions = model.predict(vectorizer.transform(dev_x))
  return {**metrics_lib.classification(dev_y, predictions, 2),
          'C': chosen, 'selection': selection, **extra,
          'features': features.shape[1],
          'seconds': round(time.perf_counter() - start, 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=str(DEFAULT_DATA),
                      help='the GLUE SST-2 folder (train.tsv, dev.tsv)')
  parser.add_argument('--tfds_dir', default='',
                      help='where the prepared ArrayRecords go')
  parser.add_argument('--max_train', type=int, default=0,
                      help='use only the first N training sentences (tests)')
  parser.add_argument('--selection', choices=('heldout', 'cv'),
                      default='heldout', help='how C is chosen (see above)')
  parser.add_argument('--folds', type=int, default=5,
                      help='--selection=cv: the folds')
  parser.add_argument('--out', default='', help='results JSON file')
  args = parser.parse_args()
  if not os.path.isdir(args.data):
    parser.error(f'--data={args.data}: no such folder; point it at the GLUE '
                 'SST-2 folder')
  try:
    train_x, train_y, dev_x, dev_y = load(args.data, args.tfds_dir,
                                          args.max_train)
  except builders.DataError as e:
    parser.error(str(e))
  results = {'date': datetime.date.today().isoformat(),
             'cpu': machine.cpu_model(), 'cores': os.cpu_count(),
             'train_sentences': len(train_x), 'dev_sentences': len(dev_x)}
  for name, ngrams in (('unigrams', 1), ('unigrams+bigrams', 2)):
    how = (f'{args.folds}-fold C search' if args.selection == 'cv' else
           'C chosen on 5% held out')
    print(f'fitting {name} ({len(train_x):,} sentences, {how})...',
          flush=True)
    r = fit(train_x, train_y, dev_x, dev_y, ngrams, args.folds,
            args.selection)
    results[name] = r
    print(f'{name}: dev accuracy {r["accuracy"]:.4f}, F1 {r["f1"]:.4f} '
          f'(C={r["C"]}, {r["features"]:,} features, {r["seconds"]} s)',
          flush=True)
  if args.out:
    machine.write_results(results, args.out)


if __name__ == '__main__':
  main()
