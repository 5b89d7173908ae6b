"""Tests of lm.train.dryrun: AOT compile, per-device memory, FLOPs, fit check."""

from conftest import load_config
from conftest import run_cli
import jax
import pytest

from lm.parallel import sharding
from lm.train import dryrun
from lm.train import workdir as workdir_lib


def cpu_config(**mesh):
  """The nanoGPT CPU model, resolved as a run would (char vocabulary)."""
  c = load_config('shakespeare_char', 'cpu')
  c.data.batch_size = 16
  c.mesh.update(**mesh)
  return workdir_lib.resolve(c, 65)


def test_fsdp_divides_state_memory_by_the_devices():
  one = dryrun.analyse(cpu_config(data=-1), devices=jax.devices()[:1])
  fsdp = dryrun.analyse(cpu_config(data=1, fsdp=8))
  assert one.mesh == {'data': 1, 'fsdp': 1, 'tensor': 1}
  assert fsdp.mesh == {'data': 1, 'fsdp': 8, 'tensor': 1}
  # AdamW: parameters, mu and nu, float32.
  assert one.params_bytes == 4 * one.num_params
  assert one.opt_state_bytes == pytest.approx(2 * one.params_bytes, abs=64)
  # The target: at most 1/8 of one device's figure plus 5%, from
  # the compiled step's inputs (inputs and targets, int32, taken off).
  batch = 2 * 16 * 64 * 4  # Inputs and targets, int32.
  assert (one.batch_bytes, fsdp.batch_bytes) == (batch, batch // 8)
  assert one.state_bytes == pytest.approx(
      one.params_bytes + one.opt_state_bytes, abs=64)
  assert fsdp.state_bytes <= one.state_bytes / 8 * 1.05
  assert fsdp.params_bytes <= one.params_bytes / 8 * 1.05
  # Data parallel alone replicates the state.
  dp = dryrun.analyse(cpu_config(data=8))
  assert dp.params_bytes == one.params_bytes
  assert dp.temp_bytes < one.temp_bytes  # A smaller batch per device.


def test_flops_and_the_remat_ceiling():
  plain = dryrun.analyse(cpu_config(), devices=jax.devices()[:1])
  tokens = 16 * 64
  assert plain.tokens_per_step == tokens
  # Model FLOPs: 6N + attention per token (lm.train.flops), over the whole batch.
  assert plain.model_flops_per_device == pytest.approx(
      tokens * (6 * (plain.num_params - 64 * 128) + 12 * 4 * 4 * 32 * 64))
  # XLA's count of the same step is close to the model's...
  assert 0.85 < plain.mfu_ceiling < 1.05
  # ...and recomputing activations adds FLOPs the model does not count.
  c = cpu_config()
  c.model.remat = 'full'
  remat = dryrun.analyse(c, devices=jax.devices()[:1])
  assert remat.mfu_ceiling < plain.mfu_ceiling - 0.1
  # A scanned stack is one loop body to XLA's count: no ceiling claimed.
  # There remat shrinks the activations kept for the backward pass (XLA:CPU
  # keeps them all in an unrolled stack, remat or not).
  c.model.scan_layers = True
  scanned_remat = dryrun.analyse(c, devices=jax.devices()[:1])
  assert scanned_remat.mfu_ceiling is None
  c.model.remat = 'none'
  scanned = dryrun.analyse(c, devices=jax.devices()[:1])
  assert scanned_remat.temp_bytes < 0.6 * scanned.temp_bytes


def test_report_and_fit_check():
  r = dryrun.analyse(cpu_config(data=2, fsdp=2, tensor=2), device_kind='H100')
  text = dryrun.format_report(r)
  assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 2} (H100)" in text
  assert 'of 74.51 GiB' in text and 'at the 989 TFLOP/s peak' in text
  dryrun.check_fits(r)
  small = dryrun.Report(**{**r.__dict__, 'device_memory': r.peak_bytes - 1})
  with pytest.raises(dryrun.DryRunError, match='does not fit: a step needs'):
    dryrun.check_fits(small)


