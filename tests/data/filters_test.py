"""Training-split filters: decontamination, exact and near deduplication and
personal-data scrubbing against brute force; evaluation splits untouched;
a training run records and logs what they did, and resumes."""

import json
import random

import ml_collections
import numpy as np
import pytest

from conftest import load_config, run_cli
from lm import config as config_lib
from lm.data import corpus as corpus_lib
from lm.data import duplicates
from lm.data import filters

WORDS = [f'w{i}' for i in range(500)]


def _line(rng, n=20):
  return ' '.join(rng.choice(WORDS) for _ in range(n))


def _data(**overrides):
  d = ml_collections.ConfigDict(dict(
      dedup='none', dedup_threshold=0.8, decontaminate=False,
      decontaminate_ngram=13, scrub_pii=False))
  d.update(overrides)
  return d


@pytest.fixture(name='planted')
def _planted():
  rng = random.Random(0)
  train = [_line(rng) for _ in range(200)]
  valid = [_line(rng) for _ in range(30)]
  test = [_line(rng) for _ in range(30)]
  train[5] = train[4].upper()  # Exact duplicate of document 4.
  w = train[6].split()
  w[0] = 'changed'
  train[7] = ' '.join(w)  # Near duplicate of 6 (Jaccard 15/17).
  train[8] = 'Career'  # Short: kept whatever its copies.
  train[9] = 'Career'
  train[10] = 'leak ' + ' '.join(valid[3].split()[:13])  # A 13-gram leak.
  train[11] = ' '.join(test[0].split()[2:16]) + ' more'  # From test.
  train[12] = 'mail ada@example.org or call 555-867-5309'
  texts = {'train': train, 'validation': valid, 'test': test}
  labels = {s: np.arange(len(t)) for s, t in texts.items()}
  return texts, labels


def test_off_by_default():
  d = config_lib.default().data
  assert not filters.active(d)


def test_decontaminate_drops_leaks_only(planted):
  texts, labels = planted
  out, lab, changed = filters.apply(_data(decontaminate=True), texts, labels)
  grams = set()
  for s in ('validation', 'test'):
    for t in texts[s]:
      w = duplicates.words(t)
      grams |= {tuple(w[i:i + 13]) for i in range(len(w) - 12)}
  dirty = [i for i, t in enumerate(texts['train'])
           if any(tuple(duplicates.words(t)[i:i + 13]) in grams
                  for i in range(len(duplicates.words(t)) - 12))]
  assert dirty == [10, 11]
  assert changed['decontaminate']['dropped'] == 2
  assert out['train'] == [t for i, t in enumerate(texts['train'])
                          if i not in dirty]
  assert lab['train'].tolist() == [i for i in range(200) if i not in dirty]
  for s in ('validation', 'test'):  # Evaluation text stays as published.
    assert out[s] is texts[s] and lab[s] is labels[s]


@pytest.mark.parametrize('mode,dropped', [('exact', [5]), ('near', [5, 7])])
def test_dedup_keeps_the_first_of_each_group(planted, mode, dropped):
  texts, labels = planted
  out, lab, changed = filters.apply(_data(dedup=mode), texts, labels)
  assert changed['dedup']['dropped'] == len(dropped)
  assert lab['train'].tolist() == [i for i in range(200) if i not in dropped]
  assert 'Career' in out['train'] and out['train'].count('Career') == 2


def test_scrub_and_all_together(planted):
  texts, labels = planted
  out, lab, changed = filters.apply(
      _data(decontaminate=True, dedup='near', scrub_pii=True), texts, labels)
  assert lab['train'].tolist() == [i for i in range(200)
                                   if i not in (5, 7, 10, 11)]
  assert 'mail <EMAIL> or call <PHONE>' in out['train']
  assert changed['scrub_pii'] == {'documents': 1, 'replaced': {
      'email': 1, 'card': 0, 'ip': 0, 'phone': 1}}
  lines = filters.describe(changed)
  assert lines == [
      'data.decontaminate: dropped 2 of 200 training documents sharing a '
      '13-gram with validation, test',
      'data.dedup=near: dropped 2 of 198 training documents as duplicates',
      'data.scrub_pii: replaced 1 email, 1 phone in 1 training documents']


def test_pairs_are_one_document():
  rng = random.Random(3)
  src = [_line(rng) for _ in range(20)]
  tgt = [_line(rng) for _ in range(20)]
  train = list(zip(src, tgt))
  train.append((src[0], tgt[0]))  # The same pair again: a duplicate.
  train.append((src[1], 'another target'))  # Same source only: kept.
  valid = [(_line(rng), ' '.join(tgt[2].split()[:13]) + ' x')]
  texts = {'train': train, 'validation': valid}
  out, _, changed = filters.apply(
      _data(dedup='exact', decontaminate=True), texts, {})
  assert changed['decontaminate']['dropped'] == 1  # Pair 2: its target.
  assert changed['dedup']['dropped'] == 1
  assert out['train'] == [p for i, p in enumerate(train) if i not in (2, 20)]


