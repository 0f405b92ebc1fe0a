"""DRA as inference (Acerbi et al. 2022): the entropy term and the ELBO objectives."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax import agent, policy
from dra_jax.envs.gridworld import GridTask

TASK = GridTask()
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True, objective="dra")


def test_entropy_gradient_matches_finite_difference():
    key = jax.random.key(3)
    q = jnp.array([0.3, -0.2, 0.1, 0.0])
    zeta = jax.random.normal(key, (4,))
    sigma = jnp.array([0.4, 0.7, 0.2, 0.5])
    beta = 2.0
    g = np.asarray(jax.grad(policy.entropy)(sigma, q, zeta, beta), np.float64)
    f = lambda s: float(policy.entropy(jnp.asarray(s, jnp.float32), q, zeta, beta))  # noqa: E731
    h = 1e-2
    fd = np.array([(f(np.asarray(sigma) + h * e) - f(np.asarray(sigma) - h * e)) / (2 * h) for e in np.eye(4)])
    assert np.abs(g).max() > 0.05
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-3)  # central difference in float32
    # and against float64 NumPy
    def h64(s):
        lg = beta * (np.asarray(q, np.float64) + np.asarray(zeta, np.float64) * s)
        lp = lg - lg.max() - np.log(np.exp(lg - lg.max()).sum())
        return -(np.exp(lp) * lp).sum()
    fd64 = np.array([(h64(np.asarray(sigma, np.float64) + 1e-6 * e) - h64(np.asarray(sigma, np.float64) - 1e-6 * e)) / 2e-6
                     for e in np.eye(4)])
    np.testing.assert_allclose(g, fd64, rtol=1e-4, atol=1e-5)


def _train(st, dras, seeds):
    params = agent.stack_params([agent.make_run_params(d, s) for d, s in zip(dras, seeds)])
    return jax.tree.map(np.asarray, agent.train_batch(TASK, st, params))


def test_elbo_with_lambda_zero_equals_dra_with_lambda_zero():
    st = agent.AgentStatic(episodes=25, n_traj=4, max_steps=200, eval_every=5, n_rollouts=5,
                           need_entropy=True)
    objs = ["dra", "elbo", "elbo_step"]
    out = _train(st, [dict(DRA, lam=0.0, objective=o) for o in objs], [1, 1, 1])
    for i in (1, 2):
        np.testing.assert_array_equal(out.sigma[i], out.sigma[0])
        np.testing.assert_array_equal(out.q[i], out.q[0])
        np.testing.assert_array_equal(out.curves[i][:, :4], out.curves[0][:, :4])
    assert np.all(out.curves[:, :, 4] == 0.0)  # the entropy term vanishes with lam
    # and the program compiled without the ELBO terms gives the very same dra run
    plain = _train(st._replace(need_entropy=False), [dict(DRA, lam=0.0)], [1])
    np.testing.assert_array_equal(plain.sigma[0], out.sigma[0])


def test_elbo_objectives_differ_and_are_evaluated_as_defined():
    st = agent.AgentStatic(episodes=40, n_traj=4, max_steps=200, eval_every=10, n_rollouts=10,
                           need_entropy=True)
    objs = ["dra", "elbo_step", "elbo"]
    out = _train(st, [dict(DRA, objective=o) for o in objs], [2, 2, 2])
    assert not np.allclose(out.sigma[0], out.sigma[1])
    assert not np.allclose(out.sigma[0], out.sigma[2])
    c = out.curves
    # objective = expected reward - cost + entropy term, for every objective
    np.testing.assert_allclose(c[:, :, 0], c[:, :, 1] - c[:, :, 2] + c[:, :, 4], rtol=1e-5, atol=1e-4)
    assert np.all(c[0, :, 4] == 0.0)
    assert np.all(c[1:, :, 4] > 0.0)  # lam * entropy sums are positive
    assert np.all(c[1, :, 2] > 0.0)  # elbo_step's per-access KL cost
    # Eq. 10's bonus is (lam / T) sum_t H_t <= lam * log(4)
    assert np.all(c[2, :, 4] <= 0.2 * np.log(4) + 1e-5)