@pytest.mark.parametrize('mesh, overrides, message', [
    (dict(data=3), {}, 'do not divide 8 devices'),
    (dict(data=2, fsdp=2, tensor=1), {},
     "mesh {'data': 2, 'fsdp': 2, 'tensor': 1} uses 4 devices, but there "
     'are 8'),
    (dict(data=-1, tensor=8), {}, 'model.num_heads=4 does not split over '
     'the 8 devices'),
    (dict(data=-1, fsdp=8), {'embed_dim': 132, 'num_heads': 4,
                             'mlp_dim': 512},
     'model.embed_dim=132 does not split over the 8 devices'),
    (dict(data=8), {'batch': 12}, 'data.batch_size=12 / '
     'optim.grad_accum_steps=1 must divide over the 8 devices'),
])
def test_bad_meshes_fail_before_compiling(mesh, overrides, message):
  c = cpu_config(**mesh)
  c.model.update({k: v for k, v in overrides.items() if k != 'batch'})
  c.data.batch_size = overrides.get('batch', 16)
  with pytest.raises(sharding.MeshError, match=message.replace(
      '{', r'\{').replace('}', r'\}').replace('(', r'\(').replace(')', r'\)')):
    dryrun.analyse(c)


def test_cli_dry_run_on_simulated_devices_and_out_of_memory():
  ok = run_cli('lm.main', '--config=configs/shakespeare_char.py:cpu',
               '--dry_run', '--simulate_devices=16', '--config.mesh.fsdp=4',
               '--config.data.batch_size=16')
  assert ok.returncode == 0, ok.stderr
  assert "mesh {'data': 4, 'fsdp': 4, 'tensor': 1} (cpu)" in ok.stdout
  # 6.4B parameters: their AdamW state alone outgrows a 16 GiB TPU v5e.
  big = run_cli('lm.main', '--config=configs/shakespeare_char.py:cpu',
                '--dry_run', '--simulate_devices=2', '--device_kind=TPU v5e',
                '--config.model.vocab_size=65',
                '--config.model.num_layers=2', '--config.model.embed_dim=16384',
                '--config.model.num_heads=128', '--config.model.mlp_dim=65536')
  assert big.returncode == 2
  assert big.stderr.strip().startswith('error: does not fit: a step needs')
  assert len(big.stderr.strip().splitlines()) == 1
  usage = run_cli('lm.main', '--config=configs/shakespeare_char.py:cpu')
  assert usage.returncode != 0 and '--workdir is required' in usage.stderr


def test_cli_dry_run_of_a_translation_config_on_a_mesh():
  ok = run_cli('lm.main', '--config=configs/multi30k.py:test', '--dry_run',
               '--simulate_devices=8', '--config.mesh.fsdp=2',
               '--config.mesh.tensor=2')
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 2} (cpu)" in ok.stdout


@pytest.mark.parametrize('config, task, batch_bytes', [
    # 4 rows of 16: inputs, targets and the chosen positions' weights.
    ('bert_wikitext2', 'masked_lm', 3 * 4 * 16 * 4),
    ('bert_wikitext2', 'replaced_token', 3 * 4 * 16 * 4),
    # 8 sentences of 12: inputs and segments; a label and weight each.
    ('sst2', 'classification', 2 * 8 * 12 * 4 + 2 * 8 * 4)])
def test_encoder_tasks_compile_with_their_batches(config, task, batch_bytes):
  c = load_config(config, 'test')
  c.update(task=task)
  c.data.batch_size = c.data.batch_size if task == 'classification' else 4
  report = dryrun.analyse(workdir_lib.resolve(c, 65), devices=jax.devices()[:1])
  assert report.batch_bytes == batch_bytes
  assert report.model_flops_per_device > 0
