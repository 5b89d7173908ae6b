"""Tests of lm.data.summaries: SciTLDR-A prepared with its published
counts (every reference an example, ids grouping them, no title), damaged
files named."""

import json

from conftest import SHARED_DATA
import pytest

from lm.data import corpus as corpus_lib
from lm.data import prepare
from lm.data import summaries

SCITLDR = SHARED_DATA / 'scitldr'
needs_scitldr = pytest.mark.skipif(not SCITLDR.exists(),
                                   reason='no ../shared/data/scitldr')


@needs_scitldr
def test_scitldr_prepares_every_reference_grouped_by_paper(tmp_path):
  builder = prepare.prepare('scitldr', path=str(SCITLDR),
                            data_dir=str(tmp_path))
  counts = {s: i.num_examples for s, i in builder.info.splits.items()}
  assert counts == {'train': 1992, 'validation': 1453, 'test': 1967}
  assert 'title' not in builder.info.features
  papers = {}
  for split, n in (('train', 1992), ('validation', 619), ('test', 618)):
    docs = summaries.read_sentences(prepare.source(builder, split))
    papers[split] = {i for i, _ in docs}
    assert len(papers[split]) == n
  assert not papers['train'] & papers['test']
  first = prepare.source(builder, 'validation')[0]
  sentences = [s.decode() for s in first['sentences']]
  assert first['source'].decode() == ' '.join(sentences)
  assert sentences[0].startswith('Mixed precision training (MPT)')
  assert first['target'].decode().startswith('We devise adaptive loss')
  # The summarization corpus's documents, read as a text corpus (the
  # pretraining's extra text): each abstract once, no summary.
  texts = corpus_lib.read_documents(prepare.source(builder, 'validation'))
  assert len(texts) == 619
  assert not any('We devise adaptive loss' in t for t in texts)


def test_damaged_files_and_records_are_named(tmp_path):
  folder = tmp_path / 'SciTLDR-A'
  folder.mkdir()
  with pytest.raises(summaries.DataError, match='lacks train.jsonl, '
                     'dev.jsonl, test.jsonl'):
    summaries.SciTLDR(path=str(tmp_path), data_dir=str(tmp_path / 'd'))._files(
        None)
  damaged = folder / 'train.jsonl'
  damaged.write_text('{"source": ["a."], "target": ["b"], "paper_id": "x"}')
  with pytest.raises(summaries.DataError, match='train.jsonl is not the '
                     'published file'):
    summaries.scitldr_records(damaged)
  mine = folder / 'mine.jsonl'
  mine.write_text(json.dumps({'source': ['A  b.', 'C.'], 'target': ['d\ne'],
                              'paper_id': 7}) + '\n{"source": 3}\n')
  with pytest.raises(summaries.DataError, match=r'mine.jsonl:2 is not a '
                     'SciTLDR record'):
    summaries.scitldr_records(mine)
  mine.write_text(mine.read_text().splitlines()[0])
  assert summaries.scitldr_records(mine) == [
      {'id': '7', 'sentences': ['A b.', 'C.'], 'targets': ['d e']}]
