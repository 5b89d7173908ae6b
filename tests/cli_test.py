"""End-to-end tests of the command-line faces: lm.main and lm.sample."""

import json
import re
import shutil

from conftest import run_cli
import numpy as np
import pytest

from lm.data import tokenizer as tokenizer_lib

CONFIG = '--config=configs/shakespeare_char.py:test'


def test_train_then_sample(tmp_path):
  workdir = tmp_path / 'run'
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}',
              '--config.optim.lr=3e-3')
  assert p.returncode == 0, p.stderr
  assert 'done: 10 steps' in p.stdout
  config = json.loads((workdir / 'config.json').read_text())
  assert config['optim']['lr'] == 3e-3  # The override reached the run.
  p = run_cli('lm.sample', f'--workdir={workdir}', '--prompt=ROMEO:',
              '--max_new_tokens=40', '--num_samples=2', '--seed=1')
  assert p.returncode == 0, p.stderr
  assert p.stdout.count('ROMEO:') == 2
  assert len(p.stdout.split('--- sample 2 ---')[1].strip()) >= 40
  # A prompt character the model never saw: one line, exit 2.
  p = run_cli('lm.sample', f'--workdir={workdir}', '--prompt=café')
  assert p.returncode == 2
  assert p.stderr.startswith("error: characters not in the vocabulary: 'é'")
  assert len(p.stderr.strip().splitlines()) == 1
  # Resuming a finished run trains nothing more and says so.
  metrics = (workdir / 'metrics.jsonl').read_text()
  steps = sorted(p.name for p in (workdir / 'checkpoints').iterdir())
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}',
              '--config.optim.lr=3e-3')
  assert p.returncode == 0 and 'resuming from step 10' in p.stdout
  assert 'done: 10 steps' in p.stdout
  assert (workdir / 'metrics.jsonl').read_text() == metrics
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == steps
  # A tokenizer that does not belong to the checkpoint: one line, exit 2.
  tokenizer_lib.train('byte', []).save(str(workdir))
  p = run_cli('lm.sample', f'--workdir={workdir}')
  assert p.returncode == 2 and p.stderr.strip().endswith(
      "its tokenizer has 257 entries but its model only 65; the tokenizer "
      "files are not this run's")


