"""The device mesh and the one table that maps logical axes onto it.

Parameters and activations name logical axes ('batch', 'embed', 'heads', ...);
config rules map each to mesh axes ('data', 'fsdp', 'tensor'), so data
parallelism, FSDP and tensor parallelism are choices of mesh sizes alone.
"""

from __future__ import annotations

import contextlib
import math
import threading

import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from lm import errors

AXES = ('data', 'fsdp', 'tensor')

_active = threading.local()


class MeshError(errors.UserError):
  """Mesh sizes that do not fit the devices, as one line."""


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
  """Mesh axis sizes with at most one -1 filled by the devices left over."""
  known = math.prod(s for s in sizes.values() if s != -1)
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise MeshError(f'only one mesh axis may be -1, got {", ".join(free)}')
  if num_devices % known:
    raise MeshError(f'mesh sizes {dict(sizes)} do not divide {num_devices} '
                    'devices; choose mesh.data, mesh.fsdp and mesh.tensor '
                    'whose product divides them (-1: the rest)')
  shape = tuple(num_devices // known if sizes[a] == -1 else sizes[a]
                for a in AXES)
  if math.prod(shape) != num_devices:
    raise MeshError(f'mesh {dict(zip(AXES, shape))} uses {math.prod(shape)} '
                    f'devices, but there are {num_devices}; set one axis to -1')
  return shape


def make_mesh(mesh_config, devices=None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh over `devices` (default: all).

  With `dcn_*` sizes above 1 the devices form slices (TPU slices, or the
  processes of a multi-node GPU run): the plain sizes lay out each slice
  and the dcn sizes the slices, so the slow network carries only the axes
  asked of it (usually data parallelism).
  """
  devices = jax.devices() if devices is None else devices
  sizes = {a: mesh_config[a] for a in AXES}
  dcn = tuple(mesh_config.get(f'dcn_{a}', 1) for a in AXES)
  slices = math.prod(dcn)
  if slices == 1:
    shape = mesh_shape(sizes, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), AXES)
  if len(devices) % slices:
    raise MeshError(f'mesh dcn sizes {dcn} make {slices} slices, which do '
                    f'not divide {len(devices)} devices')
  ici = mesh_shape(sizes, len(devices) // slices)
  # TPU slices know their index; elsewhere (GPU nodes, CPU processes) each
  # process is a granule.
  slice_ids = {getattr(d, 'slice_index', None) for d in devices}
  by_process = len(slice_ids) != slices
  try:
    grid = mesh_utils.create_hybrid_device_mesh(
        ici, dcn, devices, process_is_granule=by_process)
  except (ValueError, AssertionError) as e:
    granule = 'processes' if by_process else 'slices'
    raise MeshError(f'cannot lay out {slices} {granule} of mesh {ici} with '
                    f'dcn sizes {dcn}: {e}') from None
  return Mesh(grid, AXES)


def check_batch(c, mesh: Mesh) -> None:
  """The (micro-)batch must split evenly over the devices it is sharded on."""
  shards = num_shards(mesh, 'batch', c.mesh.rules)
  micro_batch = c.data.batch_size // c.optim.grad_accum_steps
  if micro_batch % shards:
    raise MeshError(
        f'data.batch_size={c.data.batch_size} / optim.grad_accum_steps='
        f'{c.optim.grad_accum_steps} must divide over the {shards} devices the '
        f'batch is split on (mesh {dict(mesh.shape)}); change data.batch_size '
        'or the mesh sizes')


def check_model(c, mesh: Mesh) -> None:
  """The model widths the mesh splits must divide by their shard counts
  (the vocabulary and a few key/value heads may not: those tables stay
  replicated)."""
  m = c.model
  for field, name in (('embed_dim', 'embed'), ('num_heads', 'heads'),
                      ('mlp_dim', 'mlp')):
    shards = num_shards(mesh, name, c.mesh.rules)
    if m[field] % shards:
      raise MeshError(
          f'model.{field}={m[field]} does not split over the {shards} devices '
          f'of the mesh axes its {name!r} dimension is sharded on (mesh '
          f'{dict(mesh.shape)}); choose sizes that divide it')


# Attention kernels that run on one kind of device only: (platform, what).
KERNELS = {'cudnn': ('gpu', "an NVIDIA GPU (cuDNN's fused kernel)"),
           'splash': ('tpu', 'a TPU (the Pallas splash kernel)')}


def check_kernels(c, mesh: Mesh) -> None:
  """A device-specific attention kernel needs that kind of device: said in
  one line before anything compiles (the dry run compiles for other chips
  and does not ask)."""
  impl = c.model.attention_impl
  platform = mesh.devices.flat[0].platform
  if impl in KERNELS and KERNELS[impl][0] != platform:
    raise MeshError(f'model.attention_impl={impl} needs {KERNELS[impl][1]}; '
                    f'this run\'s devices are {platform.upper()}s: use '
                    'model.attention_impl=xla (or reference)')


def logical_to_spec(names, rules) -> P:
  """PartitionSpec for a tuple of logical axis names (None: replicated)."""
  table = dict(rules)
  out, used = [], set()
  for name in names:
    axes = table.get(name) if name is not None else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    # A mesh axis shards at most one dimension of a tensor.
    axes = tuple(a for a in axes if a not in used)
    used.update(axes)
    out.append(axes[0] if len(axes) == 1 else (axes or None))
  return P(*out)


def num_shards(mesh: Mesh, name: str, rules) -> int:
  """Into how many pieces the logical axis `name` is split on this mesh."""
  spec = logical_to_spec((name,), rules)[0]
  return math.prod(mesh.shape[a] for a in ((spec,) if isinstance(spec, str)
                                           else spec or ()))


def named(mesh: Mesh, names, rules) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(names, rules))


def fitted_spec(shape, names, mesh: Mesh, rules) -> P:
  """Like `logical_to_spec`, leaving replicated any dim the axes don't divide."""
  spec = logical_to_spec(names, rules)
  out = []
  for dim, axes in zip(shape, spec):
    size = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str)
                                             else axes or ()))
    out.append(axes if dim % size == 0 else None)
  return P(*out)


def tree_shardings(shapes, logical_tree, mesh: Mesh, rules):
  """NamedShardings for arrays `shapes` whose logical names are in the tree."""
  return jax.tree.map(
      lambda x, names: NamedSharding(mesh, fitted_spec(x.shape, names, mesh,
                                                       rules)),
      shapes, logical_tree)


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules):
  """Within this context (entered while tracing), `constrain` is active."""
  prev = getattr(_active, 'value', None)
  _active.value = (mesh, rules)
  try:
    yield
  finally:
    _active.value = prev


def constrain(x: jax.Array, names) -> jax.Array:
  """Pins an activation's layout by logical names; a no-op outside a mesh."""
  active = getattr(_active, 'value', None)
  if active is None:
    return x
  mesh, rules = active
  return jax.lax.with_sharding_constraint(x, named(mesh, names, rules))
