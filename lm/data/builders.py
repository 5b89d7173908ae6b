"""TFDS builders for the project's text corpora, prepared to ArrayRecord.

TFDS ships no WikiText builder, and its `tiny_shakespeare` stores each split
as one string; these builders live in the project and are not registered in
TFDS's global registry (`skip_registration`), so they never clash with it.
`prepare(name, ...)` builds (once) and returns the builder; `source(...)` opens
a split as a random-access `tfds` data source for grain.

Every example is `{'text': str}`: one line of a WikiText or `.txt` file with
its trailing newline, one `.jsonl` row's text, or a whole Tiny Shakespeare
split; joining a split's examples gives back the file's text byte for byte.
Files read from a local directory are checked against the published sha256
and line counts; preparing needs no TensorFlow (ArrayRecord, text features).
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lm import errors

VERSION = tfds.core.Version('1.0.0')


_TEXT = tfds.features.FeaturesDict({'text': tfds.features.Text()})


EMBEDDED_SHAKESPEARE = (pathlib.Path(__file__).parents[1] / 'assets' /
                        'tinyshakespeare.txt')


# file -> (sha256, lines), from the corpora's READMEs (../shared/data/*).
KNOWN_FILES = {
    'wiki.train.tokens':
        ('9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f',
         36718),
    'wiki.valid.tokens':
        ('f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8',
         3760),
    'wiki.test.tokens':
        ('d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0',
         4358),
    'wiki.valid.raw':
        ('4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7',
         3760),
    'wiki.test.raw':
        ('173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08',
         4358),
    'input.txt':
        ('86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed',
         40000),
}


# GLUE SST-2 (../shared/data/sst2/README.md): named by folder, as `train.tsv`
# and friends are common names.
SST2_FILES = {
    'train.tsv':
        ('48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1',
         67350),
    'dev.tsv':
        ('54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0', 873
        ),
    'test.tsv':
        ('69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13',
         1822),
}


SPLIT_FILES = {'train': 'train', 'validation': 'valid', 'test': 'test'}


class DataError(errors.UserError):
  """A corpus that is missing, altered or unreadable, as one line."""


def read_text(path: pathlib.Path, *, verify: bool = True,
              known: dict[str, tuple[str, int]] | None = None) -> str:
  """A file's UTF-8 text; a known file (`known`, default KNOWN_FILES) must
  match its sha256 and line count."""
  known = KNOWN_FILES if known is None else known
  try:
    raw = path.read_bytes()
  except FileNotFoundError:
    raise DataError(f'data file not found: {path}') from None
  except OSError as e:  # A folder, no permission, a link loop, ...
    raise DataError(f'cannot read data file {path}: {e.strerror}') from None
  if verify and path.name in known:
    sha256, lines = known[path.name]
    got_sha, got_lines = hashlib.sha256(raw).hexdigest(), raw.count(b'\n')
    if got_sha != sha256:
      raise DataError(
          f'{path} is not the published file: {got_lines:,} lines (expected '
          f'{lines:,}), sha256 {got_sha[:12]}... (expected {sha256[:12]}...); '
          'copy it again from the source named in its README')
  try:
    return raw.decode('utf-8')
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b'\n') + 1
    raise DataError(f'{path} is not valid UTF-8 (byte {e.start}, line {line}); '
                    'convert it to UTF-8') from None


def _lines(text: str):
  """(key, example) per line, each line keeping its newline."""
  for i, line in enumerate(text.splitlines(keepends=True)):
    yield i, {'text': line}


def local_dir(path: str, name: str) -> pathlib.Path | None:
  if not path:
    return None
  folder = pathlib.Path(path)
  if not folder.is_dir():
    raise DataError(f'data.path={path} for {name} is not a directory; point '
                    'it at the folder that holds the corpus files')
  return folder


def _download(dl_manager, url: str, name: str, example_path: str):
  try:
    return pathlib.Path(dl_manager.download_and_extract(url))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f'cannot download {name} from {url} ({type(e).__name__}); set '
        f'data.path to a local copy, e.g. {example_path}') from None


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Text examples in file order (TFDS's shuffle-on-write is turned off)."""
  VERSION = VERSION
  HOMEPAGE = ''
  LICENSE = ''
  CITATION = ''

  def __init__(self, *, path: str = '', **kwargs):
    self.path = path  # A local copy to prepare from; '' downloads.
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__, features=_TEXT,
        homepage=self.HOMEPAGE, license=self.LICENSE, citation=self.CITATION,
        disable_shuffling=True)

  def _generate_examples(self, text: str):
    yield from _lines(text)

  def fetch(self, dl_manager, name: str, files, subfolder: str,
            what: str) -> dict[str, pathlib.Path]:
    """File name -> its path, for each of `files` (names): in data.path
    (or its `subfolder`), else downloaded from self.URL. A missing
    file names the folder and `what` data.path should point at."""
    folder = local_dir(self.path, name)
    if folder is not None:
      folder = folder / subfolder if (folder / subfolder).is_dir() else folder
      missing = [n for n in files if not (folder / n).exists()]
      if missing:
        raise DataError(f'{folder} lacks {", ".join(missing[:3])}'
                        f'{" and more" if len(missing) > 3 else ""}; point '
                        f'data.path at {what}')
      return {n: folder / n for n in files}
    try:
      paths = dl_manager.download({n: self.URL + n for n in files})
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
          f'cannot download {name} from {self.URL} ({type(e).__name__}); '
          f'set data.path to a local copy, e.g. ../shared/data/{name}'
      ) from None
    return {n: pathlib.Path(p) for n, p in paths.items()}


