"""Tests of lm.parallel.sharding: mesh sizes and logical-to-mesh rules."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import pytest

from lm import config as config_lib
from lm.parallel import sharding

RULES = config_lib.default().mesh.rules


def test_minus_one_takes_the_remaining_devices():
  assert sharding.mesh_shape({
      'data': -1,
      'fsdp': 2,
      'tensor': 1
  }, 8) == (4, 2, 1)
  assert sharding.mesh_shape({
      'data': 2,
      'fsdp': 2,
      'tensor': 2
  }, 8) == (2, 2, 2)


@pytest.mark.parametrize('sizes, message', [
    ({'data': -1, 'fsdp': -1, 'tensor': 1}, 'only one mesh axis may be -1'),
    ({'data': -1, 'fsdp': 3, 'tensor': 1}, 'do not divide 8'),
    ({'data': 2, 'fsdp': 2, 'tensor': 1}, 'uses 4 devices'),
])
def test_bad_mesh_sizes(sizes, message):
  with pytest.raises(sharding.MeshError, match=message):
    sharding.mesh_shape(sizes, 8)


def test_logical_rules():
  assert sharding.logical_to_spec(('batch', None), RULES) == P(('data', 'fsdp'),
                                                               None)
  assert sharding.logical_to_spec(('embed', 'mlp'),
                                  RULES) == P('fsdp', 'tensor')
  # 'fsdp' already shards the batch dim, so 'embed' stays whole.
  assert sharding.logical_to_spec(('batch', None, 'embed'), RULES) == P(
      ('data', 'fsdp'), None, None)
  assert sharding.logical_to_spec(('kv', None), RULES) == P(None, None)


def test_dims_the_axes_do_not_divide_stay_whole():
  mesh = sharding.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  assert sharding.fitted_spec((65, 32), ('vocab', 'embed'), mesh, RULES) == P(
      None, 'fsdp')


def test_constrain_is_a_noop_outside_and_shards_inside():
  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})
  x = jnp.ones((8, 4))
  assert sharding.constrain(x, ('batch', None)) is x

  @jax.jit
  def f(x):
    with sharding.activation_rules(mesh, RULES):
      return sharding.constrain(x * 2, ('batch', None))
  assert f(x).addressable_shards[0].data.shape == (1, 4)  # 8-way on data.


def test_dcn_sizes_multiply_the_per_slice_mesh():
  import ml_collections  # pylint: disable=g-import-not-at-top
  m = ml_collections.ConfigDict(dict(data=-1, fsdp=2, tensor=1, dcn_data=1,
                                     dcn_fsdp=1, dcn_tensor=1))
  assert dict(sharding.make_mesh(m).shape) == {'data': 4, 'fsdp': 2,
                                               'tensor': 1}
  # Slices are processes on CPU; this test process is one, so asking for
  # 2 slices cannot be laid out, and 3 do not divide the 8 devices.
  m.dcn_data = 2
  with pytest.raises(sharding.MeshError, match='cannot lay out 2 processes'):
    sharding.make_mesh(m)
  m.dcn_data = 3
  with pytest.raises(sharding.MeshError, match='make 3 slices, which do not '
                     'divide 8 devices'):
    sharding.make_mesh(m)
