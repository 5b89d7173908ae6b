"""The config schema: every key a run accepts, its default, and its checks.

Experiment configs under `configs/` start from `default()` and change fields;
`validate()` runs at the command-line edge, before anything is compiled, and
turns a mistake into one `ConfigError` line that names the key and the fix.
A config that builds on another loads it with `sibling()`.

Each section's defaults are in lm.config_defaults and its value checks in
lm.config_checks; this module joins them and keeps the public names. These
three modules are the lowest layer: they import no other lm module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from typing import Any

import ml_collections

from lm import config_checks
from lm import config_defaults

# Defined with the checks that raise or read them; public here.
ConfigError = config_checks.ConfigError
CHOICES = config_checks.CHOICES
MASKED_TASKS = config_checks.MASKED_TASKS
DROPOUT_SITES = config_checks.DROPOUT_SITES

# Model fields a checkpoint's shapes depend on: resuming needs them unchanged.
ARCHITECTURE_KEYS = ('vocab_size', 'num_layers', 'num_heads', 'embed_dim',
                     'mlp_dim', 'max_len', 'use_bias', 'position',
                     'num_kv_heads', 'norm', 'norm_position', 'activation',
                     'tie_embeddings', 'qk_norm', 'relative_buckets',
                     'scan_layers',  # Scanned layers are stacked arrays.
                     'type_vocab_size', 'num_classes', 'embed_norm',
                     # Encoder-decoders, and imported T5, BART and Marian.
                     'decoder_layers', 'share_embeddings', 'scale_embeddings',
                     'head_width', 'sinusoidal_layout',
                     'relative_max_distance')

# Fields a resumed run may change freely: how long, how often, how it is
# laid out or compiled; the same run either way. Changing any other field of
# a workdir's run takes allow_config_change=true (and is recorded).
# data.filtered is not chosen but recorded (what the filters did, which the
# filter fields themselves decide).
RESUMABLE_CHANGES = ('init_from', 'allow_config_change', 'data.prefetch',
                     'data.tfds_dir', 'data.filtered', 'model.attention_impl', 'model.remat',
                     'optim.grad_accum_steps', 'train.*', 'eval.*',
                     'checkpoint.*', 'compile.*', 'mesh.*')


def default() -> ml_collections.ConfigDict:
  """Every key a run accepts, with the project's defaults (a small CPU GPT)."""
  c = config_defaults.top_level_defaults()
  c.data = config_defaults.data_defaults()
  c.model = config_defaults.model_defaults()
  c.optim = config_defaults.optim_defaults()
  c.train = config_defaults.train_defaults()
  c.eval = config_defaults.eval_defaults()
  c.checkpoint = config_defaults.checkpoint_defaults()
  c.compile = config_defaults.compile_defaults()
  c.mesh = config_defaults.mesh_defaults()
  return c


def flat(c: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  """`c`'s fields as one dict from dotted key ('model.num_layers') to value."""
  out = {}
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def unknown_key_message(key: str) -> str | None:
  """None if `key` (dotted) names a field or section, else what to say."""
  keys = flat(default())
  if key in keys or any(k.startswith(key + '.') for k in keys):
    return None
  section = key.rpartition('.')[0]
  prefix = section + '.' if section else ''
  valid = sorted({k[len(prefix):].split('.')[0] for k in keys
                  if k.startswith(prefix)})
  return (f'unknown config key {key!r}; valid keys in '
          f'{section or "the top level"}: {", ".join(valid)}')


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for unknown keys, wrong types and bad values."""
  _check_schema(c)
  for check in config_checks.CHECKS:
    check(c)


def _check_schema(c: ml_collections.ConfigDict) -> None:
  """Every key of `c` is in default(), of its type, and one of its CHOICES."""
  schema, given = flat(default()), flat(c)
  for key in given:
    message = unknown_key_message(key)
    if message:
      raise ConfigError(message)
  for key, value in given.items():
    want = type(schema[key])
    ok = isinstance(value, want) or (want is float and isinstance(value, int))
    if want is not bool and isinstance(value, bool):
      ok = False
    if not ok:
      raise ConfigError(f'config key {key!r} must be {want.__name__}, '
                        f'got {value!r}')
  for key, options in CHOICES.items():
    if given[key] not in options:
      raise ConfigError(f'config key {key!r} is {given[key]!r}; valid choices: '
                        f'{", ".join(options)}')


def sibling(config_file: str, name: str) -> types.ModuleType:
  """The config module NAME.py in the folder of `config_file`.

  A config that builds on another one passes its own `__file__`:

    wikitext2_word = lm_config.sibling(__file__, 'wikitext2_word')

  configs/ is no package, and absl's --config runs a config file by its path,
  so a config finds its neighbours by file, not on sys.path. The module is
  run once per process and kept in sys.modules under NAME: the name that
  `import NAME`, with configs/ on sys.path, gives it (as the tests'
  conftest.load_config imports configs). However a config is reached first,
  every later user gets that same module object, with the same SHAPES and
  helpers. A module NAME already loaded from another file is an ImportError
  rather than silently used in its place.

  Args:
    config_file: the calling config's `__file__`.
    name: the sibling's file name without `.py`.

  Returns:
    The loaded module.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)),
                      f'{name}.py')
  module = sys.modules.get(name)
  if module is not None:
    loaded = getattr(module, '__file__', None) or ''
    if loaded and os.path.realpath(loaded) == os.path.realpath(path):
      return module
    raise ImportError(f'cannot load config {path}: a module {name!r} is '
                      f'already loaded from {loaded or "elsewhere"}')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # Before it runs, as an import does.
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]  # A failed load leaves no half-run module.
    raise
  return module


def to_json(c: ml_collections.ConfigDict) -> str:
  return json.dumps(c.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """A config saved by `to_json`, tuples restored where the schema has them."""
  c = default()
  saved = json.loads(text)

  def fill(node, values):
    for k, v in values.items():
      if isinstance(v, dict):
        fill(node[k], v)
      else:
        node[k] = _tuples(v) if isinstance(v, list) else v
  fill(c, saved)
  return c


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def architecture_changes(old: ml_collections.ConfigDict,
                         new: ml_collections.ConfigDict) -> list[str]:
  """Model fields that differ, as 'key: old -> new' strings."""
  return [f'model.{k}: {old.model[k]} -> {new.model[k]}'
          for k in ARCHITECTURE_KEYS if old.model[k] != new.model[k]]


def config_changes(old: ml_collections.ConfigDict,
                   new: ml_collections.ConfigDict) -> list[str]:
  """Fields outside RESUMABLE_CHANGES that differ, as 'key: old -> new'."""
  def free(key):
    return any(key == k or (k.endswith('.*') and key.startswith(k[:-1]))
               for k in RESUMABLE_CHANGES)
  a, b = flat(old), flat(new)
  return [f'{k}: {a.get(k)} -> {b.get(k)}' for k in sorted(set(a) | set(b))
          if not free(k) and a.get(k) != b.get(k)]