# Bad input -> (exit status 2 and) one line on stderr matching the pattern.
# {tmp} is the test's own folder, set up by `bad_input_files`.
TRAIN = ('lm.main', CONFIG, '--workdir={tmp}/run')
BAD_INPUTS = {
    'unknown key': (*TRAIN, '--config.model.num_layer=3',
                    r"unknown config key 'model.num_layer'; valid keys in "
                    r'model: activation, '),
    'unknown top-level key': (*TRAIN, '--config.bogus=1',
                              r"unknown config key 'bogus'; valid keys in "
                              r'the top level: allow_config_change, '),
    'wrong type': (*TRAIN, '--config.model.num_layers=two',
                   r'--config.model.num_layers=two: invalid literal for int'),
    'bad choice': (*TRAIN, '--config.model.position=spiral',
                   r"'model.position' is 'spiral'; valid choices: none, "),
    'zero steps': (*TRAIN, '--config.train.num_steps=0',
                   r"'train.num_steps' must be at least 1, got 0"),
    'heads do not divide width': (
        *TRAIN, '--config.model.num_heads=3',
        r'model.embed_dim \(32\) must be divisible by model.num_heads \(3\)'),
    'eval past learned positions': (
        *TRAIN, '--config.eval.max_len=64',
        r'eval.max_len=64 is past the learned position table'),
    'negative seed': (*TRAIN, '--config.seed=-1',
                      r'seed must be in \[0, 2\*\*32\), got -1'),
    'sentencepiece without size': (
        *TRAIN, '--config.data.tokenizer=sentencepiece',
        r'data.tokenizer=sentencepiece needs data.vocab_size'),
    'stopwords for a language model': (
        *TRAIN, '--config.data.remove_stopwords=true',
        r'data.remove_stopwords is for classification'),
    'bidirectional GPT': (*TRAIN, '--config.model.causal=false',
                          r'model.causal=False \(bidirectional\) is for '
                          r'encoders; set task=masked_lm'),
    'encoder with a char tokenizer': (
        *TRAIN, '--config.task=masked_lm', '--config.model.causal=false',
        r'task=masked_lm needs \[CLS\], \[SEP\] and \[MASK\] tokens: set '
        r'data.tokenizer=sentencepiece'),
    'classifier without labels': (
        'lm.finetune', '--config=configs/sst2.py:test',
        '--config.data.name=wikitext2', '--workdir={tmp}/run',
        r"task=classification needs a labelled corpus; data.name='wikitext2' "
        r'has no labels'),
    'finetune a language model': (
        'lm.finetune', CONFIG, '--workdir={tmp}/run',
        r'lm.finetune trains task=classification, the config has '
        r'task=causal_lm: use python -m lm.main'),
    'rows longer than the model': (
        'lm.finetune', '--config=configs/sst2.py:test',
        '--config.data.seq_len=99', '--workdir={tmp}/run',
        r'data.seq_len must be 0 \(model.max_len\) or in \[3, '
        r'model.max_len=16\], got 99'),
    'config file missing': ('lm.main', '--config={tmp}/nope.py',
                            '--workdir={tmp}/run',
                            r'No such file or directory: .*nope.py'),
    'config file broken': ('lm.main', '--config={tmp}/broken.py',
                           '--workdir={tmp}/run',
                           r'invalid syntax \(broken.py, line 1\)'),
    'unknown config variant': ('lm.main', CONFIG.replace(':test', ':nope'),
                               '--workdir={tmp}/run',
                               r"unknown variant 'nope'; choose "),
    'data folder missing': (*TRAIN, '--config.data.path={tmp}/missing',
                            r'data.path=.*/missing for tiny_shakespeare is '
                            r'not a directory'),
    'text_files without a path': (*TRAIN, '--config.data.name=text_files',
                                  r"data.name='text_files' needs data.path"),
    'empty corpus file': (*TRAIN, '--config.data.name=text_files',
                          '--config.data.path={tmp}/empty.txt',
                          r'empty.txt: no text; remove the file'),
    'workdir under a file': ('lm.main', CONFIG, '--workdir={tmp}/file/run',
                             r'cannot create workdir .*: Not a directory'),
    'no workdir': ('lm.main', CONFIG, r'--workdir is required'),
    'stray argument': (*TRAIN, 'stray', r'unexpected arguments: stray'),
    'unknown flag': (*TRAIN, '--bogus', r"Unknown command line flag 'bogus'"),
    'simulated devices without dry run': (
        *TRAIN, '--simulate_devices=4',
        r'--simulate_devices is for --dry_run only'),
    'mesh larger than the machine': (
        *TRAIN, '--config.mesh.data=3',
        r"mesh sizes \{'data': 3, .*\} do not divide 1 devices"),
    'init_from without a run': (*TRAIN, '--config.init_from={tmp}/empty',
                                r'holds no checkpoint'),
    'embeddings for a char model': (
        *TRAIN, '--config.model.init_embeddings={tmp}/vectors.txt',
        r'model.init_embeddings .* needs data.tokenizer=word'),
    'model too big for the chip': (
        'lm.main', CONFIG, '--dry_run', '--device_kind=TPU v5e',
        '--config.model.embed_dim=16384', '--config.model.num_heads=128',
        '--config.model.mlp_dim=65536',  # 2 layers: 6.4B parameters.
        r'does not fit: a step needs .* GiB per device, the TPU v5e has'),
    'sample: no run': ('lm.sample', '--workdir={tmp}/empty',
                       r'holds no run \(config.json missing\)'),
    'sample: empty prompt': ('lm.sample', '--workdir={tmp}/empty', '--prompt=',
                             r'--prompt is empty'),
    'sample: negative temperature': (
        'lm.sample', '--workdir={tmp}/empty', '--temperature=-1',
        r'--temperature must be >= 0, got -1'),
    'sample: NaN temperature': (
        'lm.sample', '--workdir={tmp}/empty', '--temperature=nan',
        r'--temperature must be >= 0, got nan'),
    'sample: infinite temperature': (
        'lm.sample', '--workdir={tmp}/empty', '--temperature=inf',
        r'--temperature must be >= 0, got inf'),
    'evaluate: --out a folder': (
        'lm.evaluate', '--workdir={tmp}/empty', '--out={tmp}/empty',
        r'--out=.*/empty is a directory; give a file path'),
    'evaluate: --out under a file': (
        'lm.evaluate', '--workdir={tmp}/empty', '--out={tmp}/file/r.json',
        r'--out=.*/file/r.json: .*/file is a file, not a folder'),
    'convert: --out_dir a file': (
        'lm.convert', 'to-hf', '--workdir={tmp}/empty', '--out_dir={tmp}/file',
        r'--out_dir=.*/file is a file; give a new or empty folder'),
    'convert: --out_dir under a file': (
        'lm.convert', 'to-hf', '--workdir={tmp}/empty',
        '--out_dir={tmp}/file/hf',
        r'--out_dir=.*/file/hf: .*/file is a file, not a folder'),
    'sample: unreadable config.json': (
        'lm.sample', '--workdir={tmp}/garbled',
        r'config.json is not a config this version can read'),
    'sample: unreadable tokenizer.json': (
        'lm.sample', '--workdir={tmp}/badtok',
        r'tokenizer.json is not valid JSON'),
    'study file missing': ('lm.study', '{tmp}/nope.py', r'no such file'),
    'study file without a grid': (
        'lm.study', '{tmp}/study.py',
        r'get_study\(\) lacks base, grid, metrics, seeds'),
    'tfds_dir a file': (*TRAIN, '--config.data.tfds_dir={tmp}/file',
                        r'data.tfds_dir=.*/file cannot hold prepared data '
                        r'\(File exists\)'),
    'tfds_dir under a file': (
        *TRAIN, '--config.data.tfds_dir={tmp}/file/tfds',
        r'data.tfds_dir=.*/file/tfds cannot hold prepared data '
        r'\(Not a directory\)'),
    'study file that does not parse': (
        'lm.study', '{tmp}/unparsable.py',
        r'unparsable.py: invalid syntax \(line 1\)'),
    'study file without get_study': (
        'lm.study', '{tmp}/nostudy.py', r'nostudy.py defines no get_study\(\)'),
    'study whose get_study raises': (
        'lm.study', '{tmp}/raises.py', r'raises.py: ValueError: boom'),
    'study grid as a list': (
        'lm.study', '{tmp}/listgrid.py',
        r"get_study\(\)\['grid'\] is a list, not a dict"),
    'study base of an unknown variant': (
        'lm.study', '{tmp}/badbase.py',
        r"shakespeare_char.py: get_config\('nope'\): ValueError: unknown "
        r"variant 'nope'"),
    'cudnn attention on a CPU': (
        *TRAIN, '--config.model.attention_impl=cudnn',
        r'model.attention_impl=cudnn needs an NVIDIA GPU .*; this run\'s '
        r'devices are CPUs: use model.attention_impl=xla'),
    'splash attention on a CPU': (
        *TRAIN, '--config.model.attention_impl=splash',
        '--config.model.max_len=128',
        r'model.attention_impl=splash needs a TPU .*; this run\'s devices are '
        r'CPUs'),
    'crossval with one fold': ('lm.crossval', CONFIG, '--workdir={tmp}/cv',
                               '--folds=1', r'--folds must be at least 2'),
}