class Wikitext2(Builder):
  """WikiText-2 (Merity et al., 2016), one example per line."""
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='tokens', description=(
          'wiki.*.tokens: rare words replaced by <unk>, vocabulary 33,278.')),
      tfds.core.BuilderConfig(name='raw', description=(
          'wiki.*.raw: the same text without <unk> replacement.')),
  ]
  URLS = {'tokens': 'https://wikitext.smerity.com/wikitext-2-v1.zip',
          'raw': 'https://wikitext.smerity.com/wikitext-2-raw-v1.zip'}
  HOMEPAGE = 'https://blog.salesforceairesearch.com/the-wikitext-long-term-dependency-language-modeling-dataset/'
  LICENSE = 'CC BY-SA 3.0'
  CITATION = ('Merity, Xiong, Bradbury, Socher. Pointer Sentinel Mixture '
              'Models. arXiv:1609.07843, 2016.')

  def _split_generators(self, dl_manager):
    kind = self.builder_config.name
    folder = local_dir(self.path, 'wikitext2')
    if folder is None:
      extracted = _download(dl_manager, self.URLS[kind], 'wikitext2',
                            '../shared/data/wikitext-2')
      folder = next(p for p in extracted.rglob('wiki.valid.*')).parent
    found = {split: folder / f'wiki.{stem}.{kind}'
             for split, stem in SPLIT_FILES.items()}
    found = {s: p for s, p in found.items() if p.exists()}
    if 'validation' not in found:
      raise DataError(f'{folder} holds no wiki.valid.{kind}; point data.path '
                      f'at the WikiText-2 {kind} folder')
    # The raw train split has no small public copy: prepare what is there.
    return {split: self._generate_examples(read_text(path))
            for split, path in found.items()}


class TinyShakespeare(Builder):
  """Tiny Shakespeare (char-rnn), split 90/10 by characters as nanoGPT does.

  Each split is a single example: the split point falls inside a line.
  """
  URL = ('https://raw.githubusercontent.com/karpathy/char-rnn/master/data/'
         'tinyshakespeare/input.txt')
  HOMEPAGE = 'https://github.com/karpathy/char-rnn'
  LICENSE = 'Public domain (text)'
  TRAIN_FRACTION = 0.9

  def _split_generators(self, dl_manager):
    folder = local_dir(self.path, 'tiny_shakespeare')
    path = folder / 'input.txt' if folder else EMBEDDED_SHAKESPEARE
    if path == EMBEDDED_SHAKESPEARE:
      text = read_text(path, verify=False)
      if hashlib.sha256(
          text.encode()).hexdigest() != KNOWN_FILES['input.txt'][0]:
        raise DataError(f'{path} (embedded) is altered; reinstall the package')
    else:
      text = read_text(path)
    n = int(len(text) * self.TRAIN_FRACTION)
    return {'train': self._generate_examples(text[:n]),
            'validation': self._generate_examples(text[n:])}

  def _generate_examples(self, text: str):
    yield 0, {'text': text}


