"""T5, BART and Marian in and out against `transformers` (PyTorch, CPU,
fp32): logits after import and after an export round trip, greedy and beam
generation token for token, the mapped config, and one-line refusals."""

import json
import os

from flax import nnx
import hf_fixtures
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import tasks
from lm.data import tokenizer as tokenizer_lib
from lm.eval import translator as translator_lib
from lm.interop import hf_format
from lm.interop import hf_io
from lm.interop import hf_seq2seq
from lm.train import workdir as workdir_lib

TOL = 1e-4
T5, BART, MARIAN = hf_seq2seq.ARCHITECTURES


def ours(run_dir, source, mask, target):
  """This project's logits of an imported (or any) encoder-decoder run."""
  c, params = hf_io.load_run_params(run_dir)
  graphdef, _ = tasks.get(c).abstract()
  model = nnx.merge(graphdef, params)
  return np.asarray(model(jnp.asarray(source * mask), jnp.asarray(target),
                          source_segment_ids_BxM=jnp.asarray(mask)))


def theirs(model, source, mask, target):
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    return model(input_ids=torch.as_tensor(source),
                 attention_mask=torch.as_tensor(mask),
                 decoder_input_ids=torch.as_tensor(target)).logits.numpy()


def inputs(vocab: int):
  rng = np.random.RandomState(0)
  source = rng.randint(3, vocab, (2, 11))
  mask = np.ones_like(source)
  mask[1, 7:] = 0  # The second source is padded.
  return source, mask, rng.randint(3, vocab, (2, 9))


@pytest.mark.parametrize('arch,config', [
    (T5, {}),  # T5 v1.0: ReLU, tied head (scaled by d_model^-0.5).
    # T5 v1.1: gated GELU, its own head; odd sizes, heads not D / H wide.
    (T5, {'feed_forward_proj': 'gated-gelu', 'tie_word_embeddings': False,
          'd_model': 30, 'num_heads': 3, 'd_kv': 7, 'd_ff': 37,
          'vocab_size': 501, 'num_decoder_layers': 3}),
    (BART, {'activation_function': 'gelu'}),
    (BART, {'d_model': 36, 'encoder_attention_heads': 3,
            'decoder_attention_heads': 3, 'encoder_ffn_dim': 50,
            'decoder_ffn_dim': 50, 'vocab_size': 503, 'decoder_layers': 1,
            'scale_embedding': True, 'activation_function': 'relu'}),
    (MARIAN, {'activation_function': 'swish', 'scale_embedding': True,
              'd_model': 36, 'encoder_attention_heads': 3,
              'decoder_attention_heads': 3, 'vocab_size': 499}),
], ids=['t5', 't5_v1_1_odd', 'bart', 'bart_odd', 'marian_odd'])
def test_logits_parity_after_import_and_export(tmp_path, arch, config):
  import transformers  # pylint: disable=g-import-not-at-top
  model, _, folder = hf_fixtures.seq2seq(tmp_path / 'hf', arch, **config)
  run_dir, out = str(tmp_path / 'run'), str(tmp_path / 'out')
  assert 'as a task=translation run' in hf_io.from_hf(folder, run_dir)
  batch = inputs(config.get('vocab_size', 500))
  want = theirs(model, *batch)
  assert np.abs(ours(run_dir, *batch) - want).max() < TOL
  hf_io.to_hf(run_dir, out)
  back = getattr(transformers, arch).from_pretrained(out).eval()
  assert np.abs(theirs(back, *batch) - want).max() < TOL
  assert os.path.exists(os.path.join(out, 'tokenizer.json'))


