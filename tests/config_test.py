"""Tests of lm.config: the schema catches mistakes with one clear line."""

import importlib
import sys

from absl import flags
from conftest import REPO
from conftest import load_config
import ml_collections
from ml_collections import config_flags
import pytest

from lm import config as config_lib


@pytest.mark.parametrize('name', ['shakespeare_char', 'wikitext2_word',
                                  'wikitext2_bpe'])
@pytest.mark.parametrize('variant', [None, 'cpu', 'test'])
def test_default_and_shipped_variants_validate(name, variant):
  config_lib.validate(config_lib.default())
  config_lib.validate(load_config(name, variant))


@pytest.mark.parametrize('variant', ['tiny', 'mini', 'base', 'cpu', 'test'])
def test_sst2_variants_fine_tune_their_pretraining_variant(variant):
  # configs/sst2.py:V must accept configs/bert_wikitext2.py:V's run as its
  # init_from: the same shape and text preprocessing (run.check_init_from).
  pretrain = load_config('bert_wikitext2', variant)
  finetune = load_config('sst2', variant)
  config_lib.validate(pretrain)
  config_lib.validate(finetune)
  assert [x for x in config_lib.architecture_changes(pretrain, finetune)
          if not x.startswith('model.num_classes')] == []
  for key in ('vocab_size', 'spm_model_type', 'lowercase', 'normalize'):
    assert pretrain.data[key] == finetune.data[key], key


def test_sst2_glove_variant_reads_words_and_the_shared_vectors():
  c = load_config('sst2', 'glove')
  config_lib.validate(c)
  assert (c.data.tokenizer, c.data.lowercase, c.data.vocab_size) == (
      'word', True, 0)
  assert c.model.embed_dim == 50
  assert c.model.init_embeddings.endswith('glove.6B.50d.100k.txt.gz')


