"""Hugging Face checkpoints <-> this project's parameters: GPT-2 and BERT.

Pure mappings between a `transformers` state dict (names -> numpy arrays, as
read from `model.safetensors`) plus its `config.json`, and this project's
model config fields plus parameter tree (`lm.models.transformer.GPT`, and `lm.models.heads`'
`MaskedLM` and `SequenceClassifier`). No torch and no `transformers` at run
time. `lm.convert` reads and writes the folders and runs.

What maps to what (D width, H heads, K = D / H, F MLP width, V vocabulary):
  GPT-2 (`GPT2LMHeadModel`)         here (a GPT)
    transformer.wte / wpe           wte [V, D] / wpe [max_len, D]
    h.i.ln_1 / ln_2                 blocks.i.ln1 / ln2 (scale, bias)
    h.i.attn.c_attn [D, 3D]         blocks.i.attn.q / k / v [D, H, K]
    h.i.attn.c_proj [D, D]          blocks.i.attn.out [H, K, D]
    h.i.mlp.c_fc / c_proj           blocks.i.mlp.up [D, F] / down [F, D]
    transformer.ln_f                ln_f
    lm_head (when untied)           head [V, D]
  BERT (`BertForMaskedLM`, `BertForSequenceClassification`), post-norm with
  a LayerNorm on the embeddings (model.norm_position=post, embed_norm=True):
    bert.embeddings.word / position / token_type_embeddings   wte/wpe/wtt
    bert.embeddings.LayerNorm       ln_e
    layer.i.attention.self.query / key / value   blocks.i.attn.q / k / v
    layer.i.attention.output.dense / LayerNorm   blocks.i.attn.out / ln1
    layer.i.intermediate.dense / output.dense    blocks.i.mlp.up / down
    layer.i.output.LayerNorm        blocks.i.ln2
    cls.predictions.transform.dense / LayerNorm / bias   head.transform /
                                    head.norm / head.bias (decoder tied to wte)
    bert.pooler.dense / classifier  head.pooler / head.out
  (the body under 'encoder' for BERT). PyTorch's Linear weights are [out, in]
  and are transposed; GPT-2's Conv1D weights are already [in, out].
"""

from __future__ import annotations

import numpy as np

from lm import errors

# Tensors a checkpoint may hold that are buffers, not parameters.
_BUFFERS = ('.attn.bias', '.attn.masked_bias', 'position_ids')
_GPT2_ACTIVATIONS = {'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh',
                     'gelu': 'gelu', 'relu': 'relu'}
ARCHITECTURES = ('GPT2LMHeadModel', 'BertForMaskedLM',
                 'BertForSequenceClassification')
# Encoder-decoders, mapped by lm.interop.hf_seq2seq.
SEQ2SEQ = ('T5ForConditionalGeneration', 'BartForConditionalGeneration',
           'MarianMTModel')


class FormatError(errors.UserError):
  """A checkpoint that cannot be mapped, naming the tensor or field."""


def architecture(hf_config: dict) -> str:
  """The checkpoint's class name, one of ARCHITECTURES."""
  names = hf_config.get('architectures') or []
  name = names[0] if names else {
      'gpt2': 'GPT2LMHeadModel', 'bert': 'BertForMaskedLM',
      't5': SEQ2SEQ[0], 'bart': SEQ2SEQ[1], 'marian': SEQ2SEQ[2]}.get(
          hf_config.get('model_type'), '')
  if name not in ARCHITECTURES + SEQ2SEQ:
    raise FormatError(
        f'architecture {name or hf_config.get("model_type")!r} '
        f'is not supported; supported: '
        f'{", ".join(ARCHITECTURES + SEQ2SEQ)}')
  return name


def _field(hf_config: dict, key: str, default=None):
  value = hf_config.get(key, default)
  if value is None:
    raise FormatError(f'config.json has no {key!r}')
  return value


def _require(hf_config: dict, key: str, allowed, default):
  value = hf_config.get(key, default)
  if value not in allowed:
    raise FormatError(f'config.json: {key}={value!r} is not supported (only '
                      f'{", ".join(map(repr, allowed))})')


# -- config ------------------------------------------------------------------


