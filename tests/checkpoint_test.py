"""Tests of lm.checkpoint: what is kept, what restores, what is refused."""

import chex
import jax.numpy as jnp
import pytest

from lm import checkpoint as checkpoint_lib


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
