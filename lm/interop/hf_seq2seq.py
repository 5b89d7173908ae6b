"""Hugging Face encoder-decoders <-> this project's `EncoderDecoder`: T5,
BART and Marian.

Pure mappings, as `hf_format`'s for GPT-2 and BERT: a `transformers` state
dict (names -> numpy arrays) plus its config.json, to the model config
fields and parameter tree of `lm.models.encoder_decoder.EncoderDecoder`
(per-layer layout; the shared token embedding sits at decoder.wte), and
back. Which class a run exports to follows from its positions: T5's
relative buckets (t5), BART's learned table (learned), Marian's sinusoids
(sinusoidal).

  T5 (`T5ForConditionalGeneration`: pre-norm RMSNorm without biases, T5's
  bucketed relative bias in each stack (layer 0 holds the table), ReLU or
  v1.1's gated GELU (geglu), a separate head in v1.1):
    shared                                   decoder.wte
    {en,de}coder.block.i.layer.0.SelfAttention.{q,k,v,o}  blocks.i.attn
    ...layer.0.SelfAttention.relative_attention_bias      relative
    ...layer.0.layer_norm / (decoder) layer.1.layer_norm   ln1 / ln_cross
    decoder.block.i.layer.1.EncDecAttention  blocks.i.cross_attn
    ...DenseReluDense.wi (wi_0, wi_1) / wo   mlp.up (up, gate) / down
    last layer's layer_norm                  ln2
    {en,de}coder.final_layer_norm            ln_f
    lm_head (v1.1)                           decoder.head
  T5 does not divide attention logits by sqrt(head width): the query
  kernels are multiplied by it on import (divided on export). A tied T5
  (v1.0) scales the decoder's output by d_model^-0.5 before the head: the
  decoder's final norm scale carries that factor here.

  BART (`BartForConditionalGeneration`) and Marian (`MarianMTModel`):
  post-norm LayerNorm blocks with biases, under model.:
    shared                                   decoder.wte
    {en,de}coder.embed_positions             wpe (BART: rows 2.. (its offset);
                                             Marian: the sinusoid table,
                                             sines then cosines, checked)
    {en,de}coder.layernorm_embedding         ln_e (BART)
    layers.i.self_attn.{q,k,v,out}_proj      blocks.i.attn
    layers.i.self_attn_layer_norm            ln1
    layers.i.encoder_attn / _layer_norm      cross_attn / ln_cross
    layers.i.fc1 / fc2 / final_layer_norm    mlp.up / down / ln2
  `final_logits_bias` must be zeros (as both classes initialise it).
  Embeddings are multiplied by sqrt(d_model) when config.scale_embedding.

PyTorch's Linear weights are [out, in] and are transposed.
"""

from __future__ import annotations

import numpy as np

from lm.interop import hf_format
from lm.interop.hf_format import FormatError
from lm.models import positions as positions_lib

T5 = 'T5ForConditionalGeneration'
BART = 'BartForConditionalGeneration'
MARIAN = 'MarianMTModel'
ARCHITECTURES = (T5, BART, MARIAN)
MODEL_TYPES = {'t5': T5, 'bart': BART, 'marian': MARIAN}

_ACTIVATIONS = {'gelu': 'gelu', 'relu': 'relu', 'gelu_new': 'gelu_tanh',
                'gelu_pytorch_tanh': 'gelu_tanh', 'swish': 'silu',
                'silu': 'silu'}
_T5_FF = {'relu': 'relu', 'gated-gelu': 'geglu'}


def _field(hf: dict, key: str):
  value = hf.get(key)
  if value is None:
    raise FormatError(f'config.json has no {key!r}')
  return value


def _require(hf: dict, key: str, allowed, default, why: str):
  value = hf.get(key, default)
  if value not in allowed:
    raise FormatError(f'config.json: {key}={value!r} is not supported ({why})')


# -- config ------------------------------------------------------------------


def _t5_scales_output(hf: dict) -> bool:
  """Whether T5 multiplies the decoder's output by d_model^-0.5 before the
  head: transformers 5 says so in `scale_decoder_outputs`; before it, a
  tied head was the sign (T5 v1.0 tied and scaled, v1.1 did neither)."""
  return bool(hf.get('scale_decoder_outputs',
                     hf.get('tie_word_embeddings', True)))