def test_the_mapped_config_of_each_class(tmp_path):
  _, _, folder = hf_fixtures.seq2seq(
      tmp_path / 't5', T5, feed_forward_proj='gated-gelu', d_kv=7,
      tie_word_embeddings=False)
  hf_io.from_hf(folder, str(tmp_path / 'r1'))
  m = workdir_lib.saved_config(str(tmp_path / 'r1')).model
  assert (m.position, m.norm, m.norm_position, m.activation, m.use_bias,
          m.head_width, m.tie_embeddings) == ('t5', 'rmsnorm', 'pre', 'geglu',
                                              False, 7, False)
  _, _, folder = hf_fixtures.seq2seq(tmp_path / 'marian', MARIAN,
                                     activation_function='swish',
                                     scale_embedding=True)
  hf_io.from_hf(folder, str(tmp_path / 'r2'))
  c = workdir_lib.saved_config(str(tmp_path / 'r2'))
  assert (c.model.position, c.model.sinusoidal_layout, c.model.activation,
          c.model.scale_embeddings, c.model.norm_position,
          c.data.tokenizer) == ('sinusoidal', 'concat', 'silu', True, 'post',
                                'hf')
  # The decoder starts from <pad> (Marian, T5) or </s> (BART).
  ids = tokenizer_lib.load(str(tmp_path / 'r2')).special_ids
  assert ids['bos'] == ids['pad'] != ids['eos']


def _generate_both(run_dir, model, tok, arch, beams, alpha, min_len=0,
                   no_repeat=0):
  """(transformers' outputs, ours) for 16 toy sources, each cut after EOS."""
  import torch  # pylint: disable=g-import-not-at-top
  c, params = hf_io.load_run_params(run_dir)
  task = tasks.get(c)
  graphdef, _ = task.abstract()
  rng = np.random.default_rng(5)
  first = len(hf_fixtures.SEQ2SEQ_SPECIALS[arch]) + 5
  sources, targets = hf_fixtures.reversal_batch(rng, 16, 0, first)
  eos, pad = tok.eos_token_id, tok.pad_token_id
  start = model.config.decoder_start_token_id
  src, mask = np.full((16, 9), pad), np.zeros((16, 9), np.int64)
  rows = np.zeros((16, c.model.max_len), np.int32)
  for r, s in enumerate(sources):
    src[r, :len(s) + 1] = rows[r, :len(s) + 1] = s + [eos]
    mask[r, :len(s) + 1] = 1
  # The same rules: no early-stopping heuristic (ours stops exactly), the
  # start token never generated (unless it is EOS).
  kw = dict(num_beams=beams, do_sample=False, max_new_tokens=12,
            length_penalty=alpha, early_stopping='never',
            min_new_tokens=min_len, no_repeat_ngram_size=no_repeat)
  if start != eos:
    kw['suppress_tokens'] = [start]
  with torch.no_grad():
    hf_out = model.generate(input_ids=torch.as_tensor(src),
                            attention_mask=torch.as_tensor(mask),
                            **kw).numpy()[:, 1:]
  translator = translator_lib.Translator(
      graphdef, task.model_cfg, tokenizer_lib.load(run_dir),
      translator_lib.Settings(beam_size=beams, alpha=alpha, penalty='hf',
                              max_len=12, min_len=min_len,
                              no_repeat_ngram=no_repeat), batch_size=16)
  mine = translator.decode_rows(params, rows, jax.random.key(0))

  def cut(row):
    row = [int(x) for x in row]
    return row[:row.index(eos) + 1] if eos in row else row
  return ([cut(r) for r in hf_out], [cut(r) for r in mine],
          [t + [eos] for t in targets])


@pytest.mark.parametrize('arch', [T5, BART, MARIAN])
def test_greedy_and_beam_search_give_transformers_tokens(tmp_path, arch):
  config = ({'dropout_rate': 0.0} if arch == T5 else {'dropout': 0.0})
  if arch == MARIAN:  # As OPUS-MT's: embeddings at the sinusoids' scale;
    # it learns the task slower than BART and T5 at lr 1e-3.
    config.update(scale_embedding=True, activation_function='swish',
                  lr=3e-3)
  model, tok, folder = hf_fixtures.trained_seq2seq(tmp_path / 'hf', arch,
                                                   **config)
  run_dir = str(tmp_path / 'run')
  hf_io.from_hf(folder, run_dir)
  for beams, alpha in ((1, 1.0), (4, 1.0), (4, 0.6)):
    hf_out, mine, want = _generate_both(run_dir, model, tok, arch, beams,
                                        alpha)
    assert mine == hf_out, (beams, alpha)
    # Trained: most reversals right, so the scores are no near-ties.
    assert sum(a == b for a, b in zip(mine, want)) >= 12
  # And with a minimum length (min_new_tokens), past every reversal's end,
  # and n-gram blocking (no_repeat_ngram_size), which changes outputs.
  hf_out, mine, _ = _generate_both(run_dir, model, tok, arch, 4, 1.0,
                                   min_len=9)
  assert mine == hf_out and min(map(len, mine)) == 10
  for beams, n in ((1, 1), (4, 1), (4, 2)):
    hf_out, mine, want = _generate_both(run_dir, model, tok, arch, beams, 1.0,
                                        min_len=9, no_repeat=n)
    assert mine == hf_out, (beams, n)
    assert all(len(set(zip(*[r[k:] for k in range(n)]))) ==
               len(r) - n + 1 for r in mine)


