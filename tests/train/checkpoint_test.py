"""Tests of lm.train.checkpoint: what is kept, what restores, what is refused."""

import logging

import chex
from conftest import unwritable
import jax
import jax.numpy as jnp
import pytest

from lm.train import checkpoint as checkpoint_lib


def state(value):
  return {'params': {'w': jnp.full((2, 3), value)}, 'step': jnp.int32(value)}


def test_keeps_the_latest_n_and_the_best(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=1,
                                     async_save=False)
  for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 2.5)]:
    ckpt.save(step, state(step), {'next_index': step}, {'eval/loss': loss})
  ckpt.save(5, state(5), {'next_index': 5})  # A save without an eval.
  ckpt.wait()
  assert ckpt.all_steps() == [2, 5]
  assert ckpt.best_step() == 2
  ckpt.close()
  # The best is still known (and kept) after a restart.
  again = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=1,
                                      async_save=False)
  again.save(6, state(6), {'next_index': 6}, {'eval/loss': 2.0})
  again.wait()
  assert again.all_steps() == [2, 6] and again.best_step() == 2


def test_restore_round_trip_and_params_only(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), async_save=True)
  ckpt.save(7, state(7.0), {'next_index': 70})
  ckpt.wait()
  restored, data = ckpt.restore(7, state(0.0))
  chex.assert_trees_all_equal(restored, state(7.0))
  assert data == {'next_index': 70}
  params = ckpt.restore_params(7, state(0.0)['params'])
  chex.assert_trees_all_equal(params, state(7.0)['params'])


def test_params_of_another_shape_are_refused(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, state(1.0), None)
  ckpt.wait()
  with pytest.raises(checkpoint_lib.CheckpointError, match='do not match'):
    ckpt.restore_params(1, {'w': jnp.zeros((4, 3))})


def saved(tmp_path, steps):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=3)
  for step in steps:
    assert ckpt.save(step, state(float(step)), {'next_index': step})
  ckpt.close()
  return checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=3)


def largest_file(step_dir):
  files = [p for p in step_dir.rglob('*') if p.is_file()
           and p.name not in ('manifest.json', '_CHECKPOINT_METADATA')]
  return max(files, key=lambda p: p.stat().st_size)


def bad_bytes(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def truncate(path):
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize('damage,found', [
    (bad_bytes, 'changed bytes'), (truncate, 'truncated'),
    (lambda p: p.unlink(), 'is missing')])
def test_corruption_is_named_and_fallback_takes_the_previous_step(
    tmp_path, damage, found):
  ckpt = saved(tmp_path, [1, 2])
  victim = largest_file(tmp_path / 'checkpoints' / '2')
  damage(victim)
  name = str(victim.relative_to(tmp_path / 'checkpoints' / '2'))
  with pytest.raises(checkpoint_lib.CheckpointError) as e:
    ckpt.restore_latest(state(0.0))
  message = str(e.value)
  assert f'step 2 at {tmp_path}/checkpoints/2 is corrupted' in message
  assert name in message and found in message
  assert 'checkpoint.fallback=true to resume from step 1' in message
  said = []
  step, restored, data = ckpt.restore_latest(state(0.0), fallback=True,
                                             say=said.append)
  assert step == 1 and data == {'next_index': 1}
  chex.assert_trees_all_equal(restored, state(1.0))
  assert 'falling back to step 1' in said[0] and 'corrupt_checkpoints' in said[0]
  assert ckpt.all_steps() == [1]  # The bad step is out of the way.
  assert ckpt.save(2, state(2.0), {'next_index': 2}) and ckpt.wait()


def test_params_only_restores_check_the_manifest_too(tmp_path):
  ckpt = saved(tmp_path, [1])
  bad_bytes(largest_file(tmp_path / 'checkpoints' / '1'))
  with pytest.raises(checkpoint_lib.CheckpointError, match='step 1.*changed'):
    ckpt.restore_params(1, state(0.0)['params'])


def test_an_unfinished_write_is_never_the_latest(tmp_path):
  ckpt = saved(tmp_path, [1])
  # What a kill -9 during the save of step 2 leaves: Orbax's temporary dir.
  partial = tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp'
  partial.mkdir()
  (partial / 'state').mkdir()
  again = checkpoint_lib.Checkpointer(str(tmp_path))
  assert again.latest_step() == 1
  assert again.save(2, state(2.0), None) and again.wait()
  assert again.all_steps() == [1, 2] and not partial.exists()


@pytest.mark.parametrize('async_save', [True, False])
def test_a_failed_save_is_reported_and_the_next_one_retries(tmp_path,
                                                            async_save):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), async_save=async_save)
  assert ckpt.save(1, state(1.0), None) and ckpt.wait()
  with unwritable(tmp_path / 'checkpoints'):
    assert not ckpt.save(2, state(2.0), None)
  assert ckpt.new_failures()[0][0] == 2 and not ckpt.new_failures()
  assert ckpt.save(3, state(3.0), None) and ckpt.wait()
  assert ckpt.all_steps() == [1, 3]  # Step 1 was never at risk.
  restored, _ = ckpt.restore(3, None, with_data=False)
  assert int(restored['step']) == 3


