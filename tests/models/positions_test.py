"""Tests of lm.models.positions: sinusoidal table, RoPE, ALiBi, T5 buckets."""

import jax
import jax.numpy as jnp
import numpy as np

from lm.models import positions


def test_sinusoidal_matches_the_formula():
  table = np.asarray(positions.sinusoidal(jnp.arange(50)[None], 16))[0]
  pos, i = 37, 3
  np.testing.assert_allclose(table[pos, 2 * i],
                             np.sin(pos / 10000 ** (2 * i / 16)), rtol=1e-5)
  np.testing.assert_allclose(table[pos, 2 * i + 1],
                             np.cos(pos / 10000 ** (2 * i / 16)), rtol=1e-5)


def test_rope_scores_depend_only_on_distance():
  q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1, 1, 8))

  def score(m, n):
    qm = positions.rope(q, jnp.array([[m]]))
    kn = positions.rope(k, jnp.array([[n]]))
    return float(jnp.sum(qm * kn))
  for distance in (0, 3, 11):
    scores = [score(m + distance, m) for m in (0, 5, 100, 1000)]
    np.testing.assert_allclose(scores, scores[0], rtol=1e-4, atol=1e-5)
  assert abs(score(7, 0) - score(3, 0)) > 1e-3  # Distance does matter.
  # A rotation: norms are kept.
  x = positions.rope(q, jnp.array([[123]]))
  np.testing.assert_allclose(jnp.linalg.norm(x), jnp.linalg.norm(q),
                             rtol=1e-5)


def test_alibi_slopes_are_the_papers_geometric_sequence():
  np.testing.assert_allclose(positions.alibi_slopes(8),
                             [2.0 ** -(i + 1) for i in range(8)])
  np.testing.assert_allclose(positions.alibi_slopes(4),
                             [2.0 ** (-2 * (i + 1)) for i in range(4)])
  # 6 heads: the 4-head slopes, then every other slope of 8 heads.
  np.testing.assert_allclose(positions.alibi_slopes(6),
                             [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8,
                              2.0 ** -1, 2.0 ** -3])


def test_alibi_bias_is_minus_slope_times_distance():
  bias = positions.alibi_bias(positions.alibi_slopes(2),
                              jnp.arange(4)[None], jnp.arange(4)[None])
  assert bias.shape == (1, 2, 4, 4)
  np.testing.assert_allclose(bias[0, 0, 3], [-0.0625 * 3, -0.0625 * 2,
                                             -0.0625, 0.0])


def test_t5_buckets_are_exact_then_logarithmic_then_clipped():
  q = jnp.arange(300)[None]
  causal = np.asarray(positions.relative_buckets(q, jnp.zeros((1, 1), int)))
  distance_to_bucket = causal[0, :, 0]
  # 32 buckets: distances 0..15 exact, 16..127 log-spaced over 16..31.
  assert distance_to_bucket[:16].tolist() == list(range(16))
  assert distance_to_bucket[16] == 16 and distance_to_bucket[100] == 30
  assert (distance_to_bucket[128:] == 31).all()
  assert (np.diff(distance_to_bucket) >= 0).all()
  assert len(set(distance_to_bucket.tolist())) == 32
  # log-spacing: bucket 16 + 16 * log(d / 16) / log(8), rounded down.
  for d in (20, 40, 100):
    assert distance_to_bucket[d] == 16 + int(16 * np.log(d / 16) / np.log(8))
  # Causally, keys after the query share bucket 0.
  ahead = positions.relative_buckets(jnp.zeros((1, 1), int),
                                     jnp.arange(1, 5)[None])
  assert np.asarray(ahead).tolist() == [[[0, 0, 0, 0]]]
  # Bidirectional: 16 buckets per direction; keys ahead use 16..31.
  both = np.asarray(positions.relative_buckets(
      jnp.zeros((1, 1), int), jnp.arange(-200, 201)[None],
      bidirectional=True))[0, 0]
  behind, ahead = both[200::-1], both[200:]
  assert behind[:8].tolist() == list(range(8))
  assert ahead[1:8].tolist() == list(range(17, 24)) and ahead[0] == 0
  assert behind.max() == 15 and ahead.max() == 31


def test_t5_bias_depends_only_on_distance():
  table = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
  pos = jnp.arange(200)[None]
  bias = np.asarray(positions.relative_bias(table, pos, pos))
  assert bias.shape == (1, 3, 200, 200)
  for distance in (0, 5, 40, 150):
    diagonal = np.diagonal(bias[0], offset=-distance, axis1=1, axis2=2)
    np.testing.assert_array_equal(diagonal, diagonal[:, :1] *
                                  np.ones_like(diagonal))
  bucket = int(positions.relative_buckets(jnp.array([[40]]),
                                          jnp.array([[0]]))[0, 0, 0])
  np.testing.assert_allclose(bias[0, :, 40, 0], table[bucket])
