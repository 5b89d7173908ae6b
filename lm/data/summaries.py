"""TFDS builders for summarization: documents and their reference summaries.

Every example is one (document, summary) pair: `{'source': str, 'target':
str, 'id': str, 'sentences': [str]}`, the document's text (its sentences
joined by spaces), one reference summary, the document's id and its
sentences (for the lead-sentence baseline and the sentence oracle). A
document with several references gives one example each, consecutive and
sharing the id, so training reads every pair and evaluation groups a
document's references by id (`lm.tasks.summarization`).

`scitldr` is SciTLDR-A (Cachola et al., 2020): the abstracts of
OpenReview papers and their one-sentence TLDRs, checked against the
published sha256. Splits: train (1,992 papers, one TLDR each), validation
(the dev file: 619 papers, 1,453 TLDRs) and test (618 papers, 1,967). The
`title` field is never read: the title alone scores about 37 ROUGE-1
against the references (it leaks the answer). Whitespace inside a sentence
(a few hold line breaks) is collapsed to single spaces.
"""

from __future__ import annotations

import json
import pathlib

import tensorflow_datasets as tfds

from lm.data import builders
from lm.data import parallel

DataError = builders.DataError

FEATURES = tfds.features.FeaturesDict({
    'source': tfds.features.Text(), 'target': tfds.features.Text(),
    'id': tfds.features.Text(),
    'sentences': tfds.features.Sequence(tfds.features.Text())})

# SciTLDR-A file -> (sha256, lines), from ../shared/data/scitldr/README.md
# (the last line has no newline, so records are lines + 1).
SCITLDR_FILES = {
    'train.jsonl':
        ('b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119',
         1991),
    'dev.jsonl':
        ('3191fa98ccc09521332b7a1cd63b1930be4e8df125a235ccd31e40329709525e',
         618),
    'test.jsonl':
        ('fb42dd6cd4f4a1928ae8a01a189456fbfe994a07e938bd49f68653933f6503c9',
         617),
}
SCITLDR_SPLITS = {'train': 'train.jsonl', 'validation': 'dev.jsonl',
                  'test': 'test.jsonl'}


def _clean(text: str) -> str:
  return ' '.join(text.split())


def scitldr_records(path: pathlib.Path) -> list[dict]:
  """A SciTLDR jsonl file's records as {'id', 'sentences', 'targets'}; a
  record that is not one is a DataError naming its line."""
  records = []
  # The published files end without a newline: lines + 1 records.
  known = {name: (sha, lines + 1) for name, (sha, lines)
           in SCITLDR_FILES.items()}
  for n, line in enumerate(parallel.read_lines(path, known), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      sentences = [_clean(s) for s in row['source']]
      targets = [_clean(t) for t in row['target']]
      record = {'id': str(row['paper_id']), 'sentences': sentences,
                'targets': targets}
    except (json.JSONDecodeError, KeyError, TypeError):
      raise DataError(f'{path}:{n} is not a SciTLDR record (a JSON object '
                      'with "source", "target" and "paper_id")') from None
    records.append(record)
  return records


class SciTLDR(builders.Builder):
  """SciTLDR-A: paper abstracts and their one-sentence summaries (TLDRs)."""
  URL = ('https://raw.githubusercontent.com/allenai/scitldr/'
         '5ccad9c00a60ad75c9e04abf7f27d0f53f983b20/SciTLDR-Data/SciTLDR-A/')
  HOMEPAGE = 'https://github.com/allenai/scitldr'
  LICENSE = 'Apache License 2.0'
  CITATION = ('Cachola, Lo, Cohan, Weld. TLDR: Extreme Summarization of '
              'Scientific Documents. Findings of EMNLP 2020.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__, features=FEATURES,
        homepage=self.HOMEPAGE, license=self.LICENSE, citation=self.CITATION,
        disable_shuffling=True)

  def _files(self, dl_manager) -> dict[str, pathlib.Path]:
    """File name -> its path: in data.path (the scitldr folder or its
    SciTLDR-A/), else downloaded."""
    return self.fetch(dl_manager, 'scitldr', SCITLDR_FILES, 'SciTLDR-A',
                      'the SciTLDR folder (SciTLDR-A/*.jsonl inside)')

  def _split_generators(self, dl_manager):
    files = self._files(dl_manager)
    return {split: self._generate_examples(files[name])
            for split, name in SCITLDR_SPLITS.items()}

  def _generate_examples(self, path: pathlib.Path):
    for record in scitldr_records(path):
      source = ' '.join(record['sentences'])
      for k, target in enumerate(record['targets']):
        yield f'{record["id"]}:{k}', {
            'source': source, 'target': target, 'id': record['id'],
            'sentences': record['sentences']}


def read_sentences(source, chunk: int = 4096) -> list[tuple[str, list[str]]]:
  """(id, sentences) of each example of a summarization data source, in
  order (one per reference)."""
  out = []
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    out.extend((ex['id'].decode('utf-8'),
                [s.decode('utf-8') for s in ex['sentences']]) for ex in rows)
  return out


BUILDERS = {'scitldr': SciTLDR}