def model_fields(hf_config: dict) -> tuple[str, dict]:
  """(architecture, model config fields) of a Hugging Face config.json
  (of GPT-2 or BERT: lm.interop.hf_seq2seq maps encoder-decoders)."""
  arch = architecture(hf_config)
  if arch in SEQ2SEQ:
    raise FormatError(f'{arch} is an encoder-decoder: '
                      'lm.interop.hf_seq2seq maps it')
  if arch == 'GPT2LMHeadModel':
    act = hf_config.get('activation_function', 'gelu_new')
    if act not in _GPT2_ACTIVATIONS:
      raise FormatError(f'config.json: activation_function={act!r} is not '
                        f'supported (only {", ".join(_GPT2_ACTIVATIONS)})')
    _require(hf_config, 'scale_attn_weights', (True,), True)
    _require(hf_config, 'scale_attn_by_inverse_layer_idx', (False,), False)
    _require(hf_config, 'add_cross_attention', (False,), False)
    d = _field(hf_config, 'n_embd')
    return arch, dict(
        vocab_size=_field(hf_config, 'vocab_size'),
        num_layers=_field(hf_config, 'n_layer'),
        num_heads=_field(hf_config, 'n_head'), embed_dim=d,
        mlp_dim=hf_config.get('n_inner') or 4 * d,
        max_len=_field(hf_config, 'n_positions'),
        activation=_GPT2_ACTIVATIONS[act],
        norm_eps=float(hf_config.get('layer_norm_epsilon', 1e-5)),
        dropout=float(hf_config.get('resid_pdrop', 0.1)),
        tie_embeddings=bool(hf_config.get('tie_word_embeddings', True)),
        position='learned', norm='layernorm', norm_position='pre',
        use_bias=True, causal=True, embed_norm=False, type_vocab_size=0,
        num_kv_heads=0, qk_norm=False, scaled_init=True)
  _require(hf_config, 'hidden_act', ('gelu',), 'gelu')
  _require(hf_config, 'position_embedding_type', ('absolute',), 'absolute')
  _require(hf_config, 'is_decoder', (False,), False)
  # The masked-LM head's decoder is the token embedding here.
  _require(hf_config, 'tie_word_embeddings', (True,), True)
  _require(hf_config, 'add_cross_attention', (False,), False)
  fields = dict(
      vocab_size=_field(hf_config, 'vocab_size'),
      num_layers=_field(hf_config, 'num_hidden_layers'),
      num_heads=_field(hf_config, 'num_attention_heads'),
      embed_dim=_field(hf_config, 'hidden_size'),
      mlp_dim=_field(hf_config, 'intermediate_size'),
      max_len=_field(hf_config, 'max_position_embeddings'),
      type_vocab_size=_field(hf_config, 'type_vocab_size'),
      norm_eps=float(hf_config.get('layer_norm_eps', 1e-12)),
      dropout=float(hf_config.get('hidden_dropout_prob', 0.1)),
      activation='gelu', position='learned', norm='layernorm',
      norm_position='post', embed_norm=True, use_bias=True, causal=False,
      tie_embeddings=True, num_kv_heads=0, qk_norm=False)
  if fields['type_vocab_size'] < 1:
    raise FormatError('config.json: type_vocab_size must be at least 1')
  if arch == 'BertForSequenceClassification':
    labels = hf_config.get('id2label') or {}
    fields['num_classes'] = int(hf_config.get('num_labels') or len(labels)
                                or 2)
    names = tuple(str(labels.get(str(i), labels.get(i, f'LABEL_{i}')))
                  for i in range(fields['num_classes']))
    if names != tuple(f'LABEL_{i}' for i in range(len(names))):
      fields['class_names'] = names  # Kept, to be written back on export.
  return arch, fields