@pytest.fixture
def bad_input_files(tmp_path):
  from lm import config as config_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / 'broken.py').write_text('def get_config(:\n')
  (tmp_path / 'file').write_text('')
  (tmp_path / 'empty.txt').write_text('')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'vectors.txt').write_text('the 0.1 0.2\n')
  (tmp_path / 'study.py').write_text('def get_study():\n  return {}\n')
  (tmp_path / 'unparsable.py').write_text('def get_study(:\n')
  (tmp_path / 'nostudy.py').write_text('x = 1\n')
  (tmp_path / 'raises.py').write_text(
      'def get_study():\n  raise ValueError("boom")\n')
  study = ("def get_study():\n  return {{'base': {base!r}, 'grid': {grid}, "
           "'seeds': [0], 'metrics': ['validation.loss']}}\n")
  (tmp_path / 'listgrid.py').write_text(study.format(
      base='configs/shakespeare_char.py:test', grid="[{'seed': 1}]"))
  (tmp_path / 'badbase.py').write_text(study.format(
      base='configs/shakespeare_char.py:nope', grid="{'a': {}}"))
  (tmp_path / 'garbled').mkdir()
  (tmp_path / 'garbled' / 'config.json').write_text('{"model": ')
  (tmp_path / 'badtok').mkdir()
  (tmp_path / 'badtok' / 'config.json').write_text(
      config_lib.to_json(config_lib.default()))
  (tmp_path / 'badtok' / 'tokenizer.json').write_text('{"kind": "char", "ch')
  return tmp_path