class TextFiles(Builder):
  """A user's own `.txt` (one example per line) or `.jsonl` files.

  Files are assigned to splits by name: `*train*`, `*valid*`/`*dev*`/`*val.*`,
  `*test*`; files that name no split all go to train. The config name is the
  folder name plus a hash of the contents, so new text means a new dataset.
  """

  def __init__(self, *, path: str = '', text_field: str = 'text', **kwargs):
    self.text_field = text_field
    self.files = _text_files(pathlib.Path(path))
    empty = [str(f) for f in self.files if not f.read_bytes().strip()]
    if empty:
      raise DataError(f'{", ".join(empty)}: no text; remove the file or '
                      'point data.path elsewhere')
    digest = hashlib.sha256(text_field.encode())
    for f in self.files:
      digest.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    folder = pathlib.Path(path)
    stem = ''.join(c if c.isalnum() else '_' for c in
                   (folder.stem if folder.is_file() else folder.name))
    config = tfds.core.BuilderConfig(
        name=f'{stem.lower()}_{digest.hexdigest()[:12]}')
    super().__init__(path=path, config=config, **kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = {}
    for f in self.files:
      splits.setdefault(split_of(f.name), []).append(f)
    return {split: self._generate_examples(files)
            for split, files in splits.items()}

  def _generate_examples(self, files):
    for f in files:
      text = read_text(f)
      if f.suffix == '.jsonl':
        rows = enumerate(self._jsonl(f, text))
      else:
        rows = ((i, {'text': line}) for i, line in
                enumerate(text.splitlines(keepends=True)))
      for i, example in rows:
        yield f'{f.name}:{i:09d}', example

  def _jsonl(self, f, text):
    for n, line in enumerate(text.splitlines(), 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        value = row[self.text_field]
      except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f'{f}:{n} is not a JSON object with a string '
                        f'{self.text_field!r} field') from None
      if not isinstance(value, str):
        raise DataError(f'{f}:{n}: field {self.text_field!r} is not a string')
      yield {'text': value}


def split_of(filename: str) -> str:
  name = filename.lower()
  if 'test' in name:
    return 'test'
  if any(k in name for k in ('valid', 'dev', 'val.')):
    return 'validation'
  return 'train'


def _text_files(path: pathlib.Path) -> list[pathlib.Path]:
  if path.is_file():
    files = [path]
  elif path.is_dir():
    files = sorted(p for p in path.iterdir()
                   if p.suffix in ('.txt', '.jsonl', '.tokens', '.raw'))
  else:
    raise DataError(f'data.path={path} does not exist; point it at a text '
                    'file or a folder of .txt/.jsonl files')
  if not files:
    raise DataError(f'{path} holds no .txt or .jsonl files')
  for f in files:
    if not f.is_file():  # A folder, a broken link or a link loop.
      raise DataError(f'{f} is not a file that can be read (a folder, a '
                      'broken link or a link loop); move it out of data.path')
  return files


def parse_tsv(text: str, name: str, labelled: bool):
  """(line number, sentence, label) of each row of a GLUE single-sentence
  TSV: header `sentence<TAB>label` (labelled) or `index<TAB>sentence` (test;
  label -1). CRLF endings, blank lines and one pair of double quotes around a
  field (CSV style, `""` inside) are accepted; a wrong header, a row without
  exactly two fields, an empty sentence or a label other than 0/1 is a
  DataError naming the file and line."""
  header = ('sentence', 'label') if labelled else ('index', 'sentence')
  lines = text.replace('\r\n', '\n').split('\n')
  if tuple(f.strip() for f in lines[0].split('\t')) != header:
    raise DataError(f'{name}:1: header {lines[0][:60]!r} is not '
                    f'{chr(9).join(header)!r} (GLUE format); is this the '
                    f'{"train/dev" if labelled else "test"} file?')
  for n, line in enumerate(lines[1:], 2):
    if not line.strip():
      continue
    fields = [_unquote(f) for f in line.split('\t')]
    if len(fields) != 2:
      raise DataError(f'{name}:{n}: {len(fields)} tab-separated fields, '
                      f'expected 2 ({chr(9).join(header)!r})')
    sentence, label = fields if labelled else (fields[1], '-1')
    if not sentence.strip():
      raise DataError(f'{name}:{n}: empty sentence; remove the line')
    if labelled and label.strip() not in ('0', '1'):
      raise DataError(f'{name}:{n}: label {label!r} is not 0 or 1')
    yield n, sentence.strip(), int(label)


def _unquote(field: str) -> str:
  field = field.strip('\r')
  if len(field) >= 2 and field[0] == field[-1] == '"':
    return field[1:-1].replace('""', '"')
  return field


class Sst2(Builder):
  """GLUE SST-2 binary sentiment (Socher et al., 2013): `{'text', 'label'}`
  per sentence (label 0 negative, 1 positive; -1 in the unlabelled test)."""
  URL = 'https://dl.fbaipublicfiles.com/glue/data/SST-2.zip'
  HOMEPAGE = 'https://nlp.stanford.edu/sentiment/'
  LICENSE = 'Research use (GLUE redistribution)'
  CITATION = ('Socher et al. Recursive Deep Models for Semantic '
              'Compositionality Over a Sentiment Treebank. EMNLP 2013.')
  SPLITS = {'train': 'train.tsv', 'validation': 'dev.tsv', 'test': 'test.tsv'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'text': tfds.features.Text(),
            'label': tfds.features.Scalar(dtype=np.int64)}),
        homepage=self.HOMEPAGE, license=self.LICENSE, citation=self.CITATION,
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    folder = local_dir(self.path, 'sst2')
    if folder is None:
      folder = next(_download(dl_manager, self.URL, 'sst2',
                              '../shared/data/sst2').rglob('dev.tsv')).parent
    found = {split: folder / name for split, name in self.SPLITS.items()
             if (folder / name).exists()}
    if 'train' not in found or 'validation' not in found:
      raise DataError(f'{folder} holds no train.tsv and dev.tsv; point '
                      'data.path at the GLUE SST-2 folder')
    return {split: self._examples(path, split != 'test')
            for split, path in found.items()}

  def _examples(self, path: pathlib.Path, labelled: bool):
    text = read_text(path, known=SST2_FILES)
    for n, sentence, label in parse_tsv(text, str(path), labelled):
      yield n, {'text': sentence, 'label': label}


BUILDERS = {'wikitext2': Wikitext2, 'tiny_shakespeare': TinyShakespeare,
            'text_files': TextFiles, 'sst2': Sst2}