def hf_config(arch: str, m) -> dict:
  """The config.json of model config `m` (a ConfigDict or dict) as Hugging
  Face's class `arch`; FormatError naming the first option Hugging Face's class lacks."""
  def need(key, allowed, why):
    if m[key] not in allowed:
      raise FormatError(f'model.{key}={m[key]!r} has no Hugging Face '
                        f'equivalent ({why})')
  need('position', ('learned',), 'GPT-2 and BERT learn absolute positions')
  need('norm', ('layernorm',), 'they use LayerNorm')
  need('use_bias', (True,), 'their layers have biases')
  need('qk_norm', (False,), 'they have no query/key norm')
  need('attention_window', (0,), 'they attend to the whole context')
  if m['num_kv_heads'] not in (0, m['num_heads']):
    raise FormatError(f'model.num_kv_heads={m["num_kv_heads"]} has no Hugging '
                      'Face equivalent (GPT-2 and BERT are multi-head: set 0)')
  if arch == 'GPT2LMHeadModel':
    need('norm_position', ('pre',), 'GPT-2 is pre-norm')
    need('activation', ('gelu', 'gelu_tanh', 'relu'),
         'GPT-2 takes gelu, gelu_new or relu')
    need('embed_norm', (False,), 'GPT-2 has no norm on the embeddings')
    need('type_vocab_size', (0,), 'GPT-2 has no token types')
    act = {'gelu': 'gelu', 'gelu_tanh': 'gelu_new', 'relu': 'relu'}
    return {
        'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
        'vocab_size': m['vocab_size'], 'n_positions': m['max_len'],
        'n_embd': m['embed_dim'], 'n_layer': m['num_layers'],
        'n_head': m['num_heads'], 'n_inner': m['mlp_dim'],
        'activation_function': act[m['activation']],
        'layer_norm_epsilon': m['norm_eps'], 'resid_pdrop': m['dropout'],
        'embd_pdrop': m['dropout'], 'attn_pdrop': m['dropout'],
        'tie_word_embeddings': bool(m['tie_embeddings']),
        'scale_attn_weights': True, 'bos_token_id': None,
        'eos_token_id': None}
  need('norm_position', ('post',), 'BERT is post-norm')
  need('embed_norm', (True,), 'BERT normalises the embeddings')
  need('activation', ('gelu',), 'BERT uses exact GELU')
  if m['type_vocab_size'] < 1:
    raise FormatError('model.type_vocab_size=0 has no Hugging Face '
                      'equivalent (BERT has token types: set 2)')
  out = {
      'architectures': [arch],
      'model_type': 'bert', 'vocab_size': m['vocab_size'],
      'hidden_size': m['embed_dim'], 'num_hidden_layers': m['num_layers'],
      'num_attention_heads': m['num_heads'],
      'intermediate_size': m['mlp_dim'], 'hidden_act': 'gelu',
      'max_position_embeddings': m['max_len'],
      'type_vocab_size': m['type_vocab_size'],
      'layer_norm_eps': m['norm_eps'], 'hidden_dropout_prob': m['dropout'],
      'attention_probs_dropout_prob': m['dropout'],
      'position_embedding_type': 'absolute', 'tie_word_embeddings': True}
  if arch == 'BertForSequenceClassification':
    need('pooling', ('cls',), 'BertForSequenceClassification reads the '
         '[CLS] state')
    n = m['num_classes']
    names = list(m['class_names'] if 'class_names' in m else ()) or [
        f'LABEL_{i}' for i in range(n)]
    out.update(num_labels=n,
               id2label={str(i): name for i, name in enumerate(names)},
               label2id={name: i for i, name in enumerate(names)})
  return out


# -- tensors -----------------------------------------------------------------


class Tensors:
  """A state dict, taken from by name with shape checks; what is not taken
  (buffers aside) is reported as unexpected."""

  def __init__(self, tensors: dict[str, np.ndarray], prefix: str = ''):
    self.tensors = tensors
    self.prefix = prefix
    self.taken = set()

  def take(self, name: str, shape: tuple[int, ...], *aliases: str):
    for candidate in (name, *aliases):
      key = self.prefix + candidate
      if key in self.tensors:
        break
    else:
      raise FormatError(f'tensor {self.prefix + name} is missing from the '
                        'checkpoint')
    x = np.asarray(self.tensors[key], np.float32)
    if x.shape != tuple(shape):
      raise FormatError(f'tensor {key} has shape {list(x.shape)}, the config '
                        f'implies {list(shape)}')
    self.taken.add(key)
    return x

  def check_all_taken(self, also_ignore=()):
    left = sorted(k for k in self.tensors if k not in self.taken and
                  not k.endswith(_BUFFERS) and k not in also_ignore)
    if left:
      raise FormatError(f'unexpected tensor {left[0]} in the checkpoint'
                        + (f' (and {len(left) - 1} more)' if len(left) > 1
                           else '') + '; is config.json this checkpoint\'s?')


def _dense(kernel, bias):
  return {'kernel': kernel, 'bias': bias}