def model_fields(arch: str, hf: dict,
                 tensors: dict[str, np.ndarray] | None = None) -> dict:
  """The model config fields of a T5, BART or Marian config.json (and,
  for T5, its state dict: an lm_head unlike the embedding is untied)."""
  common = dict(num_kv_heads=0, qk_norm=False, attention_window=0,
                causal=True, share_embeddings=True, type_vocab_size=0,
                dropout=float(hf.get('dropout', hf.get('dropout_rate', 0.1))))
  if arch == T5:
    ff = hf.get('feed_forward_proj', 'relu')
    if ff not in _T5_FF:
      raise FormatError(f'config.json: feed_forward_proj={ff!r} is not '
                        f'supported (only {", ".join(_T5_FF)})')
    d, heads, d_kv = (_field(hf, k) for k in ('d_model', 'num_heads', 'd_kv'))
    return {**common,
            'vocab_size': _field(hf, 'vocab_size'), 'embed_dim': d,
            'num_layers': _field(hf, 'num_layers'),
            'decoder_layers': hf.get('num_decoder_layers') or
                              hf['num_layers'],
            'num_heads': heads, 'head_width': 0 if heads * d_kv == d else d_kv,
            'mlp_dim': _field(hf, 'd_ff'),
            'max_len': int(hf.get('n_positions') or 512),
            'position': 't5',
            'relative_buckets': int(hf.get(
                'relative_attention_num_buckets', 32)),
            'relative_max_distance': int(hf.get(
                'relative_attention_max_distance', 128)),
            'norm': 'rmsnorm', 'norm_position': 'pre',
            'norm_eps': float(hf.get('layer_norm_epsilon', 1e-6)),
            'activation': _T5_FF[ff], 'use_bias': False,
            'tie_embeddings': _t5_tied(tensors or {}),
            'scale_embeddings': False, 'embed_norm': False}
  why = f'{arch} here is post-norm with one shared, tied embedding'
  _require(hf, 'normalize_before', (False,), False, why)
  _require(hf, 'add_final_layer_norm', (False,), False, why)
  _require(hf, 'tie_word_embeddings', (True,), True, why)
  _require(hf, 'share_encoder_decoder_embeddings', (True,), True, why)
  act = hf.get('activation_function', 'gelu')
  if act not in _ACTIVATIONS:
    raise FormatError(f'config.json: activation_function={act!r} is not '
                      f'supported (only {", ".join(_ACTIVATIONS)})')
  for enc, dec in (('encoder_attention_heads', 'decoder_attention_heads'),
                   ('encoder_ffn_dim', 'decoder_ffn_dim')):
    if _field(hf, enc) != _field(hf, dec):
      raise FormatError(f'config.json: {enc}={hf[enc]} and {dec}={hf[dec]} '
                        'differ; the encoder and decoder here share them')
  return {**common,
          'vocab_size': _field(hf, 'vocab_size'),
          'embed_dim': _field(hf, 'd_model'),
          'num_layers': _field(hf, 'encoder_layers'),
          'decoder_layers': _field(hf, 'decoder_layers'),
          'num_heads': hf['encoder_attention_heads'], 'head_width': 0,
          'mlp_dim': hf['encoder_ffn_dim'],
          'max_len': _field(hf, 'max_position_embeddings'),
          'position': 'learned' if arch == BART else 'sinusoidal',
          'sinusoidal_layout': 'concat', 'norm': 'layernorm',
          'norm_position': 'post', 'norm_eps': 1e-5,
          'activation': _ACTIVATIONS[act], 'use_bias': True,
          'tie_embeddings': True,
          'scale_embeddings': bool(hf.get('scale_embedding', False)),
          'embed_norm': arch == BART}


def _t5_tied(tensors: dict[str, np.ndarray]) -> bool:
  """Whether a T5 state dict's head is its embedding (transformers 5
  always ties T5's, and saves no lm_head; a v1.1 checkpoint has its own)."""
  head, shared = tensors.get('lm_head.weight'), tensors.get('shared.weight')
  return head is None or (shared is not None and np.array_equal(
      np.asarray(head, np.float32), np.asarray(shared, np.float32)))


