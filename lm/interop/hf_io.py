"""Hugging Face folders in and out of runs (the work behind lm.convert).

`from_hf` reads a local `transformers` folder (config.json, model.safetensors
or its shards, and tokenizer.json, or vocab.json + merges.txt, or vocab.txt)
into a new run: config.json, the tokenizer (data.tokenizer=hf), an Orbax
checkpoint of the parameters at step 0, and hf_source.json (which marks it
imported). `to_hf` writes a run back as such a folder. The tensor mapping
is lm/interop/hf_format.py; safetensors are read and written with numpy.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from lm import config as config_lib
from lm import tasks
from lm.data import subword
from lm.data import tokenizer as tokenizer_lib
from lm.interop import hf_format
from lm.interop import hf_seq2seq
from lm.models import transformer
from lm.train import checkpoint as checkpoint_lib
from lm.train import workdir as workdir_lib

# Special tokens, as tokenizer_config.json names them -> special_ids names.
_SPECIALS = {'cls_token': 'cls', 'sep_token': 'sep', 'mask_token': 'mask',
             'pad_token': 'pad', 'unk_token': 'unk', 'bos_token': 'bos',
             'eos_token': 'eos'}
_BERT_DEFAULTS = {'cls': '[CLS]', 'sep': '[SEP]', 'mask': '[MASK]',
                  'pad': '[PAD]', 'unk': '[UNK]'}


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
    raise hf_format.FormatError(f'cannot read {path}: {e}') from None
  if not isinstance(value, dict):
    raise hf_format.FormatError(f'{path} is not a JSON object')
  return value


def read_tensors(model_dir: str) -> dict[str, np.ndarray]:
  """The folder's state dict: model.safetensors, or the shards its index
  names, read as numpy arrays."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  single = os.path.join(model_dir, 'model.safetensors')
  index = single + '.index.json'
  if os.path.exists(single):
    files = [single]
  elif os.path.exists(index):
    shards = _read_json(index).get('weight_map', {}).values()
    files = [os.path.join(model_dir, name) for name in sorted(set(shards))]
  elif os.path.exists(os.path.join(model_dir, 'pytorch_model.bin')):
    raise hf_format.FormatError(
        f'{model_dir} holds pytorch_model.bin only; save it as safetensors '
        '(model.save_pretrained(dir, safe_serialization=True)) so no torch '
        'is needed to read it')
  else:
    raise hf_format.FormatError(f'{model_dir} has no model.safetensors')
  tensors = {}
  for path in files:
    try:
      tensors.update(load_file(path))
    except Exception as e:  # pylint: disable=broad-except
      raise hf_format.FormatError(f'cannot read {path}: '
                                  f'{str(e).splitlines()[0][:200]}') from None
  return tensors


