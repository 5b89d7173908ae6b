"""The GPT-2/BERT tensor mapping alone (numpy, no transformers): inverse
mappings, and the config options each direction refuses."""

import numpy as np
import pytest

from lm import config as config_lib
from lm.interop import hf_format

GPT2 = {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
        'vocab_size': 11, 'n_positions': 7, 'n_embd': 6, 'n_layer': 2,
        'n_head': 2, 'n_inner': 5}
BERT = {'architectures': ['BertForSequenceClassification'],
        'model_type': 'bert', 'vocab_size': 13, 'hidden_size': 6,
        'num_hidden_layers': 2, 'num_attention_heads': 3,
        'intermediate_size': 5, 'max_position_embeddings': 9,
        'type_vocab_size': 2, 'num_labels': 4}


def random_like(tree, rng):
  if isinstance(tree, dict):
    return {k: random_like(v, rng) for k, v in tree.items()}
  return rng.randn(*tree.shape).astype(np.float32)


@pytest.mark.parametrize('hf', [
    GPT2, dict(GPT2, tie_word_embeddings=False), BERT,
    dict(BERT, architectures=['BertForMaskedLM'])],
    ids=['gpt2', 'gpt2_untied', 'bert_classifier', 'bert_mlm'])
def test_mapping_is_inverted_by_its_export(hf):
  arch, fields = hf_format.model_fields(hf)
  m = dict(config_lib.default().model.to_dict(), **fields)
  rng = np.random.RandomState(0)
  # A state dict of the right shapes, from exporting random parameters.
  zeros = hf_format.to_params(arch, fields, _state_dict(arch, fields, m))
  params = random_like(zeros, rng)
  tensors = hf_format.from_params(arch, m, params)
  again = hf_format.to_params(arch, fields, tensors)
  flat_a, flat_b = _flat(params), _flat(again)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)
  # Tied weights are left out, as save_pretrained leaves them out.
  assert ('lm_head.weight' in tensors) == (not fields['tie_embeddings'] and
                                           arch == 'GPT2LMHeadModel')
  assert 'cls.predictions.decoder.weight' not in tensors


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _state_dict(arch, f, m):
  """Zero tensors under every name and shape the export writes."""
  V, D, F, H = f['vocab_size'], f['embed_dim'], f['mlp_dim'], f['num_heads']
  K, L = D // H, f['max_len']
  block = {'ln1': {'scale': (D,), 'bias': (D,)},
           'ln2': {'scale': (D,), 'bias': (D,)},
           'attn': {**{n: {'kernel': (D, H, K), 'bias': (H, K)}
                       for n in 'qkv'},
                    'out': {'kernel': (H, K, D), 'bias': (D,)}},
           'mlp': {'up': {'kernel': (D, F), 'bias': (F,)},
                   'down': {'kernel': (F, D), 'bias': (D,)}}}
  body = {'wte': (V, D), 'wpe': (L, D),
          'blocks': {i: block for i in range(f['num_layers'])}}
  if arch == 'GPT2LMHeadModel':
    shapes = {**body, 'ln_f': {'scale': (D,), 'bias': (D,)}}
    if not f['tie_embeddings']:
      shapes['head'] = (V, D)
  else:
    body.update(wtt=(f['type_vocab_size'], D),
                ln_e={'scale': (D,), 'bias': (D,)})
    head = ({'transform': {'kernel': (D, D), 'bias': (D,)},
             'norm': {'scale': (D,), 'bias': (D,)}, 'bias': (V,)}
            if arch == 'BertForMaskedLM' else
            {'pooler': {'kernel': (D, D), 'bias': (D,)},
             'out': {'kernel': (D, f['num_classes']),
                     'bias': (f['num_classes'],)}})
    shapes = {'encoder': body, 'head': head}

  def zeros(t):
    return ({k: zeros(v) for k, v in t.items()} if isinstance(t, dict)
            else np.zeros(t, np.float32))
  return hf_format.from_params(arch, m, zeros(shapes))