def architecture_of(m) -> str:
  """The class an encoder-decoder of model config `m` exports to."""
  by_position = {'t5': T5, 'learned': BART, 'sinusoidal': MARIAN}
  if m['position'] not in by_position:
    raise FormatError(
        f'model.position={m["position"]} has no Hugging Face encoder-decoder '
        'equivalent (T5: t5, BART: learned, Marian: sinusoidal)')
  return by_position[m['position']]


def hf_config(arch: str, m, ids: dict[str, int]) -> dict:
  """The config.json of model config `m` as class `arch`; `ids` the
  tokenizer's special ids ('bos' is the decoder's start token). FormatError
  names the first option the class lacks."""
  def need(key, allowed, why):
    if m[key] not in allowed:
      raise FormatError(f'model.{key}={m[key]!r} has no {arch} equivalent '
                        f'({why})')
  need('num_kv_heads', (0, m['num_heads']), 'it is multi-head: set 0')
  need('qk_norm', (False,), 'it has no query/key norm')
  need('attention_window', (0,), 'it attends to the whole context')
  need('share_embeddings', (True,), 'encoder and decoder share one '
       'embedding')
  decoder_layers = m['decoder_layers'] or m['num_layers']
  tokens = {'pad_token_id': ids.get('pad'), 'eos_token_id': ids.get('eos'),
            'decoder_start_token_id': ids.get('bos')}
  if arch == T5:
    need('norm', ('rmsnorm',), 'T5 uses RMSNorm')
    need('norm_position', ('pre',), 'T5 is pre-norm')
    need('use_bias', (False,), 'T5 has no biases')
    need('activation', tuple(_T5_FF.values()), 'T5 takes relu or gated-gelu '
         '(geglu)')
    need('scale_embeddings', (False,), 'T5 reads embeddings unscaled')
    need('embed_norm', (False,), 'T5 has no norm on the embeddings')
    K = m['head_width'] or m['embed_dim'] // m['num_heads']
    ff = {v: k for k, v in _T5_FF.items()}[m['activation']]
    return {'architectures': [T5], 'model_type': 't5',
            'vocab_size': m['vocab_size'], 'd_model': m['embed_dim'],
            'd_kv': K, 'd_ff': m['mlp_dim'], 'num_layers': m['num_layers'],
            'num_decoder_layers': decoder_layers,
            'num_heads': m['num_heads'],
            'relative_attention_num_buckets': m['relative_buckets'],
            'relative_attention_max_distance': m['relative_max_distance'],
            'layer_norm_epsilon': m['norm_eps'], 'dropout_rate': m['dropout'],
            'feed_forward_proj': ff,
            # A tied head is exported scaled (from_params undoes the fold),
            # which every transformers version reads the same way.
            'tie_word_embeddings': bool(m['tie_embeddings']),
            'scale_decoder_outputs': bool(m['tie_embeddings']),
            'is_encoder_decoder': True, 'n_positions': m['max_len'],
            **tokens}
  need('norm', ('layernorm',), f'{arch} uses LayerNorm')
  need('norm_position', ('post',), f'{arch} is post-norm')
  need('use_bias', (True,), f'{arch} has biases')
  need('tie_embeddings', (True,), f'{arch} ties its head to the embedding')
  need('embed_norm', (arch == BART,), 'BART normalises the embeddings, '
       'Marian does not')
  if arch == MARIAN:
    need('sinusoidal_layout', ('concat',), 'Marian lays out the sines, then '
         'the cosines')
  act = {'gelu': 'gelu', 'relu': 'relu', 'gelu_tanh': 'gelu_new',
         'silu': 'swish'}
  need('activation', tuple(act), 'it takes gelu, relu, gelu_new or swish')
  return {'architectures': [arch],
          'model_type': 'bart' if arch == BART else 'marian',
          'vocab_size': m['vocab_size'], 'd_model': m['embed_dim'],
          'encoder_layers': m['num_layers'], 'decoder_layers': decoder_layers,
          'encoder_attention_heads': m['num_heads'],
          'decoder_attention_heads': m['num_heads'],
          'encoder_ffn_dim': m['mlp_dim'], 'decoder_ffn_dim': m['mlp_dim'],
          'max_position_embeddings': m['max_len'],
          'activation_function': act[m['activation']],
          'scale_embedding': bool(m['scale_embeddings']),
          'dropout': m['dropout'], 'attention_dropout': 0.0,
          'activation_dropout': 0.0, 'normalize_before': False,
          'add_final_layer_norm': False, 'tie_word_embeddings': True,
          'share_encoder_decoder_embeddings': True,
          'is_encoder_decoder': True, 'forced_eos_token_id': None,
          **tokens}