@pytest.mark.parametrize('mutate, message', [
    (lambda c: c.optim.__setattr__('name', 'adamx'),
     "'optim.name' is 'adamx'; valid choices: adamw, adam, sgd"),
    (lambda c: c.model.__setattr__('num_heads', 3),
     'must be divisible by model.num_heads'),
    (lambda c: c.data.__setattr__('batch_size', 0),
     "'data.batch_size' must be at least 1"),
    (lambda c: c.optim.__setattr__('min_lr', 1.0),
     'optim.min_lr <= optim.lr'),
    (lambda c: c.mesh.__setattr__('tensor', 0), 'mesh.tensor must be'),
    (lambda c: c.model.__setattr__('mlp_dim', -3), "'model.mlp_dim' must be >= 0"),
    (lambda c: c.__setattr__('seed', -1), 'seed must be in [0, 2**32)'),
    (lambda c: c.model.__setattr__('pooling', 'max'),
     "'model.pooling' is 'max'; valid choices: cls, mean"),
    (lambda c: c.train.__setattr__('ema_decay', 1.0),
     'train.ema_decay must be in [0, 1) (0: no average), got 1.0'),
    (lambda c: c.optim.__setattr__('warmup_steps', -5),
     "'optim.warmup_steps' must be >= 0"),
    (lambda c: c.optim.__setattr__('b2', 1.0), 'optim.b2 must be in [0, 1)'),
    (lambda c: c.mesh.__setattr__('rules', (('batch', 'dta'),)),
     "mesh.rules entry ('batch', 'dta') must be"),
    (lambda c: c.data.__setattr__('remove_stopwords', True),
     'data.remove_stopwords is for classification pipelines'),
    (lambda c: c.data.__setattr__('tokenizer', 'sentencepiece'),
     'data.tokenizer=sentencepiece needs data.vocab_size'),
    (lambda c: c.data.__setattr__('tokenizer', 'bpe'),
     "'data.tokenizer' is 'bpe'; valid choices: char, word, sentencepiece, "
     'byte'),
    (lambda c: c.data.__setattr__('name', 'text_files'),
     "data.name='text_files' needs data.path"),
    (lambda c: c.eval.__setattr__('stride', 1000),
     'eval.stride must be in [0, 16] (the eval context), got 1000'),
    (lambda c: c.model.update(num_heads=2, num_kv_heads=3),
     'model.num_heads (2) must be divisible by model.num_kv_heads (3)'),
    (lambda c: c.model.update(position='t5', relative_buckets=2),
     'model.position=t5 needs model.relative_buckets >= 4'),
    (lambda c: c.model.update(position='t5', relative_max_distance=16),
     'relative_max_distance > relative_buckets / 2 (got 32 and 16)'),
    (lambda c: c.model.update(attention_impl='splash', position='alibi'),
     'model.attention_impl=splash needs model.max_len (and eval.max_len) a '
     'multiple of 128'),
    (lambda c: c.model.update(dropout_sites='embed,ffn'),
     "model.dropout_sites='embed,ffn': give a comma-separated subset of "
     'embed,attention,residual,mlp'),
    (lambda c: c.eval.__setattr__('max_len', 64),
     'eval.max_len=64 is past the learned position table of '
     'model.max_len=16'),
    (lambda c: c.model.update(position='rope', embed_dim=6, num_heads=2),
     'model.position=rope needs an even head width'),
    (lambda c: c.model.__setattr__('init_embeddings', 'glove.txt'),
     'model.init_embeddings maps word vectors through the vocabulary; it '
     'needs data.tokenizer=word'),
    (lambda c: c.model.__setattr__('init_embeddings_std', -1.0),
     'model.init_embeddings_std must be >= 0'),
    (lambda c: c.model.__setattr__('causal', False),
     'model.causal=False (bidirectional) is for encoders'),
    (lambda c: c.data.update(extra_name='sst2', extra_split='validation'),
     "data.extra_split='validation': extra training text must come from a "
     'train split'),
    (lambda c: c.data.update(extra_name='sst2',
                             extra_split='train[:10]+validation'),
     'extra training text must come from a train split'),
    (lambda c: c.data.update(extra_name='imdb'),
     "data.extra_name='imdb' is not a corpus"),
    (lambda c: c.data.update(extra_name='sst2', pack='segments'),
     'data.extra_name joins the training stream'),
    (lambda c: c.data.__setattr__('length_bucket', 16),
     'data.length_bucket batches sentences by length (task=classification, '
     'translation or summarization), a multiple >= 1; got 16 for '
     'task=causal_lm'),
    (lambda c: c.update(task='translation'),
     'task=translation and task=summarization read a corpus of pairs '
     '(multi30k, parallel_text, scitldr); got task=translation with '
     'data.name=tiny_shakespeare'),
    (lambda c: c.data.update(name='multi30k'),
     'task=translation and task=summarization read a corpus of pairs '
     '(multi30k, parallel_text, scitldr); got task=causal_lm with '
     'data.name=multi30k'),
    (lambda c: c.data.update(target_len=32),
     "data.target_len is the decoder's width (an encoder-decoder task), >= "
     '0; got 32 for task=causal_lm'),
    (lambda c: c.update(task='summarization') or c.data.update(
        name='scitldr', tokenizer='sentencepiece', vocab_size=500,
        target_len=1),
     'data.target_len must be 0 (model.max_len) or at least 2'),
    (lambda c: c.update(task='span_corruption') or c.data.update(
        tokenizer='sentencepiece', vocab_size=500),
     "task=span_corruption needs data.target_len, the decoder's width"),
    (lambda c: c.update(task='span_corruption') or c.data.update(
        tokenizer='sentencepiece', vocab_size=500, target_len=16,
        noise_density=1.0),
     'data.noise_density is the share of tokens corrupted, in (0, 1); got '
     '1.0'),
    (lambda c: c.update(task='span_corruption') or c.data.update(
        tokenizer='sentencepiece', vocab_size=500, target_len=16,
        mean_span=0.5), 'data.mean_span must be at least 1, got 0.5'),
    (lambda c: c.update(task='translation') or c.data.update(
        name='multi30k'),
     'task=translation needs data.tokenizer=sentencepiece'),
    (lambda c: c.update(task='translation') or c.data.update(
        name='multi30k', tokenizer='sentencepiece', vocab_size=500,
        max_tokens=8),
     'data.max_tokens=8 holds no row of model.max_len=16; raise it'),
    (lambda c: c.update(task='translation') or c.data.update(
        name='multi30k', tokenizer='sentencepiece', vocab_size=500) or c.eval.update(
            beam_size=0), 'eval.beam_size must be at least 1, got 0'),
    (lambda c: c.update(task='translation') or c.data.update(
        name='multi30k', tokenizer='sentencepiece', vocab_size=500) or c.eval.update(
            alpha=-0.5), 'eval.alpha (the length penalty) must be >= 0'),
    (lambda c: c.update(task='summarization') or c.data.update(
        name='scitldr', tokenizer='sentencepiece', vocab_size=500) or
     c.eval.update(no_repeat_ngram=-1),
     'eval.no_repeat_ngram must be >= 0 (0: off), got -1'),
    (lambda c: c.update(task='translation') or c.data.update(
        name='multi30k', tokenizer='sentencepiece', vocab_size=500) or c.optim.update(
            label_smoothing=1.0), 'optim.label_smoothing must be in [0, 1)'),
    (lambda c: c.data.__setattr__('token_dropout', 0.1),
     'data.token_dropout masks fine-tuning pieces (task=classification), a '
     'share in [0, 1); got 0.1 for task=causal_lm'),
    (lambda c: c.update(task='classification') or c.data.update(
        token_dropout=1.0),
     'data.token_dropout masks fine-tuning pieces (task=classification), a '
     'share in [0, 1); got 1.0 for task=classification'),
    (lambda c: c.data.__setattr__('whole_word_mask', True),
     'data.whole_word_mask chooses the words a masked-LM predicts '
     '(task=masked_lm or replaced_token), not task=causal_lm'),
    (lambda c: c.model.__setattr__('generator_fraction', 0.0),
     "model.generator_fraction is the generator's share of the encoder's "
     'heads, in (0, 1]; got 0.0'),
    (lambda c: c.optim.__setattr__('detection_weight', -1.0),
     'optim.detection_weight must be >= 0, got -1.0'),
    (lambda c: c.optim.__setattr__('layer_lr_decay', 0.8),
     'optim.layer_lr_decay is for fine-tuning an encoder '
     '(task=classification); a GPT has no encoder'),
    (lambda c: c.update(task='classification', model=dict(
        causal=False, scan_layers=True), data=dict(
            name='sst2', tokenizer='sentencepiece', vocab_size=100),
                        optim=dict(layer_lr_decay=0.8)),
     'optim.layer_lr_decay scales each block on its own; set '
     'model.scan_layers=false (stacked blocks)'),
    (lambda c: c.update(task='classification', model=dict(causal=False),
                        data=dict(name='sst2', tokenizer='sentencepiece',
                                  vocab_size=100),
                        optim=dict(layer_lr_decay=0.0)),
     'optim.layer_lr_decay must be in (0, 1] (1: off), got 0.0'),
    (lambda c: c.model.__setattr__('norm_eps', 0.0),
     'model.norm_eps must be > 0, got 0.0'),
    (lambda c: c.model.__setattr__('activation', 'swish'),
     "'model.activation' is 'swish'; valid choices: gelu, gelu_tanh, relu, "
     'relu2, silu, swiglu, geglu'),
    (lambda c: c.update(task='classification',
                        model=dict(causal=False, class_names=('a', 'b', 'c')),
                        data=dict(name='sst2', tokenizer='sentencepiece',
                                  vocab_size=100)),
     'model.class_names names 3 classes but model.num_classes=2; name each '
     'class once, or none'),
])
def test_bad_values_are_named(test_config, mutate, message):
  mutate(test_config)
  with pytest.raises(config_lib.ConfigError, match='.*'.join(
      map(__import__('re').escape, [message]))):
    config_lib.validate(test_config)


