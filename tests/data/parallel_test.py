"""Tests of lm.data.parallel: Multi30k prepared with its published counts,
line-aligned files checked, damaged files named."""

import gzip

from conftest import SHARED_DATA
import pytest

from lm.data import parallel
from lm.data import prepare

MULTI30K = SHARED_DATA / 'multi30k'
needs_multi30k = pytest.mark.skipif(not MULTI30K.exists(),
                                    reason='no ../shared/data/multi30k')


@needs_multi30k
def test_multi30k_prepares_every_split_with_its_published_count(tmp_path):
  builder = prepare.prepare('multi30k', config='en-de', path=str(MULTI30K),
                            data_dir=str(tmp_path))
  counts = {s: i.num_examples for s, i in builder.info.splits.items()}
  assert counts == {'train': 29000, 'validation': 1014, 'test': 1000,
                    'test2017': 1000, 'mscoco2017': 461, 'test2018': 1071}
  first = prepare.source(builder, 'test')[0]
  assert first['source'].decode() == (
      'A man in an orange hat starring at something.')
  assert first['target'].decode() == (
      'Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.')
  # The other direction swaps the sides.
  back = prepare.prepare('multi30k', config='de-en', path=str(MULTI30K),
                         data_dir=str(tmp_path))
  assert prepare.source(back, 'test')[0]['source'] == first['target']


def test_files_of_different_lengths_are_one_line_naming_both(tmp_path):
  source, target = tmp_path / 'a.en', tmp_path / 'a.de.gz'
  source.write_text('one\ntwo\nthree\n')
  target.write_bytes(gzip.compress('eins\nzwei\n'.encode()))
  with pytest.raises(parallel.DataError) as e:
    parallel.aligned(source, target)
  assert str(e.value) == (f'{source} has 3 lines but {target} has 2; line i '
                          'of each must be a translation pair')
  target.write_bytes(gzip.compress('eins\nzwei\ndrei\n'.encode()))
  assert parallel.aligned(source, target)[2] == ('three', 'drei')


def test_a_damaged_or_missing_file_is_named(tmp_path):
  damaged = tmp_path / 'train.en.gz'
  damaged.write_bytes(gzip.compress(b'not the published text\n'))
  with pytest.raises(parallel.DataError, match='train.en.gz is not the '
                     'published file'):
    parallel.read_lines(damaged, parallel.MULTI30K_FILES)
  with pytest.raises(parallel.DataError, match='data file not found'):
    parallel.read_lines(tmp_path / 'nope.en')
  (tmp_path / 'x.gz').write_bytes(b'plain text')
  with pytest.raises(parallel.DataError, match='not a readable gzip file'):
    parallel.read_lines(tmp_path / 'x.gz')
  folder = tmp_path / 'multi30k'
  folder.mkdir()
  with pytest.raises(parallel.DataError, match='lacks train.en.gz'):
    prepare.prepare('multi30k', path=str(folder), data_dir=str(tmp_path))


def write_pairs(folder, split, pairs, gz=False):
  for lang, side in (('en', 0), ('de', 1)):
    text = ''.join(p[side] + '\n' for p in pairs)
    path = folder / f'{split}.{lang}{".gz" if gz else ""}'
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())


def test_a_folder_of_aligned_files_or_jsonl_prepares_by_split_name(tmp_path):
  folder = tmp_path / 'mine'
  folder.mkdir()
  write_pairs(folder, 'train', [('a dog', 'ein Hund'), ('', 'leer')])
  write_pairs(folder, 'valid', [('a cat', 'eine Katze')], gz=True)
  (folder / 'test.jsonl').write_text(
      '{"source": "a bird", "target": "ein Vogel"}\n\n'
      '{"source": "two", "target": "zwei"}\n')
  builder = prepare.prepare('parallel_text', config='en-de', path=str(folder),
                            data_dir=str(tmp_path / 'tfds'))
  counts = {s: i.num_examples for s, i in builder.info.splits.items()}
  assert counts == {'train': 2, 'validation': 1, 'test': 2}
  assert prepare.source(builder, 'validation')[0]['target'] == (
      'eine Katze'.encode())
  # Pairs are kept as they are; the task skips and counts the empty one.
  assert prepare.source(builder, 'train')[1]['source'] == b''


@pytest.mark.parametrize('files,message', [
    ({'train.en': 'a\nb\n', 'train.de': 'x\n'}, 'has 2 lines but'),
    ({'train.en': 'a\n'}, 'has no target file train.de beside it'),
    ({'valid.en': 'a\n', 'valid.de': 'x\n'}, 'holds no training pairs'),
    ({'train.jsonl': '{"source": "a"}\n'},
     'train.jsonl:1 is not a JSON object with string "source" and "target"'),
])
def test_bad_parallel_folders_are_one_line(tmp_path, files, message):
  folder = tmp_path / 'bad'
  folder.mkdir()
  for name, text in files.items():
    (folder / name).write_text(text)
  with pytest.raises(parallel.DataError, match=message):
    prepare.prepare('parallel_text', config='en-de', path=str(folder),
                    data_dir=str(tmp_path / 'tfds'))


def test_languages_must_be_named_as_src_tgt():
  assert parallel.languages('en-de') == ('en', 'de')
  with pytest.raises(parallel.DataError, match="must name the languages as "
                     "'SRC-TGT'"):
    parallel.languages('english')
