"""Hugging Face import/export against `transformers` (PyTorch, CPU, fp32):
logits parity after import and after an export round trip, greedy
generation, tokenizers, fine-tuning an imported BERT, and bad folders."""

import json
import os
import shutil

import conftest
from conftest import load_config
from flax import nnx
import hf_fixtures
import jax.numpy as jnp
import numpy as np
import pytest

from lm import tasks
from lm.data import tokenizer as tokenizer_lib
from lm.eval import decode
from lm.interop import hf_format
from lm.interop import hf_io
from lm.train import loop
from lm.train import workdir as workdir_lib

TOL = 1e-4  # Max abs logit difference the issue allows.


def ours(run_dir, ids, **inputs):
  """This project's logits for `ids` from an imported run."""
  c, params = hf_io.load_run_params(run_dir)
  graphdef, _ = tasks.get(c).abstract()
  logits, _ = nnx.merge(graphdef, params)(
      jnp.asarray(ids), **{k: jnp.asarray(v) for k, v in inputs.items()})
  return np.asarray(logits)


def reloaded(out_dir, arch):
  import transformers  # pylint: disable=g-import-not-at-top
  return getattr(transformers, arch).from_pretrained(out_dir).eval()


@pytest.mark.parametrize('config', [
    {},  # 2 layers, 64 wide, vocab 1000, tied head.
    # Odd sizes: vocab 997, 3 heads of 16, MLP 100, untied head, ReLU.
    {'vocab_size': 997, 'n_embd': 48, 'n_head': 3, 'n_inner': 100,
     'n_positions': 40, 'tie_word_embeddings': False,
     'activation_function': 'relu'}], ids=['tied', 'odd_untied'])
def test_gpt2_logits_parity_after_import_and_export(tmp_path, config):
  model, _, folder = hf_fixtures.gpt2(tmp_path / 'hf', **config)
  run_dir, out = str(tmp_path / 'run'), str(tmp_path / 'out')
  print(hf_io.from_hf(folder, run_dir))
  vocab = config.get('vocab_size', 1000)
  ids = np.random.RandomState(0).randint(0, vocab, (2, 37))
  theirs = hf_fixtures.torch_logits(model, ids)
  assert np.abs(ours(run_dir, ids) - theirs).max() < TOL
  saved = workdir_lib.saved_config(run_dir)
  assert saved.model.tie_embeddings == config.get('tie_word_embeddings', True)
  hf_io.to_hf(run_dir, out)
  back = hf_fixtures.torch_logits(reloaded(out, 'GPT2LMHeadModel'), ids)
  assert np.abs(back - theirs).max() < TOL
  assert os.path.exists(os.path.join(out, 'tokenizer.json'))


def test_gpt2_greedy_generation_is_identical(tmp_path):
  model, tok, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  run_dir = str(tmp_path / 'run')
  hf_io.from_hf(folder, run_dir)
  prompt = 'KING RICHARD:\nWhat say'
  ours_tok = tokenizer_lib.load(run_dir)
  prompt_ids = ours_tok.encode(prompt)
  assert prompt_ids.tolist() == tok(prompt)['input_ids']
  c, params = hf_io.load_run_params(run_dir)
  task = tasks.get(c)
  graphdef, _ = task.abstract()
  got = decode.Sampler(graphdef, task.model_cfg, valid_vocab=ours_tok.vocab_size
                       ).generate(params, prompt_ids, 20, temperature=0.0)[0]
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    want = model.generate(torch.tensor([prompt_ids.tolist()]),
                          max_new_tokens=20, do_sample=False,
                          eos_token_id=None, pad_token_id=0,
                          attention_mask=torch.ones(1, len(prompt_ids)))
  assert np.asarray(got).tolist() == want[0, len(prompt_ids):].tolist()


def test_bert_masked_lm_parity_with_padding(tmp_path):
  model, _, folder = hf_fixtures.bert(tmp_path / 'hf', vocab_size=601)
  run_dir, out = str(tmp_path / 'run'), str(tmp_path / 'out')
  hf_io.from_hf(folder, run_dir)
  c = workdir_lib.saved_config(run_dir)
  assert (c.task, c.model.norm_position, c.model.embed_norm) == (
      'masked_lm', 'post', True)
  rng = np.random.RandomState(1)
  ids = rng.randint(5, c.model.vocab_size, (3, 30))
  valid = np.ones_like(ids)
  valid[1, 20:] = 0  # A padded row: [PAD] after 20 tokens.
  ids[1, 20:] = 0
  types = np.zeros_like(ids)
  types[:, 12:] = 1  # Sentence B.
  theirs = hf_fixtures.torch_logits(model, ids, attention_mask=valid,
                                    token_type_ids=types)
  got = ours(run_dir, ids, segment_ids_BxL=valid, token_types_BxL=types)
  real = valid.astype(bool)
  assert np.abs(got[real] - theirs[real]).max() < TOL
  hf_io.to_hf(run_dir, out)
  back = hf_fixtures.torch_logits(reloaded(out, 'BertForMaskedLM'), ids,
                                  attention_mask=valid, token_type_ids=types)
  assert np.abs(back[real] - theirs[real]).max() < TOL


