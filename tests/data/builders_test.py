"""Tests of lm.data.builders: TFDS builders prepared to ArrayRecord without TF."""

import json
import shutil
import subprocess
import sys

from conftest import REPO
from conftest import SHARED_DATA
import pytest

from lm.data import builders
from lm.data import corpus as corpus_lib
from lm.data import prepare as prepare_lib

WIKITEXT = SHARED_DATA / 'wikitext-2'
needs_wikitext = pytest.mark.skipif(not WIKITEXT.is_dir(),
                                    reason='../shared/data/wikitext-2 absent')


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def texts(builder, split):
  return corpus_lib.read_texts(prepare_lib.source(builder, split))


@needs_wikitext
def test_wikitext2_matches_published_counts_and_bytes(tfds_dir):
  b = prepare_lib.prepare('wikitext2',
                          config='tokens',
                          path=str(WIKITEXT),
                          data_dir=tfds_dir)
  counts = {s: b.info.splits[s].num_examples for s in b.info.splits}
  assert counts == {'train': 36718, 'validation': 3760, 'test': 4358}
  assert b.info.file_format.value == 'array_record'
  valid = texts(b, 'validation')
  assert ''.join(valid) == (WIKITEXT / 'wiki.valid.tokens').read_text()
  train_tokens = sum(len(t.split()) + 1 for t in texts(b, 'train'))
  assert train_tokens == 2088628  # Words plus one <eos> per line.
  # Prepared once: a second call reuses the ArrayRecords.
  again = prepare_lib.prepare('wikitext2',
                              config='tokens',
                              path=str(WIKITEXT),
                              data_dir=tfds_dir)
  assert again.data_dir == b.data_dir


def test_raw_config_prepares_the_splits_it_finds(tfds_dir):
  raw = SHARED_DATA / 'wikitext-2-raw'
  if not raw.is_dir():
    pytest.skip('../shared/data/wikitext-2-raw absent')
  b = prepare_lib.prepare('wikitext2',
                          config='raw',
                          path=str(raw),
                          data_dir=tfds_dir)
  assert set(b.info.splits) == {'validation', 'test'}
  with pytest.raises(builders.DataError, match="no split 'train'; it has"):
    prepare_lib.source(b, 'train')


def test_tiny_shakespeare_embedded_is_nanogpts_split(tfds_dir):
  b = prepare_lib.prepare('tiny_shakespeare', data_dir=tfds_dir)
  text = builders.EMBEDDED_SHAKESPEARE.read_text()
  train, val = texts(b, 'train'), texts(b, 'validation')
  assert len(train) == len(val) == 1
  assert train[0] == text[:int(len(text) * 0.9)] and train[0] + val[0] == text


def test_text_files_lines_and_jsonl_read_back(tmp_path, tfds_dir):
  corpus = tmp_path / 'mine'
  corpus.mkdir()
  (corpus / 'train.txt').write_text('first line\nsecond é line\n\nlast')
  rows = [{'text': 'a doc\nwith two lines'}, {'text': 'another'}]
  (corpus / 'valid.jsonl').write_text(
      '\n'.join(json.dumps(r) for r in rows) + '\n')
  b = prepare_lib.prepare('text_files', path=str(corpus), data_dir=tfds_dir)
  assert texts(b, 'train') == ['first line\n', 'second é line\n', '\n', 'last']
  assert texts(b, 'validation') == [r['text'] for r in rows]
  # New contents are a new dataset, not the stale prepared one.
  (corpus / 'train.txt').write_text('changed\n')
  b2 = prepare_lib.prepare('text_files', path=str(corpus), data_dir=tfds_dir)
  assert b2.builder_config.name != b.builder_config.name
  assert texts(b2, 'train') == ['changed\n']


@needs_wikitext
def test_altered_file_is_refused_with_counts(tmp_path):
  folder = tmp_path / 'wt2'
  folder.mkdir()
  for name in ('wiki.valid.tokens', 'wiki.test.tokens'):
    shutil.copy(WIKITEXT / name, folder / name)
  lines = (folder / 'wiki.valid.tokens').read_text().splitlines(True)
  (folder / 'wiki.valid.tokens').write_text(''.join(lines[:-1]))
  with pytest.raises(builders.DataError, match=r'3,759 lines \(expected '
                     r'3,760\).*copy it again'):
    prepare_lib.prepare('wikitext2',
                        path=str(folder),
                        data_dir=str(tmp_path / 'tfds'))


