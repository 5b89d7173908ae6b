"""TFDS builders for parallel text (translation pairs), prepared to
ArrayRecord.

Every example is `{'source': str, 'target': str}`: line i of a source file
and line i of its target file. `multi30k` is Multi30k Task 1 (Elliott et
al., 2016), the cased untokenized `raw/*.gz` files, checked against their
published sha256; its config names the direction ('en-de' or 'de-en'). Its
splits: train (29,000 pairs), validation (1,014), test (test2016 Flickr,
1,000), test2017 (Flickr, 1,000), mscoco2017 (461) and test2018 (1,071).

Pairs are kept as they are in the files (empty ones too, so split sizes are
the published ones); the translation task skips and counts empty pairs and
cuts long ones (`lm.data.pairs`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib

import tensorflow_datasets as tfds

from lm.data import builders

DataError = builders.DataError

_PAIR = tfds.features.FeaturesDict({'source': tfds.features.Text(),
                                    'target': tfds.features.Text()})

# raw/ file -> (sha256 of the .gz file, lines), from
# ../shared/data/multi30k/README.md.
MULTI30K_FILES = {name: (sha256, lines) for name, lines, sha256 in (
    ('train.en.gz', 29000,
     'd79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f'),
    ('train.de.gz', 29000,
     '726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6'),
    ('val.en.gz', 1014,
     '14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28'),
    ('val.de.gz', 1014,
     'f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a'),
    ('test_2016_flickr.en.gz', 1000,
     '611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9'),
    ('test_2016_flickr.de.gz', 1000,
     '9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8'),
    ('test_2017_flickr.en.gz', 1000,
     '76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074'),
    ('test_2017_flickr.de.gz', 1000,
     'a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee'),
    ('test_2017_mscoco.en.gz', 461,
     'aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58'),
    ('test_2017_mscoco.de.gz', 461,
     '799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338'),
    ('test_2018_flickr.en.gz', 1071,
     'ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d'),
    ('test_2018_flickr.de.gz', 1071,
     'ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608'))}

# Split -> the raw/ file stem of Multi30k Task 1.
MULTI30K_SPLITS = {'train': 'train', 'validation': 'val',
                   'test': 'test_2016_flickr', 'test2017': 'test_2017_flickr',
                   'mscoco2017': 'test_2017_mscoco',
                   'test2018': 'test_2018_flickr'}


def read_lines(path: pathlib.Path, known: dict | None = None) -> list[str]:
  """A text file's lines (a `.gz` file decompressed), without their line
  ends; a file in `known` must match its sha256 and line count."""
  try:
    raw = path.read_bytes()
  except FileNotFoundError:
    raise DataError(f'data file not found: {path}') from None
  except OSError as e:
    raise DataError(f'cannot read data file {path}: {e.strerror}') from None
  if known and path.name in known:
    sha256, lines = known[path.name]
    if hashlib.sha256(raw).hexdigest() != sha256:
      raise DataError(f'{path} is not the published file (sha256 '
                      f'{hashlib.sha256(raw).hexdigest()[:12]}..., expected '
                      f'{sha256[:12]}..., {lines:,} lines); copy it again from '
                      'the source named in its README')
  if path.suffix == '.gz':
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise DataError(f'{path} is not a readable gzip file ({e}); copy it '
                      'again') from None
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b'\n') + 1
    raise DataError(f'{path} is not valid UTF-8 (byte {e.start}, line '
                    f'{line}); convert it to UTF-8') from None
  return text.splitlines()


def aligned(source: pathlib.Path, target: pathlib.Path,
            known: dict | None = None) -> list[tuple[str, str]]:
  """The (source, target) pairs of two line-aligned files; files of
  different lengths are a DataError naming both and their counts."""
  sources, targets = read_lines(source, known), read_lines(target, known)
  if len(sources) != len(targets):
    raise DataError(f'{source} has {len(sources):,} lines but {target} has '
                    f'{len(targets):,}; line i of each must be a translation '
                    'pair')
  return list(zip(sources, targets))


class Multi30k(builders.Builder):
  """Multi30k Task 1 (Elliott et al., 2016): Flickr30k image descriptions
  and their professional translations, cased and untokenized."""
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='en-de', description='English to German.'),
      tfds.core.BuilderConfig(name='de-en', description='German to English.'),
  ]
  URL = ('https://github.com/multi30k/dataset/raw/'
         'a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/')
  HOMEPAGE = 'https://github.com/multi30k/dataset'
  LICENSE = 'Non-commercial research and education use (Flickr30K terms)'
  CITATION = ('Elliott, Frank, Sima\'an, Specia. Multi30K: Multilingual '
              'English-German Image Descriptions. VL@ACL 2016.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__, features=_PAIR,
        homepage=self.HOMEPAGE, license=self.LICENSE, citation=self.CITATION,
        disable_shuffling=True)

  def _files(self, dl_manager) -> dict[str, pathlib.Path]:
    """raw/ file name -> its path: in data.path (the Multi30k folder or its
    raw/), else downloaded."""
    return self.fetch(dl_manager, 'multi30k', MULTI30K_FILES, 'raw',
                      'the Multi30k folder (raw/*.gz inside)')

  def _split_generators(self, dl_manager):
    files = self._files(dl_manager)
    src, tgt = self.builder_config.name.split('-')
    # Downloaded files have other names: check them under their own.
    known = {str(files[n].name): v for n, v in MULTI30K_FILES.items()}
    return {split: self._generate_examples(aligned(
        files[f'{stem}.{src}.gz'], files[f'{stem}.{tgt}.gz'], known))
            for split, stem in MULTI30K_SPLITS.items()}

  def _generate_examples(self, pairs):
    for i, (source, target) in enumerate(pairs):
      yield i, {'source': source, 'target': target}


def languages(config: str) -> tuple[str, str]:
  """(source, target) language codes of a config 'SRC-TGT'."""
  parts = config.split('-')
  if len(parts) != 2 or not all(p.isalnum() for p in parts):
    raise DataError(f'data.config={config!r} must name the languages as '
                    "'SRC-TGT' (file suffixes), e.g. 'en-de'")
  return parts[0], parts[1]


class ParallelText(builders.Builder):
  """A user's own parallel text: line-aligned files `NAME.SRC` and
  `NAME.TGT` (either may be gzip-compressed, `NAME.SRC.gz`), or `.jsonl`
  files of {"source": ..., "target": ...} rows. Files go to splits by name
  as for text_files (`*train*`, `*valid*`/`*dev*`/`*val*`, `*test*`). The
  config name is the folder's name, the languages and a hash of the
  contents, so new text means a new dataset."""

  def __init__(self, *, path: str = '', pair: str = 'en-de', **kwargs):
    self.src, self.tgt = languages(pair or 'en-de')
    folder = pathlib.Path(path)
    if not folder.is_dir():
      raise DataError(f'data.path={path} is not a folder; point it at the '
                      'folder of the parallel files')
    self.splits = self._find(folder)
    digest = hashlib.sha256(f'{self.src}-{self.tgt}'.encode())
    for files in self.splits.values():
      for f in files:
        digest.update(f.name.encode() + hashlib.sha256(
            f.read_bytes()).digest())
    stem = ''.join(c if c.isalnum() else '_' for c in folder.name).lower()
    config = tfds.core.BuilderConfig(
        name=f'{stem}_{self.src}_{self.tgt}_{digest.hexdigest()[:12]}')
    super().__init__(path=path, config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=_PAIR, disable_shuffling=True)

  def _find(self, folder: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """split -> its files: (source, target) pairs of aligned files, or one
    .jsonl."""
    splits = {}
    for f in sorted(folder.iterdir()):
      name = f.name[:-3] if f.name.endswith('.gz') else f.name
      if name.endswith('.jsonl'):
        splits.setdefault(builders.split_of(name), []).append(f)
      elif name.endswith(f'.{self.src}'):
        stem = name[:-len(self.src) - 1]
        target = next((folder / f'{stem}.{self.tgt}{gz}' for gz in ('', '.gz')
                       if (folder / f'{stem}.{self.tgt}{gz}').exists()), None)
        if target is None:
          raise DataError(f'{f} has no target file {stem}.{self.tgt} beside '
                          'it; give each source file its translation')
        splits.setdefault(builders.split_of(name), []).extend([f, target])
    if 'train' not in splits:
      raise DataError(f'{folder} holds no training pairs (files named '
                      f'*train*.{self.src} and *.{self.tgt}, or *train*.jsonl)')
    return splits

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(files)
            for split, files in self.splits.items()}

  def _generate_examples(self, files):
    i = 0
    while i < len(files):
      f = files[i]
      if f.name.removesuffix('.gz').endswith('.jsonl'):
        rows, i = self._jsonl(f), i + 1
      else:
        rows, i = aligned(f, files[i + 1]), i + 2
      for n, (source, target) in enumerate(rows):
        yield f'{f.name}:{n:09d}', {'source': source, 'target': target}

  @staticmethod
  def _jsonl(f: pathlib.Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(read_lines(f), 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        pair = (row['source'], row['target'])
      except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f'{f}:{n} is not a JSON object with string "source" '
                        'and "target" fields') from None
      if not all(isinstance(x, str) for x in pair):
        raise DataError(f'{f}:{n}: "source" and "target" must be strings')
      rows.append(pair)
    return rows


BUILDERS = {'multi30k': Multi30k}