def test_damaged_checkpoint_metadata_is_one_line_error(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(1, state(1.0), None, {'eval/loss': 2.0})
  ckpt.close()
  (tmp_path / 'checkpoints' / '1' / 'metrics' / 'metrics').write_text('{"ev')
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match=r"cannot read the checkpoints in .*: step 1's "
                     r'.*checkpoints/1/metrics/metrics is damaged; move that '
                     'step aside'):
    checkpoint_lib.Checkpointer(str(tmp_path))


def test_a_step_without_manifest_is_refused_unless_trusted(tmp_path):
  ckpt = saved(tmp_path, [1, 2])
  (tmp_path / 'checkpoints' / '2' / 'manifest.json').unlink()
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match=r'step 2 at .* has no manifest.json, so its files '
                     r'cannot be verified; set --config.checkpoint.'
                     r'trust_unverified=true to use it anyway; set '
                     r'--config.checkpoint.fallback=true to resume from step '
                     r'1'):
    ckpt.restore_latest(state(0.0))
  with pytest.raises(checkpoint_lib.CheckpointError, match='no manifest'):
    ckpt.restore_params(2, state(0.0)['params'])  # init_from, lm.sample.
  # Trusted (an older format, say): used as it is, damage and all.
  trusting = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=3,
                                         trust_unverified=True)
  step, _, _ = trusting.restore_latest(state(0.0))
  assert step == 2
  # With fallback it is set aside like a corrupted step.
  step, restored, _ = ckpt.restore_latest(state(0.0), fallback=True,
                                          say=lambda _: None)
  assert step == 1 and ckpt.all_steps() == [1]
  chex.assert_trees_all_equal(restored, state(1.0))


@pytest.mark.parametrize('manifest', ['{}', '{"nothing.bin": [1, "00"]}'],
                         ids=['empty', 'other_files'])
def test_a_manifest_that_does_not_list_the_files_is_not_intact(tmp_path,
                                                               manifest):
  ckpt = saved(tmp_path, [1])
  (tmp_path / 'checkpoints' / '1' / 'manifest.json').write_text(manifest)
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match='lists no files|is missing|is not in manifest.json'):
    ckpt.restore_latest(state(0.0))


def test_fallback_never_starts_a_run_afresh(tmp_path):
  ckpt = saved(tmp_path, [1])
  bad_bytes(largest_file(tmp_path / 'checkpoints' / '1'))
  for fallback in (False, True):
    with pytest.raises(checkpoint_lib.CheckpointError,
                       match='no earlier checkpoint is kept'):
      ckpt.restore_latest(state(0.0), fallback=fallback)
  assert ckpt.all_steps() == [1]  # Left in place for the user to look at.


def test_replicated_arrays_round_trip_and_small_ones_are_not_sliced(
    tmp_path, caplog):
  # Replicated over the 8 test devices: Orbax splits an array's write across
  # its replicas, compiling a slice per shape and device; small arrays are
  # written whole, large ones still split. Both restore bit for bit.
  replicated = jax.sharding.NamedSharding(
      jax.sharding.Mesh(jax.devices(), ('data',)),
      jax.sharding.PartitionSpec())
  small = jax.device_put(jnp.arange(128.0).reshape(16, 8), replicated)
  large = jax.device_put(  # Slices of 8 at the threshold: split.
      jnp.ones((2 * checkpoint_lib.MIN_REPLICA_SLICE_BYTES,), jnp.int32),
      replicated)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    ckpt.save(1, {'small': small, 'large': large}, {'next_index': 1})
    ckpt.wait()
  slices = [r.getMessage() for r in caplog.records
            if 'Compiling jit(slice)' in r.getMessage()]
  assert slices and all('int32' in l for l in slices), slices
  restored, _ = ckpt.restore(1, {'small': small, 'large': large})
  chex.assert_trees_all_equal(restored, {'small': small, 'large': large})
