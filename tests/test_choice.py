"""The hard-Thompson choice by quadrature (dra_jax.core.choice) against sampling."""
import numpy as np

from dra_jax.core import choice


def test_choice_probabilities_match_sampling_including_very_unequal_sigmas():
    rng = np.random.default_rng(0)
    S, A, n = 24, 4, 400_000
    q = rng.normal(0, 3, (S, A)).astype(np.float32)
    s = np.exp(rng.uniform(np.log(0.01), np.log(5.0), (S, A))).astype(np.float32)
    q[0], s[0] = [0, 0.001, 0, 0], [5.0, 0.01, 0.01, 0.01]  # a sharp step in the integrand
    q[1], s[1] = [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]  # symmetric: 1/4 each
    p = np.asarray(choice.choice_probs(q, s))
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p[1], 0.25, atol=1e-5)
    z = rng.standard_normal((n, A)).astype(np.float32)
    for r in range(S):
        pm = np.bincount(np.argmax(q[r] + z * s[r], -1), minlength=A) / n
        se = np.sqrt(pm * (1 - pm) / n) + 1e-6
        assert np.all(np.abs(p[r] - pm) < 4.5 * se + 1e-4), (r, p[r], pm)


def test_normalized_entropy_limits():
    q = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]], np.float32)
    s = np.array([[1.0, 1.0, 1.0], [0.01, 0.01, 0.01]], np.float32)
    h = np.asarray(choice.choice_entropy(q, s))
    np.testing.assert_allclose(h, [1.0, 0.0], atol=1e-5)
    # a hand value: p = (0.5, 0.5, 0) -> H / log A = log 2 / log 3
    p = np.array([0.5, 0.5, 0.0], np.float32)
    np.testing.assert_allclose(np.asarray(choice.normalized_entropy(p)), np.log(2) / np.log(3), rtol=1e-6)


def test_nodes_cached_inside_a_trace_do_not_leak_into_the_next():
    """The quadrature nodes are cached: the first call made while tracing must not cache a
    tracer (a second jit, e.g. the next config of ``python -m dra_jax.paper``, used it)."""
    import jax
    import jax.numpy as jnp

    from dra_jax.core import choice

    choice._legendre.cache_clear()
    q, s = jnp.zeros((2, 3)), jnp.ones((2, 3))
    a = jax.jit(lambda q, s: choice.choice_probs(q, s) * 1.0)(q, s)
    b = jax.jit(lambda q, s: choice.choice_probs(q, s) * 2.0)(q, s)
    assert jnp.allclose(2 * a, b) and jnp.allclose(a, 1 / 3, atol=1e-5)