@pytest.mark.parametrize('key,value,message', [
    ('dedup', 'fuzzy', 'choose from none, exact, near'),
    ('dedup_threshold', 0.0, r'outside \(0, 1\]'),
    ('decontaminate_ngram', 0, 'at least 1 word'),
])
def test_bad_filter_settings(key, value, message):
  c = load_config('wikitext2_word', 'test')
  c.data[key] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)


def test_a_run_logs_and_records_the_filters_and_resumes(tmp_path):
  rng = random.Random(4)
  folder = tmp_path / 'corpus'
  folder.mkdir()
  train = [_line(rng) for _ in range(300)]
  train += train[:10]  # 10 duplicates.
  valid = [_line(rng) for _ in range(40)]
  train.append(' '.join(valid[0].split()[:15]))  # A leak.
  (folder / 'train.txt').write_text('\n'.join(train) + '\n')
  (folder / 'valid.txt').write_text('\n'.join(valid) + '\n')
  args = ['lm.main', '--config=configs/wikitext2_word.py:test',
          '--config.data.name=text_files', f'--config.data.path={folder}',
          '--config.data.test_split=', '--config.data.dedup=exact',
          '--config.data.decontaminate=true',
          f'--workdir={tmp_path / "run"}']
  first = run_cli(*args, '--config.train.num_steps=2')
  assert first.returncode == 0, first.stderr
  assert ('data.decontaminate: dropped 1 of 311 training documents sharing '
          'a 13-gram with validation') in first.stdout
  assert 'data.dedup=exact: dropped 10 of 310' in first.stdout
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert json.loads(saved['data']['filtered'])['dedup']['dropped'] == 10
  again = run_cli(*args)  # Resumes: the same filtered split, no complaint.
  assert again.returncode == 0, again.stderr
  assert 'resuming from step 2' in again.stdout


def test_decontaminate_checks_the_corpus_other_splits_too(planted):
  texts, labels = planted
  rng = random.Random(5)
  extra = [_line(rng) for _ in range(5)]
  texts = dict(texts, train=texts['train'] + [' '.join(extra[1].split()[:14])])
  _, lab, changed = filters.apply(_data(decontaminate=True), texts, labels | {
      'train': np.arange(201)}, {'test2017': extra})
  assert changed['decontaminate']['against'] == ['validation', 'test',
                                                  'test2017']
  assert 200 not in lab['train'] and changed['decontaminate']['dropped'] == 3


def test_other_splits():
  class Info:
    splits = {'train': 0, 'validation': 0, 'test': 0, 'test2017': 0,
              'mscoco2017': 0}

  class Builder:
    info = Info()
  names = {'train': 'train[:90%]+validation[:5]', 'validation': 'test',
           'test': ''}
  assert corpus_lib.other_splits(Builder(), names) == ['test2017',
                                                       'mscoco2017']


def test_a_filtered_corpus_reads_the_same_every_time(tmp_path):
  # What makes resume exact: the filters are a function of text and config.
  rng = random.Random(6)
  folder = tmp_path / 'corpus'
  folder.mkdir()
  train = [_line(rng) for _ in range(200)]
  train += [t.upper() for t in train[:20]]
  w = train[30].split()
  train.append(' '.join(['x'] + w[1:]))  # A near duplicate.
  (folder / 'train.txt').write_text('\n'.join(train) + '\n')
  (folder / 'valid.txt').write_text(
      '\n'.join([train[5]] + [_line(rng) for _ in range(30)]) + '\n')
  c = load_config('wikitext2_word', 'test')
  c.data.update(name='text_files', path=str(folder), test_split='',
                dedup='near', decontaminate=True, scrub_pii=True,
                tfds_dir=str(tmp_path / 'tfds'))
  first = corpus_lib.load_corpus(c.data, c.model.max_len)
  second = corpus_lib.load_corpus(c.data, c.model.max_len)
  assert first.filtered == second.filtered
  # Line 5 and its uppercase copy hold validation's first line; of the 19
  # other copies and the near duplicate, dedup drops all 20.
  assert first.filtered['decontaminate']['dropped'] == 2
  assert first.filtered['dedup']['dropped'] == 20
  np.testing.assert_array_equal(first.train, second.train)
  assert first.tokenizer.words == second.tokenizer.words
