"""Preparing a corpus's TFDS builder once (under a lock) and reading its
splits as grain sources."""

from __future__ import annotations

import contextlib
import fcntl
import os

import tensorflow_datasets as tfds

from lm.data import builders
from lm.data import parallel
from lm.data import summaries


def prepare(name: str, *, config: str = '', path: str = '',
            data_dir: str = '') -> tfds.core.DatasetBuilder:
  """The builder of `name`, prepared to ArrayRecord under `data_dir` once.

  `path` is a local copy to prepare from; without it the
  builder downloads from the official source, and fails with a DataError that
  names `data.path` where the network is closed.
  """
  with _prepare_lock(data_dir, name):
    return _prepare(name, config, path, data_dir)


@contextlib.contextmanager
def _prepare_lock(data_dir: str, name: str):
  """One process at a time prepares a dataset in a data directory: processes
  of a multi-process run (or parallel study cells) sharing a disk would
  otherwise race to write the same files. The others wait, then reuse it."""
  root = (data_dir or os.environ.get('TFDS_DATA_DIR') or
          os.path.expanduser('~/tensorflow_datasets'))
  if '://' in root:  # Cloud storage: no file locks; prepare it beforehand.
    yield
    return
  try:
    os.makedirs(root, exist_ok=True)
    f = open(os.path.join(root, f'.{name}.lock'), 'w')
  except OSError as e:
    where = ('data.tfds_dir' if data_dir else
             'TFDS_DATA_DIR' if os.environ.get('TFDS_DATA_DIR') else
             'the TFDS data folder')
    raise builders.DataError(
        f'{where}={root} cannot hold prepared data ({e.strerror}); give a '
        'folder that can be created and written') from None
  with f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _prepare(name, config, path, data_dir):
  kwargs = {'file_format': 'array_record', 'data_dir': data_dir or None,
            'path': path}
  if name == 'text_files':
    if not path:
      raise builders.DataError(
          "data.name='text_files' needs data.path=FILE_OR_DIR")
    builder = builders.TextFiles(**kwargs)
  elif name == 'parallel_text':
    if not path:
      raise builders.DataError(
          "data.name='parallel_text' needs data.path=FOLDER")
    builder = parallel.ParallelText(pair=config, **kwargs)
  else:
    # Checked even when prepared data is reused.
    builders.local_dir(path, name)
    cls = {**builders.BUILDERS, **parallel.BUILDERS,
           **summaries.BUILDERS}[name]
    if cls.BUILDER_CONFIGS:
      configs = [c.name for c in cls.BUILDER_CONFIGS]
      config = config or configs[0]
      if config not in configs:
        raise builders.DataError(f'{name} has no config {config!r}; valid: '
                        f'{", ".join(configs)}')
      kwargs['config'] = config
    builder = cls(**kwargs)
  builder.download_and_prepare()
  return builder


def source(builder: tfds.core.DatasetBuilder, split):
  """A random-access data source over `split` (a TFDS split expression)."""
  available = list(builder.info.splits)
  # A split expression names its base split first ('train[:90%]+...');
  # tfds.split_for_jax_process gives an object, checked when it was a string.
  base = split.split('[')[0].split('+')[0] if isinstance(split, str) else None
  if base is not None and base not in available:
    name = builder.name + (f'/{builder.builder_config.name}'
                           if builder.builder_config else '')
    raise builders.DataError(f'{name} has no split {base!r}; it has '
                    f'{", ".join(available)}')
  return builder.as_data_source(split=split)