def _folder(tmp_path, arch=BART, **config):
  _, _, folder = hf_fixtures.seq2seq(tmp_path / 'hf', arch, **config)
  return folder


def _edit(folder, config=None, tensors=None):
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  if config:
    path = os.path.join(folder, 'config.json')
    with open(path) as f:
      data = json.load(f)
    data.update(config)
    with open(path, 'w') as f:
      json.dump(data, f)
  if tensors:
    path = os.path.join(folder, 'model.safetensors')
    data = load_file(path)
    tensors(data)
    save_file(data, path, metadata={'format': 'pt'})
  return folder


@pytest.mark.parametrize('arch,config,tensors,message', [
    (T5, {'feed_forward_proj': 'gated-silu'}, None,
     "feed_forward_proj='gated-silu' is not supported"),
    (BART, {'normalize_before': True}, None,
     'normalize_before=True is not supported'),
    (BART, {'decoder_ffn_dim': 40}, None,
     'encoder_ffn_dim=48 and decoder_ffn_dim=40 differ'),
    (BART, {'activation_function': 'tanh'}, None,
     "activation_function='tanh' is not supported"),
    (BART, None, lambda t: t.__setitem__('final_logits_bias',
                                         t['final_logits_bias'] + 1),
     'final_logits_bias is not zero'),
    (BART, None, lambda t: t.pop('model.decoder.layers.1.fc2.weight'),
     'tensor model.decoder.layers.1.fc2.weight is missing'),
    (MARIAN, None, lambda t: t.__setitem__('model.extra.weight',
                                           np.zeros(3, np.float32)),
     'unexpected tensor model.extra.weight'),
    (T5, None, lambda t: t.__setitem__(
        'encoder.block.0.layer.1.DenseReluDense.wi.weight',
        np.zeros((47, 32), np.float32)),
     r'encoder.block.0.layer.1.DenseReluDense.wi.weight has shape \[47, 32\]'
     r', the config implies \[48, 32\]'),
    (MARIAN, None, lambda t: t.__setitem__(  # (Saved by older versions.)
        'model.encoder.embed_positions.weight', np.ones((40, 32), np.float32)),
     'is not the sinusoidal table'),
], ids=['t5_ff', 'prenorm_bart', 'ffn_widths', 'activation', 'logits_bias',
        'missing', 'extra', 'misshapen', 'marian_table'])
def test_import_refuses_what_it_cannot_map(tmp_path, arch, config, tensors,
                                           message):
  folder = _edit(_folder(tmp_path, arch), config, tensors)
  with pytest.raises(hf_format.FormatError, match=message):
    hf_io.from_hf(folder, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


@pytest.mark.parametrize('change,message', [
    ({'position': 'rope'}, 'model.position=rope has no Hugging Face '
     'encoder-decoder equivalent'),
    ({'sinusoidal_layout': 'interleaved'}, "model.sinusoidal_layout="
     "'interleaved' has no MarianMTModel equivalent"),
    ({'norm_position': 'pre'}, "model.norm_position='pre' has no "
     'MarianMTModel equivalent'),
])
def test_export_names_the_option_the_class_lacks(tmp_path, change, message):
  hf_io.from_hf(_folder(tmp_path, MARIAN), str(tmp_path / 'run'))
  path = tmp_path / 'run' / 'config.json'
  config = json.loads(path.read_text())
  config['model'].update(change)
  path.write_text(json.dumps(config))
  with pytest.raises(hf_format.FormatError, match=message):
    hf_io.to_hf(str(tmp_path / 'run'), str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')
