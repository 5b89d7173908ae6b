"""lm.data_report end to end on a corpus with planted duplicates, leaks and
personal data, every figure checked against brute force; bad input."""

import json
import random
import re

import pytest

from conftest import run_cli
from lm.data import duplicates

WORDS = [f'w{i}' for i in range(500)]


def _line(rng, n=20):
  return ' '.join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
  """A text_files corpus (one document a line) and what was planted."""
  rng = random.Random(0)
  folder = tmp_path_factory.mktemp('corpus')
  train = [_line(rng) for _ in range(400)]
  train += [train[3], train[3], train[7].upper()]  # 3 exact copies within.
  valid = [_line(rng) for _ in range(80)]
  valid[0] = train[10]  # Exact copy of a training document.
  valid[1] = '  ' + train[11].upper() + ' '  # The same once normalised.
  w = train[12].split()
  w[-1] = 'changed'
  valid[2] = ' '.join(w)  # Near duplicate: one word of 20 changed.
  valid[3] = 'fresh words ' + ' '.join(train[20].split()[:14]) + ' end'
  valid[4] = 'write to ada.lovelace@example.org or call +1 (555) 123-4567'
  test = [_line(rng) for _ in range(60)]
  test[5] = 'card 4111 1111 1111 1111 from 192.168.0.1 ' + _line(rng, 5)
  for name, lines in (('train', train), ('valid', valid), ('test', test)):
    (folder / f'{name}.txt').write_text('\n'.join(lines) + '\n')
  return folder, {'train': train, 'validation': valid, 'test': test}


def _report(folder, out, *flags):
  return run_cli('lm.data_report', '--config=configs/wikitext2_word.py:test',
                 '--config.data.name=text_files',
                 f'--config.data.path={folder}', f'--out={out}', *flags)


def _one_line_error(result, message):
  """Exit status 2, no traceback, the last line the error."""
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and re.search(message, last), last


def _ngrams(text, n):
  w = duplicates.words(text)
  return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_report_figures_match_brute_force(planted, tmp_path):
  folder, splits = planted
  result = _report(folder, tmp_path / 'out', '--ngram=13')
  assert result.returncode == 0, result.stderr
  report = json.loads((tmp_path / 'out' / 'report.json').read_text())
  assert (tmp_path / 'out' / 'report.md').read_text().startswith(
      '# Data report')
  assert (tmp_path / 'out' / 'lengths.png').stat().st_size > 0
  train = splits['train']
  norm = lambda t: ' '.join(t.lower().split())  # pylint: disable=unnecessary-lambda-assignment
  for split, texts in splits.items():
    stats = report['stats'][split]
    assert stats['documents'] == len(texts)
    assert stats['words'] == sum(len(re.findall(r'\w+', t)) for t in texts)
    keys = [norm(t) for t in texts]
    assert report['exact_within'][split]['duplicate_documents'] == (
        len(keys) - len(set(keys)))
  assert report['exact_within']['train']['duplicate_documents'] == 3
  train_keys = {norm(t) for t in train}
  train_grams = set().union(*(_ngrams(t, 13) for t in train))
  for split in ('validation', 'test'):
    texts = splits[split]
    cross = report['cross'][split]
    assert cross['exact_duplicates']['documents'] == sum(
        norm(t) in train_keys for t in texts)
    dirty = [bool(_ngrams(t, 13) & train_grams) for t in texts]
    assert cross['contamination']['documents_contaminated'] == sum(dirty)
  assert report['cross']['validation']['exact_duplicates']['documents'] == 2
  # Exact copies, the near copy and the 14-word leak share 13-grams.
  assert report['cross']['validation']['contamination'][
      'documents_contaminated'] == 4
  near = report['cross']['validation']['near_duplicates']
  assert near['documents'] == 3  # Two exact copies and the edited one.
  assert near['closest_pairs'][0]['document'] == 2
  assert report['personal_data']['validation']['counts'] == {
      'email': 1, 'card': 0, 'ip': 0, 'phone': 1}
  assert report['personal_data']['test']['counts'] == {
      'email': 0, 'card': 1, 'ip': 1, 'phone': 0}
  assert sum(report['personal_data']['train']['counts'].values()) == 0
  assert 'ada.lovelace' not in (tmp_path / 'out' / 'report.md').read_text()
  checked = sum(len(duplicates.words(t)) >= 13 for t in splits['validation'])
  assert f'4 of {checked} documents share a 13-gram' in result.stdout


@pytest.mark.parametrize('flag,message', [
    ('--near_threshold=0', r'--near_threshold=0.0 is outside \(0, 1\]'),
    ('--near_threshold=1.5', r'outside \(0, 1\]'),
    ('--ngram=0', 'give a size of at least 1'),
    ('--ngram=500', 'longer than every document'),
])
def test_bad_options_are_one_line(planted, tmp_path, flag, message):
  result = _report(planted[0], tmp_path / 'out', flag)
  _one_line_error(result, message)


def test_bad_corpora_are_one_line(tmp_path):
  folder = tmp_path / 'corpus'
  folder.mkdir()
  (folder / 'train.txt').write_bytes(b'caf\xe9 au lait\n' * 50)
  _one_line_error(_report(folder, tmp_path / 'out'), 'not valid UTF-8')
  (folder / 'train.txt').write_text('some words here\n' * 50)
  (folder / 'valid.txt').write_text('\n')
  _one_line_error(_report(folder, tmp_path / 'out'), 'no text')


def test_a_corpus_without_a_validation_split_says_so(tmp_path):
  rng = random.Random(2)
  folder = tmp_path / 'corpus'
  folder.mkdir()
  (folder / 'train.txt').write_text(
      '\n'.join(_line(rng) for _ in range(300)) + '\n')
  result = _report(folder, tmp_path / 'out')
  assert result.returncode == 0, result.stderr
  assert 'note: the corpus has no validation split' in result.stdout