# -- tensors -----------------------------------------------------------------


class _Tensors(hf_format.Tensors):
  """`hf_format.Tensors` (taken by name, shapes checked, leftovers
  reported), and the tied copies an encoder-decoder may save."""

  def tied(self, names, value: np.ndarray) -> None:
    """Copies of a tied tensor, taken if present (and equal to it)."""
    for name in names:
      if name in self.tensors:
        if not np.array_equal(np.asarray(self.tensors[name], np.float32),
                              value):
          raise FormatError(f'tensor {name} should equal its tied tensor; '
                            'this model ties them')
        self.taken.add(name)


def _attention(t, name, D, H, K, bias, q_scale=1.0):
  """A torch attention's {q, k, v, out} Linear layers (names from `name`
  with 'q', ...) as the project's Dense kernels."""
  out = {}
  for ours, theirs in (('q', 'q'), ('k', 'k'), ('v', 'v')):
    w = t.take(name(theirs) + '.weight', (H * K, D)).T.reshape(D, H, K)
    p = {'kernel': w * (q_scale if ours == 'q' else 1.0)}
    if bias:
      p['bias'] = t.take(name(theirs) + '.bias', (H * K,)).reshape(H, K) * (
          q_scale if ours == 'q' else 1.0)
    out[ours] = p
  p = {'kernel': t.take(name('o') + '.weight', (D, H * K)).T.reshape(H, K, D)}
  if bias:
    p['bias'] = t.take(name('o') + '.bias', (D,))
  out['out'] = p
  return out


def _linear(t, name, n_in, n_out, bias=True):
  p = {'kernel': t.take(name + '.weight', (n_out, n_in)).T}
  if bias:
    p['bias'] = t.take(name + '.bias', (n_out,))
  return p


def _norm(t, name, D, bias=True):
  p = {'scale': t.take(name + '.weight', (D,))}
  if bias:
    p['bias'] = t.take(name + '.bias', (D,))
  return p


def _sizes(f):
  D, H = f['embed_dim'], f['num_heads']
  return D, H, f['head_width'] or D // H, f['mlp_dim'], f['vocab_size']


