"""Tests of lm.positions: sinusoidal table, RoPE and ALiBi."""

import jax
import jax.numpy as jnp
import numpy as np

from lm import positions


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