def _norm(t: Tensors, name: str, d: int):
  return {'scale': t.take(f'{name}.weight', (d,), f'{name}.gamma'),
          'bias': t.take(f'{name}.bias', (d,), f'{name}.beta')}


def _linear(t: Tensors, name: str, n_in: int, n_out: int):
  """A torch Linear as (kernel [in, out], bias [out])."""
  return (t.take(f'{name}.weight', (n_out, n_in)).T,
          t.take(f'{name}.bias', (n_out,)))


def to_params(arch: str, f: dict, tensors: dict[str, np.ndarray]) -> dict:
  """This project's parameter tree (numpy) from a state dict, for the model
  fields `f` that `model_fields` gave."""
  V, D, F = f['vocab_size'], f['embed_dim'], f['mlp_dim']
  H = f['num_heads']
  K = D // H
  if arch == 'GPT2LMHeadModel':
    # GPT2LMHeadModel saves 'transformer.'; a bare GPT2Model saves none.
    prefix = 'transformer.' if any(k.startswith('transformer.')
                                   for k in tensors) else ''
    t = Tensors(tensors, prefix)
    params = {'wte': t.take('wte.weight', (V, D)),
              'wpe': t.take('wpe.weight', (f['max_len'], D)), 'blocks': {}}
    for i in range(f['num_layers']):
      p = f'h.{i}.'
      qkv_w = t.take(p + 'attn.c_attn.weight', (D, 3 * D))
      qkv_b = t.take(p + 'attn.c_attn.bias', (3 * D,))
      attn = {name: _dense(qkv_w[:, j * D:(j + 1) * D].reshape(D, H, K),
                           qkv_b[j * D:(j + 1) * D].reshape(H, K))
              for j, name in enumerate(('q', 'k', 'v'))}
      attn['out'] = _dense(t.take(p + 'attn.c_proj.weight', (D, D)
                                  ).reshape(H, K, D),
                           t.take(p + 'attn.c_proj.bias', (D,)))
      params['blocks'][i] = {
          'ln1': _norm(t, p + 'ln_1', D), 'attn': attn,
          'ln2': _norm(t, p + 'ln_2', D),
          'mlp': {'up': _dense(t.take(p + 'mlp.c_fc.weight', (D, F)),
                               t.take(p + 'mlp.c_fc.bias', (F,))),
                  'down': _dense(t.take(p + 'mlp.c_proj.weight', (F, D)),
                                 t.take(p + 'mlp.c_proj.bias', (D,)))}}
    params['ln_f'] = _norm(t, 'ln_f', D)
    head = 'lm_head.weight'
    if not f['tie_embeddings']:
      t.prefix = ''
      params['head'] = t.take(head, (V, D))
    t.check_all_taken(also_ignore=(head,))  # A tied head may be saved too.
    return params

  t = Tensors(tensors, 'bert.')
  enc = {'wte': t.take('embeddings.word_embeddings.weight', (V, D)),
         'wpe': t.take('embeddings.position_embeddings.weight',
                       (f['max_len'], D)),
         'wtt': t.take('embeddings.token_type_embeddings.weight',
                       (f['type_vocab_size'], D)),
         'ln_e': _norm(t, 'embeddings.LayerNorm', D), 'blocks': {}}
  for i in range(f['num_layers']):
    p = f'encoder.layer.{i}.'
    attn = {}
    for name, hf in (('q', 'query'), ('k', 'key'), ('v', 'value')):
      w, b = _linear(t, f'{p}attention.self.{hf}', D, D)
      attn[name] = _dense(w.reshape(D, H, K), b.reshape(H, K))
    w, b = _linear(t, p + 'attention.output.dense', D, D)
    attn['out'] = _dense(w.reshape(H, K, D), b)
    enc['blocks'][i] = {
        'attn': attn, 'ln1': _norm(t, p + 'attention.output.LayerNorm', D),
        'mlp': {'up': _dense(*_linear(t, p + 'intermediate.dense', D, F)),
                'down': _dense(*_linear(t, p + 'output.dense', F, D))},
        'ln2': _norm(t, p + 'output.LayerNorm', D)}
  t.prefix = ''
  if arch == 'BertForMaskedLM':
    head = {'transform': _dense(*_linear(t, 'cls.predictions.transform.dense',
                                         D, D)),
            'norm': _norm(t, 'cls.predictions.transform.LayerNorm', D),
            'bias': t.take('cls.predictions.bias', (V,),
                           'cls.predictions.decoder.bias')}
    tied = ('cls.predictions.decoder.weight', 'cls.predictions.decoder.bias')
    # BertForMaskedLM has no pooler; a checkpoint saved from BertModel may.
    pooler = ('bert.pooler.dense.weight', 'bert.pooler.dense.bias')
    t.check_all_taken(also_ignore=tied + pooler)
  else:
    C = f['num_classes']
    head = {'pooler': _dense(*_linear(t, 'bert.pooler.dense', D, D)),
            'out': _dense(*_linear(t, 'classifier', D, C))}
    t.check_all_taken()
  return {'encoder': enc, 'head': head}