def to_params(arch: str, f: dict, tensors: dict[str, np.ndarray],
              hf: dict) -> dict:
  """The EncoderDecoder parameter tree (numpy, per-layer) of a state dict
  and config.json `hf`, for the model fields `f` that `model_fields`
  gave."""
  t = _Tensors(tensors)
  D, H, K, F, V = _sizes(f)
  layers = {'encoder': f['num_layers'],
            'decoder': f['decoder_layers'] or f['num_layers']}
  if arch == T5:
    return _t5_params(t, f, D, H, K, F, V, layers, _t5_scales_output(hf))
  pre = 'model.'
  wte = t.take(pre + 'shared.weight', (V, D),
               pre + 'encoder.embed_tokens.weight')
  t.tied([pre + 'encoder.embed_tokens.weight',
          pre + 'decoder.embed_tokens.weight', 'lm_head.weight'], wte)
  bias = t.take('final_logits_bias', (1, V))
  if np.any(bias):
    raise FormatError('final_logits_bias is not zero; a bias on the output '
                      'logits is not supported')
  params = {}
  for stack in ('encoder', 'decoder'):
    p, s = {}, f'{pre}{stack}.'
    if arch == BART:  # Learned rows, read from position + 2 (BART's offset).
      table = t.take(s + 'embed_positions.weight', (f['max_len'] + 2, D))
      p['wpe'] = table[2:]
      p['ln_e'] = _norm(t, s + 'layernorm_embedding', D)
    else:
      name = s + 'embed_positions.weight'
      if name in t.tensors:
        want = np.asarray(positions_lib.sinusoidal(
            np.arange(f['max_len'])[None], D, layout='concat')[0])
        got = t.take(name, (f['max_len'], D))
        if not np.allclose(got, want, atol=1e-4):
          raise FormatError(f'tensor {name} is not the sinusoidal table '
                            '(sines, then cosines) Marian computes')
    p['blocks'] = {}
    for i in range(layers[stack]):
      b = f'{s}layers.{i}.'
      block = {
          'attn': _attention(t, lambda n, b=b: b + 'self_attn.' + (
              'out' if n == 'o' else n) + '_proj', D, H, K, True),
          'ln1': _norm(t, b + 'self_attn_layer_norm', D),
          'mlp': {'up': _linear(t, b + 'fc1', D, F),
                  'down': _linear(t, b + 'fc2', F, D)},
          'ln2': _norm(t, b + 'final_layer_norm', D)}
      if stack == 'decoder':
        block['cross_attn'] = _attention(t, lambda n, b=b: b + (
            'encoder_attn.') + ('out' if n == 'o' else n) + '_proj', D, H, K,
                                         True)
        block['ln_cross'] = _norm(t, b + 'encoder_attn_layer_norm', D)
      p['blocks'][i] = block
    params[stack] = p
  params['decoder']['wte'] = wte
  # Marian's tables are computed, not parameters: taken only to be checked.
  t.taken.update(k for k in t.tensors if k.endswith('embed_positions.weight'))
  t.check_all_taken()
  return params


def _t5_params(t, f, D, H, K, F, V, layers, scaled: bool) -> dict:
  wte = t.take('shared.weight', (V, D), 'encoder.embed_tokens.weight')
  t.tied(['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'],
         wte)
  tied = f['tie_embeddings']
  if tied:
    t.tied(['lm_head.weight'], wte)
  q_scale = float(np.sqrt(K))  # T5 does not scale its logits.
  gated = f['activation'] == 'geglu'
  params = {}
  for stack in ('encoder', 'decoder'):
    p = {'blocks': {}}
    p['relative'] = t.take(
        f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.'
        'weight', (f['relative_buckets'], H))
    for i in range(layers[stack]):
      b = f'{stack}.block.{i}.layer.'
      ff = f'{b}{2 if stack == "decoder" else 1}.'
      block = {'attn': _attention(t, lambda n, b=b: f'{b}0.SelfAttention.{n}',
                                  D, H, K, False, q_scale),
               'ln1': _norm(t, b + '0.layer_norm', D, False),
               'ln2': _norm(t, ff + 'layer_norm', D, False)}
      if gated:
        block['mlp'] = {
            'up': _linear(t, ff + 'DenseReluDense.wi_0', D, F, False),
            'gate': _linear(t, ff + 'DenseReluDense.wi_1', D, F, False),
            'down': _linear(t, ff + 'DenseReluDense.wo', F, D, False)}
      else:
        block['mlp'] = {
            'up': _linear(t, ff + 'DenseReluDense.wi', D, F, False),
            'down': _linear(t, ff + 'DenseReluDense.wo', F, D, False)}
      if stack == 'decoder':
        block['cross_attn'] = _attention(
            t, lambda n, b=b: f'{b}1.EncDecAttention.{n}', D, H, K, False,
            q_scale)
        block['ln_cross'] = _norm(t, b + '1.layer_norm', D, False)
      p['blocks'][i] = block
    p['ln_f'] = _norm(t, f'{stack}.final_layer_norm', D, False)
    params[stack] = p
  params['decoder']['wte'] = wte
  if scaled:  # The decoder's output times d_model^-0.5, folded in its norm.
    params['decoder']['ln_f']['scale'] = (
        params['decoder']['ln_f']['scale'] * D**-0.5)
  if not tied:
    params['decoder']['head'] = t.take('lm_head.weight', (V, D))
  t.check_all_taken()
  return params