def test_bert_classifier_parity_and_round_trip(tmp_path):
  names = {0: 'negative', 1: 'neutral', 2: 'positive'}
  model, tok, folder = hf_fixtures.bert(
      tmp_path / 'hf', 'BertForSequenceClassification', num_labels=3,
      id2label=names, label2id={v: k for k, v in names.items()})
  run_dir, out = str(tmp_path / 'run'), str(tmp_path / 'out')
  hf_io.from_hf(folder, run_dir)
  c = workdir_lib.saved_config(run_dir)
  assert (c.task, c.model.num_classes) == ('classification', 3)
  assert c.model.class_names == ('negative', 'neutral', 'positive')
  ids = np.random.RandomState(2).randint(5, len(tok), (4, 25))
  theirs = hf_fixtures.torch_logits(model, ids)
  assert np.abs(ours(run_dir, ids, segment_ids_BxL=np.ones_like(ids))
                - theirs).max() < TOL
  hf_io.to_hf(run_dir, out)
  import transformers  # pylint: disable=g-import-not-at-top
  back = reloaded(out, 'BertForSequenceClassification')
  assert back.config.num_labels == 3
  assert back.config.id2label == names  # The names, not LABEL_0...
  assert np.abs(hf_fixtures.torch_logits(back, ids) - theirs).max() < TOL
  text = 'To be, or not to be'
  assert (transformers.AutoTokenizer.from_pretrained(out)(text)['input_ids']
          == tok(text)['input_ids'])


def test_tokenizer_from_vocab_and_merges_matches_tokenizer_json(tmp_path):
  import tokenizers  # pylint: disable=g-import-not-at-top
  _, tok, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  slow = tmp_path / 'slow'
  shutil.copytree(folder, slow)
  os.remove(slow / 'tokenizer.json')
  bpe = tokenizers.Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
  assert sorted(os.path.basename(f) for f in bpe.model.save(str(slow))) == [
      'merges.txt', 'vocab.json']
  text = 'First Citizen:\nBefore we proceed any further, hear me speak.'
  a, b = hf_io.read_tokenizer(folder), hf_io.read_tokenizer(str(slow))
  assert a.encode(text).tolist() == b.encode(text).tolist() == tok(text)[
      'input_ids']
  assert b.decode(b.encode(text)) == text
  assert a.special_ids['eos'] == tok.eos_token_id
  # BERT's vocab.txt, with the special tokens' defaults.
  _, btok, bfolder = hf_fixtures.bert(tmp_path / 'bert')
  wordpiece = tmp_path / 'wordpiece'
  shutil.copytree(bfolder, wordpiece)
  os.remove(wordpiece / 'tokenizer.json')
  tokenizers.Tokenizer.from_file(os.path.join(bfolder, 'tokenizer.json')
                                 ).model.save(str(wordpiece))
  c = hf_io.read_tokenizer(str(wordpiece))
  assert c.encode(text).tolist() == btok(text, add_special_tokens=False)[
      'input_ids']
  assert {n: c.special_ids[n] for n in ('cls', 'sep', 'mask', 'pad')} == {
      'cls': btok.cls_token_id, 'sep': btok.sep_token_id,
      'mask': btok.mask_token_id, 'pad': btok.pad_token_id}


def test_import_refuses_bad_folders(tmp_path):
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  _, _, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  tensors = load_file(os.path.join(folder, 'model.safetensors'))

  def folder_with(name, tensors=None, config=None):
    d = tmp_path / name
    shutil.copytree(folder, d)
    if tensors is not None:
      save_file(tensors, str(d / 'model.safetensors'))
    if config is not None:
      (d / 'config.json').write_text(json.dumps(config))
    return str(d)

  missing = dict(tensors)
  del missing['transformer.h.1.mlp.c_fc.bias']
  with pytest.raises(hf_format.FormatError,
                     match=r'transformer\.h\.1\.mlp\.c_fc\.bias is missing'):
    hf_io.from_hf(folder_with('missing', missing), str(tmp_path / 'r1'))
  extra = dict(tensors, **{'transformer.h.2.ln_1.weight': np.ones(64,
                                                                  np.float32)})
  with pytest.raises(hf_format.FormatError,
                     match=r'unexpected tensor transformer\.h\.2\.ln_1'):
    hf_io.from_hf(folder_with('extra', extra), str(tmp_path / 'r2'))
  config = json.loads((tmp_path / 'hf' / 'config.json').read_text())
  with pytest.raises(hf_format.FormatError,
                     match=r'transformer\.wte\.weight has shape \[1000, 64\]'
                     r', the config implies \[1000, 96\]'):
    hf_io.from_hf(folder_with('wide', config=dict(config, n_embd=96)),
                  str(tmp_path / 'r3'))
  with pytest.raises(hf_format.FormatError, match="'LlamaForCausalLM' is not "
                     'supported'):
    hf_io.from_hf(folder_with('llama', config=dict(
        config, architectures=['LlamaForCausalLM'])), str(tmp_path / 'r4'))
  no_weights = folder_with('bin')
  os.rename(os.path.join(no_weights, 'model.safetensors'),
            os.path.join(no_weights, 'pytorch_model.bin'))
  with pytest.raises(hf_format.FormatError, match='pytorch_model.bin only'):
    hf_io.from_hf(no_weights, str(tmp_path / 'r5'))
  assert not os.path.exists(tmp_path / 'r1' / 'checkpoints')