def read_tokenizer(model_dir: str) -> subword.HFTokenizer:
  """The folder's tokenizer: tokenizer.json, else GPT-2's vocab.json +
  merges.txt, else BERT's vocab.txt; special tokens from
  tokenizer_config.json / special_tokens_map.json."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  settings = {}
  for name in ('tokenizer_config.json', 'special_tokens_map.json'):
    path = os.path.join(model_dir, name)
    if os.path.exists(path):
      settings.update(_read_json(path))
  specials = {}
  for key, name in _SPECIALS.items():
    value = settings.get(key)
    if isinstance(value, dict):  # An AddedToken: {"content": ..., ...}.
      value = value.get('content')
    if isinstance(value, str):
      specials[name] = value
  path = os.path.join(model_dir, 'tokenizer.json')
  vocab_json = os.path.join(model_dir, 'vocab.json')
  vocab_txt = os.path.join(model_dir, 'vocab.txt')
  if os.path.exists(path):
    with open(path, 'rb') as f:
      content = f.read()
  elif os.path.exists(vocab_json):
    merges = os.path.join(model_dir, 'merges.txt')
    if not os.path.exists(merges):
      raise hf_format.FormatError(f'{model_dir} has vocab.json but no '
                                  'merges.txt')
    content = tokenizers.implementations.ByteLevelBPETokenizer(
        vocab_json, merges).to_str().encode()
  elif os.path.exists(vocab_txt):
    content = tokenizers.implementations.BertWordPieceTokenizer(
        vocab_txt, lowercase=bool(settings.get('do_lower_case', True))
    ).to_str().encode()
    specials = {**_BERT_DEFAULTS, **specials}
  else:
    raise hf_format.FormatError(
        f'{model_dir} has no tokenizer (tokenizer.json, vocab.json + '
        'merges.txt, or vocab.txt)')
  return subword.HFTokenizer(content, specials)


def _seq2seq_specials(tok: subword.HFTokenizer, hf: dict
                      ) -> subword.HFTokenizer:
  """`tok` with the encoder-decoder's special tokens from config.json: its
  decoder start token as 'bos' (what the decoder reads first: T5's and
  Marian's <pad>, BART's </s>), its 'eos' and 'pad'."""
  specials = dict(tok.specials)
  for name, key in (('bos', 'decoder_start_token_id'),
                    ('eos', 'eos_token_id'), ('pad', 'pad_token_id')):
    i = hf.get(key)
    token = tok.token(i) if isinstance(i, int) else None
    if token is not None:
      specials[name] = token
  for name, key in (('bos', 'decoder_start_token_id'),
                    ('eos', 'eos_token_id')):
    if name not in specials:
      raise hf_format.FormatError(
          f'config.json names no {key} the tokenizer has; an '
          'encoder-decoder needs both')
  return subword.HFTokenizer(tok.content, specials)


def _check_tree(params, abstract) -> None:
  """Same keys and shapes as the model's (a mapping bug, not user input)."""
  got = {jax.tree_util.keystr(p): x.shape
         for p, x in jax.tree_util.tree_leaves_with_path(params)}
  want = {jax.tree_util.keystr(p): x.shape
          for p, x in jax.tree_util.tree_leaves_with_path(abstract)}
  if got != want:
    diff = sorted(set(got.items()) ^ set(want.items()))
    raise AssertionError(f'mapped parameters differ from the model: {diff[:4]}')


def from_hf(model_dir: str, workdir: str) -> str:
  """Imports the Hugging Face folder into a new run; a line saying what."""
  start = time.perf_counter()
  if not os.path.isdir(model_dir):
    raise hf_format.FormatError(f'--model_dir={model_dir}: no such folder')
  hf = _read_json(os.path.join(model_dir, 'config.json'))
  arch = hf_format.architecture(hf)
  seq2seq = arch in hf_format.SEQ2SEQ
  tensors = read_tensors(model_dir) if seq2seq else None
  fields = (hf_seq2seq.model_fields(arch, hf, tensors) if seq2seq else
            hf_format.model_fields(hf)[1])
  task = tasks.for_architecture(arch)
  if checkpoint_lib.saved_steps(workdir):
    raise workdir_lib.RunError(
        f'workdir {workdir} already holds a run; give a new '
        '--workdir')
  tok = read_tokenizer(model_dir)
  if seq2seq:
    tok = _seq2seq_specials(tok, hf)
  if tok.vocab_size > fields['vocab_size']:
    raise hf_format.FormatError(
        f'the tokenizer has {tok.vocab_size} tokens but config.json '
        f'vocab_size is {fields["vocab_size"]}')
  if task.specials:
    missing = [n for n in ('cls', 'sep', 'mask', 'pad') if n not in
               tok.special_ids]
    if missing:
      raise hf_format.FormatError(
          f'the BERT tokenizer lacks {", ".join(missing)} token(s); '
          'tokenizer_config.json must name them (cls_token, ...)')
  c = config_lib.default()
  c.task = task.name
  c.model.update(fields)
  c.data.tokenizer = 'hf'
  if task.hf_data_name:  # The labelled corpus it is evaluated on.
    c.data.name = task.hf_data_name
  config_lib.validate(c)
  c = workdir_lib.resolve(c, tok.vocab_size)
  if tensors is None:  # (An encoder-decoder's were read for its fields.)
    tensors = read_tensors(model_dir)
  params = (hf_seq2seq.to_params(arch, fields, tensors, hf) if seq2seq else
            hf_format.to_params(arch, fields, tensors))
  abstract = workdir_lib.single_device_params(c)
  _check_tree(params, abstract)
  params = jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), params,
                        abstract)
  workdir_lib.prepare_workdir(workdir, c)
  tok.save(workdir)
  ckpt = checkpoint_lib.Checkpointer(workdir, max_to_keep=1,
                                     async_save=False)
  ckpt.save(0, {'params': params}, None)
  if not ckpt.wait():
    raise workdir_lib.RunError(f'could not save the checkpoint in {workdir}: '
                               f'{ckpt.failures[-1][1]}')
  ckpt.close()
  with open(os.path.join(workdir, workdir_lib.IMPORTED_FILE), 'w') as f:
    json.dump({'model_dir': os.path.abspath(model_dir),
               'architecture': hf_format.architecture(hf),
               'time': time.strftime('%Y-%m-%dT%H:%M:%S%z')}, f, indent=2)
  n = transformer.count_params(params)
  return (f'imported {hf_format.architecture(hf)} ({n:,} parameters, a '
          f'{tok.vocab_size:,}-token tokenizer) into {workdir} as a '
          f'task={task.name} run in {time.perf_counter() - start:.1f} s')