def test_unknown_key_names_the_valid_keys(test_config):
  test_config.optim.unlock()
  test_config.optim.lrr = 1.0
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(test_config)
  assert "unknown config key 'optim.lrr'" in str(e.value)
  assert 'lr, min_lr' in str(e.value)


def test_wrong_type_is_named(test_config):
  # A config file may build its ConfigDict from scratch, without the schema's
  # type safety; validate still catches the type.
  values = test_config.to_dict()
  values['model']['num_layers'] = 'four'
  with pytest.raises(config_lib.ConfigError, match="'model.num_layers' must "
                     'be int'):
    config_lib.validate(ml_collections.ConfigDict(values))


def test_json_round_trip_restores_tuples(test_config):
  back = config_lib.from_json(config_lib.to_json(test_config))
  assert back.mesh.rules == test_config.mesh.rules
  assert back.to_dict() == test_config.to_dict()


def test_architecture_changes_lists_shape_fields(test_config):
  other = test_config.copy_and_resolve_references()
  other.model.embed_dim = 64
  other.optim.lr = 0.5  # Not an architecture field.
  assert config_lib.architecture_changes(test_config, other) == [
      'model.embed_dim: 32 -> 64']


# Command-line config mistakes: tests/cli_test.py's table of bad inputs.


def test_config_changes_skip_the_fields_a_resume_may_change(test_config):
  other = test_config.copy_and_resolve_references()
  other.train.num_steps = 99  # Free: run length, logging, mesh, ...
  other.mesh.fsdp = 2
  other.model.remat = 'full'
  assert config_lib.config_changes(test_config, other) == []
  other.optim.lr, other.seed = 0.5, 7
  assert config_lib.config_changes(test_config, other) == [
      f'optim.lr: {test_config.optim.lr} -> 0.5', 'seed: 0 -> 7']