@pytest.mark.parametrize('name', sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(bad_input_files, name):
  *args, pattern = BAD_INPUTS[name]
  p = run_cli(*(a.format(tmp=bad_input_files) for a in args))
  # Progress bars (of a first data preparation) may come before the error.
  errors = [l for l in p.stderr.splitlines() if l.startswith('error: ')]
  assert p.returncode == 2, p.stderr[-3000:]
  assert 'Traceback' not in p.stderr and len(errors) == 1, p.stderr[-3000:]
  assert p.stderr.strip().splitlines()[-1] == errors[0], p.stderr[-3000:]
  assert re.search(pattern, errors[0]), errors[0]


def test_help(tmp_path):
  for module in ('lm.main', 'lm.sample', 'lm.evaluate', 'lm.convert'):
    p = run_cli(module, '--help')
    assert p.returncode == 0 and '--workdir' in p.stdout


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A finished run of CONFIG (no final evaluation), trained once per test
  process; tests change copies of it."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}',
              '--config.eval.final=false')
  assert p.returncode == 0, p.stderr
  return workdir


@pytest.fixture
def run_copy(trained, tmp_path):
  """A copy of the trained run, the test's own to damage."""
  return shutil.copytree(trained, tmp_path / 'run')


def test_checkpoints_without_config_json_are_refused_untouched(run_copy):
  workdir = run_copy
  (workdir / 'config.json').unlink()
  before = sorted(str(f.relative_to(workdir)) for f in workdir.rglob('*'))
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}',
              '--config.model.embed_dim=64')
  assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines()[-1] == (
      f'error: {workdir} holds checkpoints (the latest of step 10) but no '
      'config.json, so the model they were trained as is unknown; restore '
      'config.json or use a new --workdir')
  assert sorted(str(f.relative_to(workdir))
                for f in workdir.rglob('*')) == before  # Nothing written.
  p = run_cli('lm.sample', f'--workdir={workdir}')
  assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
  assert 'holds no run (config.json missing)' in p.stderr


def test_a_checkpoint_without_its_manifest_is_refused(run_copy):
  workdir = run_copy
  latest = max((workdir / 'checkpoints').iterdir(), key=lambda d: int(d.name))
  (latest / 'manifest.json').unlink()
  more = ('--config.train.num_steps=12', '--config.eval.final=false')
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}', *more)
  assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines()[-1].startswith(
      f'error: checkpoint step {latest.name} at {latest} has no '
      'manifest.json, so its files cannot be verified')
  p = run_cli('lm.main', CONFIG, f'--workdir={workdir}', *more,
              '--config.checkpoint.trust_unverified=true')
  assert p.returncode == 0, p.stderr[-2000:]
  assert f'resuming from step {latest.name}' in p.stdout


def test_sampling_from_non_finite_parameters_is_refused(run_copy):
  from lm.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  workdir = run_copy
  # The latest step's parameters as a diverged run leaves them.
  ckpt = checkpoint_lib.Checkpointer(str(workdir), async_save=False)
  state, data = ckpt.restore(ckpt.latest_step(), None)
  state['params']['wte'] = np.full_like(state['params']['wte'], np.nan)
  ckpt.save(ckpt.latest_step() + 1, state, data)
  ckpt.close()
  p = run_cli('lm.sample', f'--workdir={workdir}')
  assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().endswith(
      'its parameters hold NaN or infinite values (the run diverged); there '
      'is nothing to sample: train it again with a lower optim.lr')