def test_bad_inputs_are_one_line_errors(tmp_path, tfds_dir):
  fresh = str(tmp_path / 'tfds')  # Nothing prepared there yet.
  with pytest.raises(builders.DataError, match='is not a directory'):
    prepare_lib.prepare('wikitext2',
                        path=str(tmp_path / 'nope'),
                        data_dir=fresh)
  with pytest.raises(builders.DataError, match='holds no wiki.valid.tokens'):
    prepare_lib.prepare('wikitext2', path=str(tmp_path), data_dir=fresh)
  with pytest.raises(builders.DataError, match="no config 'big'"):
    prepare_lib.prepare('wikitext2', config='big', data_dir=tfds_dir)
  with pytest.raises(builders.DataError, match='does not exist'):
    prepare_lib.prepare('text_files',
                        path=str(tmp_path / 'x.txt'),
                        data_dir=tfds_dir)
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'train.txt').write_bytes(b'ok\nbroken \xff here\n')
  with pytest.raises(builders.DataError,
                     match=r'not valid UTF-8 \(byte 10, line 2\)'):
    prepare_lib.prepare('text_files', path=str(bad), data_dir=tfds_dir)
  (bad / 'train.txt').write_text('fine\n')
  (bad / 'dev.jsonl').write_text('{"body": "no text field"}\n')
  with pytest.raises(builders.DataError, match="dev.jsonl:1 is not a JSON "
                     "object with a string 'text' field"):
    prepare_lib.prepare('text_files', path=str(bad), data_dir=tfds_dir)


def test_processes_preparing_at_once_do_not_race(tmp_path):
  # Several processes (a multi-process run's, or parallel study cells) share
  # one data directory: one prepares, the others wait and reuse it.
  code = ('import sys; from lm.data import prepare; '
          'b = prepare.prepare("tiny_shakespeare", data_dir=sys.argv[1]); '
          'print(b.info.splits["train"].num_examples)')
  procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(3)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outs]
  assert len({o.split()[-1] for o, _ in outs}) == 1


SST2 = SHARED_DATA / 'sst2'


def test_sst2_matches_published_counts_and_balance(tfds_dir):
  b = prepare_lib.prepare('sst2', path=str(SST2), data_dir=tfds_dir)
  counts = {s: b.info.splits[s].num_examples for s in b.info.splits}
  assert counts == {'train': 67349, 'validation': 872, 'test': 1821}
  for split, balance in (('train', [29780, 37569]), ('validation', [428, 444])):
    source = prepare_lib.source(b, split)  # Read in one call: fast.
    labels = [int(r['label']) for r in
              source.__getitems__(list(range(len(source))))]
    assert [labels.count(0), labels.count(1)] == balance
  test = prepare_lib.source(b, 'test')
  assert int(test[0]['label']) == -1
  assert test[0]['text'].decode() == 'uneasy mishmash of styles and genres .'
  dev = prepare_lib.source(b, 'validation')
  first = (SST2 / 'dev.tsv').read_text().splitlines()[1].split('\t')
  assert dev[0]['text'].decode() == first[0].strip()
  assert int(dev[0]['label']) == int(first[1])


def test_sst2_tsv_quoted_and_odd_lines():
  text = ('sentence\tlabel\r\n'
          'a plain one \t1\r\n'
          '\n'  # Blank lines are skipped.
          '"quoted, with ""inner"" quotes"\t0\n'
          '"a tab\tinside quotes is two fields"\t1\n')
  rows = builders.parse_tsv(text.rsplit('"a tab', 1)[0], 'x.tsv', True)
  assert list(rows) == [(2, 'a plain one', 1),
                        (4, 'quoted, with "inner" quotes', 0)]
  with pytest.raises(builders.DataError, match=r'x.tsv:5: 3 tab-separated'):
    list(builders.parse_tsv(text, 'x.tsv', True))
  test = list(builders.parse_tsv('index\tsentence\n0\tno label .\n',
                                 'test.tsv', False))
  assert test == [(2, 'no label .', -1)]


@pytest.mark.parametrize('text,message', [
    ('sentence\tlabel\ngood film\t2\n', r"x.tsv:2: label '2' is not 0 or 1"),
    ('sentence\tlabel\ngood film\tpositive\n', r"label 'positive' is not 0"),
    ('sentence\tlabel\n   \t1\n', r'x.tsv:2: empty sentence'),
    ('sentence\tlabel\nno label here\n', r'x.tsv:2: 1 tab-separated fields'),
    ('index\tsentence\n0\tx\n', r"x.tsv:1: header 'index\\tsentence' is not"),
])
def test_sst2_bad_rows_name_file_and_line(text, message):
  with pytest.raises(builders.DataError, match=message):
    list(builders.parse_tsv(text, 'x.tsv', True))


@pytest.mark.parametrize('make', [
    lambda p: p.mkdir(),  # A folder named like a text file.
    lambda p: p.symlink_to(p.parent / 'gone.txt'),  # A broken link.
    lambda p: p.symlink_to(p),  # A link to itself: a loop.
], ids=['folder', 'broken_link', 'link_loop'])
def test_text_files_that_cannot_be_read_are_named(tmp_path, tfds_dir, make):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  (corpus / 'train.txt').write_text('fine\n')
  make(corpus / 'notes.txt')
  with pytest.raises(builders.DataError,
                     match=r'notes.txt is not a file that can be read \(a '
                     r'folder, a broken link or a link loop\); move it out'):
    prepare_lib.prepare('text_files', path=str(corpus), data_dir=tfds_dir)


def test_a_link_loop_given_as_the_file_is_one_line(tmp_path):
  loop = tmp_path / 'loop.txt'
  loop.symlink_to(loop)
  with pytest.raises(builders.DataError, match='cannot read data file .*loop'):
    builders.read_text(loop)
