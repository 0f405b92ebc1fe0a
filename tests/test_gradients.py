"""KL and its gradient; Eq. 5 against autodiff; unbiasedness of the R-gradient."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax.core import gradients, memory, policy


def test_kl_matches_closed_form_and_autodiff():
    sigma = jnp.array([0.3, 1.0, 5.0, 7.5], jnp.float32)
    sb = 5.0
    # closed form of KL(N(m, s^2) || N(m, sb^2)) = log(sb/s) + s^2/(2 sb^2) - 1/2
    expected = np.log(sb / np.asarray(sigma)) + np.asarray(sigma) ** 2 / (2 * sb**2) - 0.5
    np.testing.assert_allclose(memory.kl_per_memory(sigma, sb), expected, rtol=1e-6)
    assert float(memory.kl_per_memory(jnp.float32(sb), sb)) == pytest.approx(0.0, abs=1e-7)
    auto = jax.grad(lambda s: memory.kl_cost(s, sb))(sigma)
    np.testing.assert_allclose(memory.kl_grad(sigma, sb), auto, rtol=1e-6, atol=1e-7)  # exact 0 at sb
    np.testing.assert_allclose(memory.kl_grad(sigma, sb), np.asarray(sigma) / sb**2 - 1 / np.asarray(sigma),
                               rtol=1e-6, atol=1e-7)
    mask = jnp.array([True, False, True, False])
    assert float(memory.kl_cost(sigma, sb, mask)) == pytest.approx(expected[0] + expected[2], rel=1e-6)


def test_analytic_and_autodiff_scores_agree_on_trajectories():
    """Same states, noise and actions: Eq. 5 and jax.grad agree to float32 precision."""
    key = jax.random.key(0)
    S, A, T = 12, 4, 400
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    q = jax.random.normal(k1, (S, A)) * 3
    sigma = jax.random.uniform(k2, (S, A), minval=0.1, maxval=5.0)
    states = jax.random.randint(k3, (T,), 0, S)
    zetas = jax.random.normal(k4, (T, A))
    us = jax.random.uniform(k5, (T,))
    beta = 10.0

    def both(s, z, u):
        p = policy.probs(q[s], sigma[s], z, beta)
        a = policy.sample_action(p, u)
        return (gradients.score_analytic(p, z, beta, a),
                gradients.score_autodiff(q[s], sigma[s], z, beta, a))

    an, au = jax.vmap(both)(states, zetas, us)
    np.testing.assert_allclose(an, au, rtol=1e-5, atol=1e-5 * float(jnp.abs(an).max()))
    assert float(jnp.abs(an).max()) > 1.0  # a real signal, not zeros


def test_r_gradient_is_unbiased_on_a_one_state_bandit():
    """One state, 3 arms, reward r_a: the mean of many Psi = R estimates of d E[r] / d sigma
    matches the finite-difference derivative of E[r], computed exactly by Gauss-Hermite
    quadrature over zeta, within 4 standard errors."""
    beta = 2.0
    q = np.array([1.0, 0.6, 0.0])
    r = np.array([1.0, 0.6, 0.0])
    sigma0 = np.array([0.5, 1.2, 0.8])

    x, w = np.polynomial.hermite_e.hermegauss(40)  # probabilists' Hermite: weight exp(-x^2/2)
    w = w / w.sum()

    def expected_reward(sig):
        total = 0.0
        for (i, zi), (j, zj), (k, zk) in itertools.product(enumerate(x), repeat=3):
            z = np.array([zi, zj, zk])
            lg = beta * (q + z * sig)
            p = np.exp(lg - lg.max())
            p /= p.sum()
            total += w[i] * w[j] * w[k] * p @ r
        return total

    h = 1e-3
    fd = np.array([(expected_reward(sigma0 + h * e) - expected_reward(sigma0 - h * e)) / (2 * h)
                   for e in np.eye(3)])

    n = 400_000
    key = jax.random.key(1)
    kz, ku = jax.random.split(key)
    z = jax.random.normal(kz, (n, 3))
    u = jax.random.uniform(ku, (n,))
    qj, sj, rj = jnp.asarray(q, jnp.float32), jnp.asarray(sigma0, jnp.float32), jnp.asarray(r, jnp.float32)

    def one(zz, uu):
        p = policy.probs(qj, sj, zz, beta)
        a = policy.sample_action(p, uu)
        return rj[a] * gradients.score_analytic(p, zz, beta, a)  # Psi = R (one-step episode)

    est = np.asarray(jax.vmap(one)(z, u), np.float64)
    mean, se = est.mean(0), est.std(0) / np.sqrt(n)
    assert np.all(np.abs(fd) > 5 * se)  # the gradient is resolvable at this n
    np.testing.assert_array_less(np.abs(mean - fd), 4 * se)


def test_choice_entropy_extremes():
    q = jnp.array([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])
    sigma = jnp.array([[1.0] * 4, [0.01] * 4])
    h = policy.choice_entropy(jax.random.key(0), q, sigma, 100_000)
    assert float(h[0]) == pytest.approx(1.0, abs=2e-3)  # four equal memories: uniform choice
    assert float(h[1]) == pytest.approx(0.0, abs=1e-6)  # one dominant, precise memory