def from_params(arch: str, m, params: dict) -> dict[str, np.ndarray]:
  """The state dict (names -> float32 numpy) of parameters `params` (a tree
  of arrays, per-layer layout) of model config `m`; the inverse of
  `to_params`. Tied weights are left out, as `save_pretrained` does."""
  D = m['embed_dim']
  out = {}

  def put(name, x):
    out[name] = np.ascontiguousarray(np.asarray(x, np.float32))

  def norm(name, p):
    put(f'{name}.weight', p['scale'])
    put(f'{name}.bias', p['bias'])

  def linear(name, p):  # kernel [in..., out...] -> torch [out, in].
    k = np.asarray(p['kernel'])
    n_out = int(np.prod(np.shape(p['bias'])))
    put(f'{name}.weight', k.reshape(-1, n_out).T)
    put(f'{name}.bias', np.reshape(p['bias'], -1))

  blocks = params['blocks'] if arch == 'GPT2LMHeadModel' else (
      params['encoder']['blocks'])
  if arch == 'GPT2LMHeadModel':
    put('transformer.wte.weight', params['wte'])
    put('transformer.wpe.weight', params['wpe'])
    for i in sorted(blocks):
      b, p = blocks[i], f'transformer.h.{i}.'
      norm(p + 'ln_1', b['ln1'])
      norm(p + 'ln_2', b['ln2'])
      a = b['attn']
      put(p + 'attn.c_attn.weight', np.concatenate(
          [np.reshape(a[n]['kernel'], (D, D)) for n in 'qkv'], axis=1))
      put(p + 'attn.c_attn.bias', np.concatenate(
          [np.reshape(a[n]['bias'], -1) for n in 'qkv']))
      put(p + 'attn.c_proj.weight', np.reshape(a['out']['kernel'], (D, D)))
      put(p + 'attn.c_proj.bias', a['out']['bias'])
      put(p + 'mlp.c_fc.weight', b['mlp']['up']['kernel'])
      put(p + 'mlp.c_fc.bias', b['mlp']['up']['bias'])
      put(p + 'mlp.c_proj.weight', b['mlp']['down']['kernel'])
      put(p + 'mlp.c_proj.bias', b['mlp']['down']['bias'])
    norm('transformer.ln_f', params['ln_f'])
    if not m['tie_embeddings']:
      put('lm_head.weight', params['head'])
    return out
  enc = params['encoder']
  put('bert.embeddings.word_embeddings.weight', enc['wte'])
  put('bert.embeddings.position_embeddings.weight', enc['wpe'])
  put('bert.embeddings.token_type_embeddings.weight', enc['wtt'])
  norm('bert.embeddings.LayerNorm', enc['ln_e'])
  for i in sorted(blocks):
    b, p = blocks[i], f'bert.encoder.layer.{i}.'
    for n, hf in (('q', 'query'), ('k', 'key'), ('v', 'value')):
      linear(f'{p}attention.self.{hf}', b['attn'][n])
    linear(p + 'attention.output.dense', b['attn']['out'])
    norm(p + 'attention.output.LayerNorm', b['ln1'])
    linear(p + 'intermediate.dense', b['mlp']['up'])
    linear(p + 'output.dense', b['mlp']['down'])
    norm(p + 'output.LayerNorm', b['ln2'])
  head = params['head']
  if arch == 'BertForMaskedLM':
    linear('cls.predictions.transform.dense', head['transform'])
    norm('cls.predictions.transform.LayerNorm', head['norm'])
    put('cls.predictions.bias', head['bias'])
  else:
    linear('bert.pooler.dense', head['pooler'])
    linear('classifier', head['out'])
  return out