# Configs that build on others load them with config_lib.sibling.


@pytest.fixture
def scratch_modules():
  """Names the test puts in sys.modules; they are removed after it."""
  names = []
  yield names
  for name in names:
    sys.modules.pop(name, None)


def test_sibling_loads_a_config_once_by_path(tmp_path, scratch_modules):
  name = 'config_test_sibling_base'
  scratch_modules.append(name)
  (tmp_path / f'{name}.py').write_text('LOADS = []\nLOADS.append(1)\n')
  caller = str(tmp_path / 'caller.py')  # Need not exist: only its folder.
  module = config_lib.sibling(caller, name)
  assert module.LOADS == [1] and module.__file__ == str(tmp_path / f'{name}.py')
  # Cached under its own name: the same object as a second load and as
  # `import NAME` with the folder on sys.path (tests' conftest.load_config).
  assert sys.modules[name] is module
  assert config_lib.sibling(caller, name) is module
  sys.path.insert(0, str(tmp_path))
  try:
    assert importlib.import_module(name) is module
  finally:
    sys.path.pop(0)
  assert module.LOADS == [1]  # Run once.


def test_sibling_refuses_a_module_of_that_name_from_elsewhere(
    tmp_path, scratch_modules):
  scratch_modules.append('config_test_sibling_clash')
  for folder in ('a', 'b'):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / 'config_test_sibling_clash.py').write_text('')
  config_lib.sibling(str(tmp_path / 'a' / 'x.py'), 'config_test_sibling_clash')
  with pytest.raises(ImportError, match='already loaded from'):
    config_lib.sibling(str(tmp_path / 'b' / 'x.py'),
                       'config_test_sibling_clash')


def test_sibling_that_fails_to_load_leaves_nothing_behind(tmp_path,
                                                          scratch_modules):
  scratch_modules.append('config_test_sibling_broken')
  (tmp_path / 'config_test_sibling_broken.py').write_text('1 / 0\n')
  with pytest.raises(ZeroDivisionError):
    config_lib.sibling(str(tmp_path / 'x.py'), 'config_test_sibling_broken')
  assert 'config_test_sibling_broken' not in sys.modules


def test_configs_load_by_path_as_absl_does_and_share_siblings(
    monkeypatch, scratch_modules):
  # lm.main's --config runs the file by its (relative) path; the tests import
  # configs/ as modules. Both give one config, and one module per sibling.
  monkeypatch.chdir(REPO)
  if 'config_config' not in sys.modules:  # absl's name for the --config file.
    scratch_modules.append('config_config')
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values)
  flag_values(['prog', '--config=configs/sst2.py:test'])
  assert (config_lib.to_json(flag_values.config) ==
          config_lib.to_json(load_config('sst2', 'test')))
  word = sys.modules['wikitext2_word']
  assert word.__file__ == str(REPO / 'configs' / 'wikitext2_word.py')
  assert sys.modules['sst2'].wikitext2_word is word
  assert sys.modules['bert_wikitext2'].wikitext2_word is word
  assert sys.modules['sst2'].bert_wikitext2 is sys.modules['bert_wikitext2']
  assert config_lib.sibling('configs/sst2.py', 'wikitext2_word') is word