def load_run_params(workdir: str, step: int | None = None):
  """(config, parameters in the per-layer layout) of a run."""
  c = workdir_lib.saved_config(workdir)
  params = workdir_lib.load_params(workdir_lib.single_device_params(c), workdir,
                                   step)
  body = tasks.TASKS[c.task].body
  if c.model.scan_layers and tasks.TASKS[c.task].encoder_decoder:
    params = {k: transformer.unstack_layers(v) for k, v in params.items()}
  elif c.model.scan_layers and body:
    params = {**params, body: transformer.unstack_layers(params[body])}
  elif c.model.scan_layers:
    params = transformer.unstack_layers(params)
  return c, jax.device_get(params)


def hf_architecture(c) -> str:
  """The Hugging Face class run config `c` exports to; FormatError when its
  task has none."""
  task = tasks.TASKS[c.task]
  if task.encoder_decoder:
    return hf_seq2seq.architecture_of(c.model)
  if not task.hf_architecture:
    raise hf_format.FormatError(task.hf_refusal)
  return task.hf_architecture


def to_hf(workdir: str, out_dir: str, step: int | None = None) -> str:
  """Exports the run to a Hugging Face folder; a line saying what."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  c = workdir_lib.saved_config(workdir)
  arch = hf_architecture(c)
  seq2seq = arch in hf_format.SEQ2SEQ
  tok = tokenizer_lib.load(workdir)
  hf = (hf_seq2seq.hf_config(arch, c.model, tok.special_ids) if seq2seq
        else hf_format.hf_config(arch, c.model))
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise workdir_lib.RunError(
        f'--out_dir={out_dir} is not empty; give a new or '
        'empty folder')
  c, params = load_run_params(workdir, step)
  tensors = (hf_seq2seq.from_params(arch, c.model, params) if seq2seq else
             hf_format.from_params(arch, c.model, params))
  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, 'model.safetensors'),
            metadata={'format': 'pt'})
  hf['dtype'] = 'float32'
  special_names = {v: k for k, v in _SPECIALS.items()}
  ids = tok.special_ids
  for name, key in (('pad', 'pad_token_id'), ('bos', 'bos_token_id'),
                    ('eos', 'eos_token_id')):
    if name in ids and not seq2seq:  # (An encoder-decoder's: its config.)
      hf[key] = ids[name]
  with open(os.path.join(out_dir, 'config.json'), 'w') as f:
    json.dump(hf, f, indent=2)
  note = ''
  if tok.kind == 'hf':
    with open(os.path.join(out_dir, 'tokenizer.json'), 'wb') as f:
      f.write(tok.content)
    settings = {'tokenizer_class': 'PreTrainedTokenizerFast',
                'model_max_length': c.model.max_len,
                **{special_names[n]: t for n, t in tok.specials.items()}}
    with open(os.path.join(out_dir, 'tokenizer_config.json'), 'w') as f:
      json.dump(settings, f, indent=2)
  else:
    note = (f'; its {tok.kind} tokenizer has no Hugging Face form, so no '
            'tokenizer files were written')
  return (f'exported {hf["architectures"][0]} '
          f'({transformer.count_params(params):,} parameters) to {out_dir}'
          + note)