def test_export_refuses_models_without_a_hf_equivalent(tmp_path):
  from lm.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  _, _, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  run_dir = str(tmp_path / 'run')
  hf_io.from_hf(folder, run_dir)
  config = json.loads((tmp_path / 'run' / 'config.json').read_text())
  config['model']['position'] = 'rope'
  (tmp_path / 'run' / 'config.json').write_text(json.dumps(config))
  with pytest.raises(hf_format.FormatError, match="model.position='rope'"):
    hf_io.to_hf(run_dir, str(tmp_path / 'out'))
  assert checkpoint_lib.saved_steps(run_dir) == [0]
  assert not os.path.exists(tmp_path / 'out')


def test_finetune_from_an_imported_bert_takes_its_architecture(tmp_path,
                                                               capsys):
  _, _, folder = hf_fixtures.bert(tmp_path / 'hf')
  imported = str(tmp_path / 'bert')
  hf_io.from_hf(folder, imported)
  with pytest.raises(workdir_lib.RunError,
                     match='imported Hugging Face checkpoint'):
    loop.train_and_evaluate(load_config('sst2', 'test'), imported)
  c = load_config('sst2', 'test')
  c.init_from = imported
  summary = loop.train_and_evaluate(c, str(tmp_path / 'sst2'))
  said = capsys.readouterr().out
  assert 'is an imported Hugging Face model; taking its' in said
  assert 'model.norm_position=post' in said and 'data.tokenizer=hf' in said
  tuned = workdir_lib.saved_config(str(tmp_path / 'sst2'))
  assert (tuned.model.embed_dim, tuned.data.tokenizer) == (64, 'hf')
  assert np.isfinite(summary.final_eval_loss)
  assert 'accuracy' in summary.final['validation']


def test_sharded_training_from_an_imported_gpt2_starts_at_its_loss(
    tmp_path, capsys):
  model, _, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  imported = str(tmp_path / 'gpt2')
  hf_io.from_hf(folder, imported)
  c = load_config('shakespeare_char', 'test')
  c.init_from = imported
  c.train.update(num_steps=2, eval_every=2)
  c.mesh.update(data=2, fsdp=2, tensor=2)  # Sharded like any other run.
  c.optim.update(lr=1e-9, min_lr=0.0)  # Steps that barely move the model.
  summary = loop.train_and_evaluate(c, str(tmp_path / 'tuned'))
  assert 'taking its' in capsys.readouterr().out
  tuned = workdir_lib.saved_config(str(tmp_path / 'tuned'))
  assert (tuned.model.max_len, tuned.data.tokenizer) == (64, 'hf')
  # The final validation loss, recomputed with transformers on its windows.
  import torch  # pylint: disable=g-import-not-at-top

  from lm.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  corpus = corpus_lib.load_corpus(tuned.data, 64, tokenizer_lib.load(imported))
  stream = corpus.streams['validation']
  n = (len(stream) - 1) // 64 * 64
  windows = torch.tensor(stream[:n + 1][:-1].reshape(-1, 64), dtype=torch.long)
  targets = torch.tensor(stream[1:n + 1].reshape(-1, 64), dtype=torch.long)
  with torch.no_grad():
    logits = model(windows).logits
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
        reduction='sum').item()
  last = np.asarray(stream[n:], np.int64)  # The short final window.
  with torch.no_grad():
    tail = model(torch.tensor(last[:-1])[None]).logits[0]
    nll += torch.nn.functional.cross_entropy(
        tail, torch.tensor(last[1:]), reduction='sum').item()
  np.testing.assert_allclose(summary.final['validation']['loss'],
                             nll / (len(stream) - 1), rtol=1e-5)


def test_export_refuses_a_task_without_a_hugging_face_class():
  c = conftest.load_config('bert_wikitext2', 'test')
  assert hf_io.hf_architecture(c) == 'BertForMaskedLM'
  c.task = 'replaced_token'
  with pytest.raises(hf_format.FormatError,
                     match='a task=replaced_token .ELECTRA. run is exported '
                     'through its fine-tune'):
    hf_io.hf_architecture(c)


def test_a_bfloat16_checkpoint_imports_as_its_float32_values(tmp_path):
  model, tok, _ = hf_fixtures.gpt2(tmp_path / 'f32')
  half = hf_fixtures.save(model.bfloat16(), tok, tmp_path / 'bf16')
  run_dir = str(tmp_path / 'run')
  hf_io.from_hf(half, run_dir)
  ids = np.random.RandomState(0).randint(0, 1000, (2, 37))
  # The reference: the same bfloat16 weights, computed in float32.
  theirs = hf_fixtures.torch_logits(model.float(), ids)
  assert np.abs(ours(run_dir, ids) - theirs).max() < TOL
