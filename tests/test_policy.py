"""Soft Thompson action sampling: never an action of probability zero, the right frequencies."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax.core import policy
from dra_jax.lane.reference import _sample

U_MAX = float(np.nextafter(np.float32(1.0), np.float32(0.0)))  # the largest float32 below 1


@pytest.mark.parametrize("p,u,expected", [
    ([0.0, 1.0], 0.0, 1),  # u = 0 must skip a leading zero
    ([0.0, 0.0, 1.0], 0.0, 2),
    ([1.0, 0.0], U_MAX, 0),  # u -> 1 must not run into a trailing zero
    ([0.5, 0.5, 0.0], U_MAX, 1),
    ([0.25, 0.0, 0.75], 0.25, 2),  # on the edge of a zero-width interval
    ([0.25, 0.0, 0.75], 0.0, 0),
])
def test_edges(p, u, expected):
    assert int(policy.sample_action(jnp.asarray(p, jnp.float32), jnp.float32(u))) == expected
    assert _sample(np.asarray(p, np.float64), u) == expected  # the NumPy reference's rule


@pytest.mark.parametrize("n", [2, 4, 7, 20])  # 20: the cumsum branch (> 16 actions)
def test_never_an_action_of_probability_zero(n):
    """Random distributions with zeros at random places (some from softmax underflow), and
    uniforms from 0 and the smallest float32 up to the largest below 1."""
    rng = np.random.default_rng(n)
    p = rng.random((400, n)).astype(np.float32)
    p[rng.random((400, n)) < 0.5] = 0.0
    p[np.arange(400), rng.integers(0, n, 400)] = rng.random(400).astype(np.float32) + 0.1
    p[:100] = np.asarray(policy.probs(jnp.asarray(rng.normal(0, 30, (100, n)), jnp.float32),
                                      jnp.zeros((100, n)), jnp.zeros((100, n)), 10.0))
    assert (p[:100] == 0).any()  # underflowed softmax entries are exact zeros
    p = p / p.sum(axis=1, keepdims=True)
    u = np.concatenate([[0.0, np.float32(1e-45), 1e-7, U_MAX, np.float32(1 - 6e-8)],
                        rng.random(59).astype(np.float32)]).astype(np.float32)
    a = jax.jit(jax.vmap(jax.vmap(policy.sample_action, (None, 0)), (0, None)))(
        jnp.asarray(p), jnp.asarray(u))
    a = np.asarray(a)
    assert a.min() >= 0 and a.max() < n
    chosen = np.take_along_axis(p, a, axis=1)
    assert (chosen > 0).all()


def test_inverse_cdf_frequencies():
    """On an evenly spaced grid of N uniforms, action a is drawn within one of N * p_a times."""
    p = jnp.asarray([0.1, 0.0, 0.35, 0.05, 0.5], jnp.float32)
    n = 10_000
    u = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
    counts = np.bincount(np.asarray(jax.vmap(policy.sample_action, (None, 0))(p, u)), minlength=5)
    np.testing.assert_allclose(counts, n * np.asarray(p), atol=1.01)