def from_params(arch: str, m, params: dict) -> dict[str, np.ndarray]:
  """The state dict of EncoderDecoder parameters `params` (per-layer) of
  model config `m`; the inverse of `to_params`. Tied copies are left out,
  as `save_pretrained` does."""
  out = {}
  D = m['embed_dim']
  H = m['num_heads']
  K = m['head_width'] or D // H

  def put(name, x):
    out[name] = np.ascontiguousarray(np.asarray(x, np.float32))

  def linear(name, p):  # kernel [in, out] -> torch [out, in].
    put(name + '.weight', np.asarray(p['kernel']).T)
    if 'bias' in p:
      put(name + '.bias', np.reshape(p['bias'], -1))

  def attention(name, a, q_scale=1.0):
    for ours in ('q', 'k', 'v'):
      p = dict(a[ours])
      p['kernel'] = np.asarray(p['kernel']).reshape(D, H * K) / (
          q_scale if ours == 'q' else 1.0)
      if 'bias' in p:
        p['bias'] = np.asarray(p['bias']) / (q_scale if ours == 'q' else 1.0)
      linear(name(ours), p)
    linear(name('o'), {**a['out'], 'kernel': np.asarray(
        a['out']['kernel']).reshape(H * K, D)})

  def norm(name, p):
    put(name + '.weight', p['scale'])
    if 'bias' in p:
      put(name + '.bias', p['bias'])

  wte = params['decoder']['wte']
  if arch == T5:
    put('shared.weight', wte)
    q_scale = float(np.sqrt(K))
    for stack in ('encoder', 'decoder'):
      p = params[stack]
      put(f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.'
          'weight', p['relative'])
      for i in sorted(p['blocks']):
        b, blk = f'{stack}.block.{i}.layer.', p['blocks'][i]
        ff = f'{b}{2 if stack == "decoder" else 1}.'
        attention(lambda n, b=b: f'{b}0.SelfAttention.{n}', blk['attn'],
                  q_scale)
        norm(b + '0.layer_norm', blk['ln1'])
        if stack == 'decoder':
          attention(lambda n, b=b: f'{b}1.EncDecAttention.{n}',
                    blk['cross_attn'], q_scale)
          norm(b + '1.layer_norm', blk['ln_cross'])
        mlp = blk['mlp']
        if 'gate' in mlp:
          linear(ff + 'DenseReluDense.wi_0', mlp['up'])
          linear(ff + 'DenseReluDense.wi_1', mlp['gate'])
        else:
          linear(ff + 'DenseReluDense.wi', mlp['up'])
        linear(ff + 'DenseReluDense.wo', mlp['down'])
        norm(ff + 'layer_norm', blk['ln2'])
      scale = np.asarray(p['ln_f']['scale'])
      if stack == 'decoder' and m['tie_embeddings']:
        scale = scale * D**0.5
      put(f'{stack}.final_layer_norm.weight', scale)
    if not m['tie_embeddings']:
      put('lm_head.weight', params['decoder']['head'])
    return out
  pre = 'model.'
  put(pre + 'shared.weight', wte)
  put('final_logits_bias', np.zeros((1, m['vocab_size']), np.float32))
  for stack in ('encoder', 'decoder'):
    p, s = params[stack], f'{pre}{stack}.'
    if arch == BART:
      put(s + 'embed_positions.weight', np.concatenate(
          [np.zeros((2, D), np.float32), np.asarray(p['wpe'])]))
      norm(s + 'layernorm_embedding', p['ln_e'])
    else:
      put(s + 'embed_positions.weight', positions_lib.sinusoidal(
          np.arange(m['max_len'])[None], D, layout='concat')[0])
    for i in sorted(p['blocks']):
      b, blk = f'{s}layers.{i}.', p['blocks'][i]
      attention(lambda n, b=b: b + 'self_attn.' + (
          'out' if n == 'o' else n) + '_proj', blk['attn'])
      norm(b + 'self_attn_layer_norm', blk['ln1'])
      if stack == 'decoder':
        attention(lambda n, b=b: b + 'encoder_attn.' + (
            'out' if n == 'o' else n) + '_proj', blk['cross_attn'])
        norm(b + 'encoder_attn_layer_norm', blk['ln_cross'])
      linear(b + 'fc1', blk['mlp']['up'])
      linear(b + 'fc2', blk['mlp']['down'])
      norm(b + 'final_layer_norm', blk['ln2'])
  return out