def test_import_maps_the_config_fields():
  arch, f = hf_format.model_fields(dict(GPT2, activation_function='gelu_new',
                                        layer_norm_epsilon=1e-6))
  assert arch == 'GPT2LMHeadModel'
  assert (f['activation'], f['norm_eps'], f['mlp_dim'], f['max_len']) == (
      'gelu_tanh', 1e-6, 5, 7)
  assert hf_format.model_fields(dict(GPT2, n_inner=None))[1]['mlp_dim'] == 24
  arch, f = hf_format.model_fields(BERT)
  assert (arch, f['num_classes'], f['norm_eps'], f['norm_position'],
          f['embed_norm']) == ('BertForSequenceClassification', 4, 1e-12,
                               'post', True)


@pytest.mark.parametrize('hf,message', [
    (dict(GPT2, architectures=['MBartForConditionalGeneration']),
     "'MBartForConditionalGeneration' is not supported"),
    (dict(GPT2, scale_attn_by_inverse_layer_idx=True),
     'scale_attn_by_inverse_layer_idx=True is not supported'),
    (dict(GPT2, activation_function='silu'),
     "activation_function='silu' is not supported"),
    (dict(BERT, hidden_act='relu'), "hidden_act='relu' is not supported"),
    (dict(BERT, tie_word_embeddings=False),
     'tie_word_embeddings=False is not supported'),
    (dict(BERT, position_embedding_type='relative_key'),
     "position_embedding_type='relative_key' is not supported"),
    ({k: v for k, v in GPT2.items() if k != 'n_embd'},
     "config.json has no 'n_embd'"),
])
def test_import_refuses_unsupported_configs(hf, message):
  with pytest.raises(hf_format.FormatError, match=message):
    hf_format.model_fields(hf)


@pytest.mark.parametrize('arch,change,message', [
    ('GPT2LMHeadModel', {
        'position': 'rope'
    }, "model.position='rope'"),
    ('GPT2LMHeadModel', {
        'norm': 'rmsnorm'
    }, "model.norm='rmsnorm'"),
    ('GPT2LMHeadModel', {
        'activation': 'swiglu'
    }, "model.activation='swiglu'"),
    ('GPT2LMHeadModel', {
        'num_kv_heads': 1
    }, 'model.num_kv_heads=1'),
    ('GPT2LMHeadModel', {
        'norm_position': 'post'
    }, "model.norm_position='post'"),
    ('BertForMaskedLM', {
        'norm_position': 'pre',
        'embed_norm': True,
        'type_vocab_size': 2
    }, "model.norm_position='pre'"),
    ('BertForMaskedLM', {
        'norm_position': 'post',
        'embed_norm': False,
        'type_vocab_size': 2
    }, 'model.embed_norm=False'),
    ('BertForSequenceClassification', {
        'norm_position': 'post',
        'embed_norm': True
    }, 'model.type_vocab_size=0'),
    ('BertForSequenceClassification', {
        'norm_position': 'post',
        'embed_norm': True,
        'type_vocab_size': 2,
        'pooling': 'mean'
    }, "model.pooling='mean'"),
])
def test_export_names_the_unsupported_option(arch, change, message):
  m = dict(config_lib.default().model.to_dict(), mlp_dim=512, **change)
  with pytest.raises(hf_format.FormatError, match=message):
    hf_format.hf_config(arch, m)


def test_export_config_of_supported_models():
  m = dict(config_lib.default().model.to_dict(), mlp_dim=512,
           activation='gelu_tanh', vocab_size=65)
  hf = hf_format.hf_config('GPT2LMHeadModel', m)
  assert (hf['activation_function'], hf['n_inner'], hf['n_positions']) == (
      'gelu_new', 512, 64)
  hf_format.model_fields(hf)  # And it imports again.
  m.update(norm_position='post', embed_norm=True, type_vocab_size=2,
           activation='gelu', causal=False, num_classes=3)
  hf = hf_format.hf_config('BertForSequenceClassification', m)
  assert hf['architectures'] == ['BertForSequenceClassification']
  assert hf_format.model_fields(hf)[1]['num_classes'] == 3
