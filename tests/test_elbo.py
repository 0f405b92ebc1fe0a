"""DRA as inference (Acerbi et al. 2022): the entropy term and the ELBO objectives."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.core import policy
from dra_jax.envs.gridworld import GridTask
from dra_jax.lane import agent, batching

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
    fd64 = np.array([(h64(np.asarray(sigma, np.float64) + 1e-6 * e)
                      - h64(np.asarray(sigma, np.float64) - 1e-6 * e)) / 2e-6
                     for e in np.eye(4)])
    np.testing.assert_allclose(g, fd64, rtol=1e-4, atol=1e-5)


def _train(st, dras, seeds):
    params = agent.stack_params([agent.make_run_params(d, s) for d, s in zip(dras, seeds)])
    return jax.tree.map(np.asarray, batching.train_batch(TASK, st, params))


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


@dataclass(frozen=True)
class OneState:
    """One state, three actions, rewards = the memories' means. ``tparams["loop"]`` (traced):
    false, every action ends the episode (T = 1); true, only action 0 does, the others come
    back to the state (T geometric, mean 1 / P(a = 0))."""

    n_states = 1
    n_actions = 3
    learnable = np.ones((1, 3), bool)

    def reset(self, u, tparams, episode):
        return jnp.int32(0)

    def step(self, state, action, tparams, episode):
        stop = jnp.where(tparams["loop"], action == 0, True)
        return jnp.int32(0), jnp.asarray(ONE_Q, jnp.float32)[action], stop

    def row(self, state, tparams):
        return state

    def q_star(self):
        return np.asarray([ONE_Q], np.float32)


ONE_Q = (0.5, 1.0, -0.5)
GH_X, GH_W = np.polynomial.hermite_e.hermegauss(32)
GH_W = GH_W / GH_W.sum()
ZGRID = np.stack(np.meshgrid(GH_X, GH_X, GH_X, indexing="ij"), -1).reshape(-1, 3)
WGRID = np.einsum("i,j,k->ijk", GH_W, GH_W, GH_W).reshape(-1)


def exact_terms(sigma, beta, lam, sb, loop, objective):
    """Exact [objective, expected reward, cost, entropy term] of the one-state task by
    Gauss-Hermite quadrature over zeta (float64). Steps are i.i.d. given sigma, so with
    ``E[T] = 1 / P(a = 0)`` (loop) or 1 (no loop), Wald's identity gives
    E[sum_t r_t] = E[T] sum_a pbar_a r_a and E[sum_t H_t] = E[T] Hbar."""
    r = np.asarray(ONE_Q)
    x = beta * (r[None, :] + ZGRID * sigma[None, :])
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    pbar = WGRID @ p
    hbar = WGRID @ -(p * np.log(p)).sum(axis=1)
    kl = np.sum(0.5 * ((sigma / sb) ** 2 - 1.0) - np.log(sigma / sb))
    et = 1.0 / pbar[0] if loop else 1.0
    reward = et * (pbar @ r)
    if objective == "elbo_step":  # Eq. 8: per-access KL and entropy at every step
        cost, ent = lam * et * kl, lam * et * hbar
    elif objective == "elbo":  # Eq. 10 (T = 1 here: its entropy term is lam * Hbar)
        assert not loop
        cost, ent = lam * kl, lam * hbar
    else:
        cost, ent = lam * kl, 0.0
    return np.array([reward - cost + ent, reward, cost, ent])


# (loop, objective, psi): Psi = R on the looping task sees every term through the returns;
# Eq. 10's entropy bonus is differentiated pathwise only, exact where T and the states do not
# depend on sigma (T = 1); Psi = A and Q are unbiased when q is the task's Q-function (T = 1).
CASES = [(True, "dra", "R"), (True, "elbo_step", "R"), (False, "elbo", "A"),
         (False, "elbo_step", "Q")]


def test_mean_sigma_gradient_matches_the_exact_objective():
    """One episode of SGD with alpha_sigma = 1 moves sigma by one gradient estimate (the mean of
    n_traj trajectories). Over 256 runs per case (16384 trajectories) the mean matches the central finite difference
    of the exact objective within 4 SE, for Eq. 1 and Eq. 8 (Psi = R on the looping task) and
    Eq. 10 and Eq. 8 (Psi = A, Q on the one-step task); the k = 0 evaluation of the objective,
    expected reward, cost and entropy term matches the exact values too."""
    beta, lam, sb, sigma0 = 2.0, 0.5, 3.0, 0.8
    runs, n_traj, n_rollouts = 256, 64, 16
    st = agent.AgentStatic(episodes=1, n_traj=n_traj, max_steps=100, eval_every=1,
                           n_rollouts=n_rollouts, q_init="optimal", need_R=True,
                           need_entropy=True)
    base = dict(DRA, beta=beta, lam=lam, sigma_base=sb, sigma0=sigma0, alpha_sigma=1.0,
                sigma_min=1e-3, sigma_max=1e3, learn_q=False)
    params = [agent.make_run_params(dict(base, objective=obj, psi=psi), 1000 * c + i,
                                    {"loop": loop})
              for c, (loop, obj, psi) in enumerate(CASES) for i in range(runs)]
    out = jax.tree.map(np.asarray, batching.train_batch(OneState(), st, agent.stack_params(params)))
    assert np.all(out.truncations == 0)
    g = (out.sigma[:, 0, :].astype(np.float64) - sigma0).reshape(len(CASES), runs, 3)
    ev = out.curves[:, 0, :].astype(np.float64).reshape(len(CASES), runs, agent.N_CURVES)
    s0 = np.full(3, sigma0)
    h = 1e-4
    for c, (loop, obj, psi) in enumerate(CASES):
        F = lambda s: exact_terms(s, beta, lam, sb, loop, obj)[0]  # noqa: E731
        fd = np.array([(F(s0 + h * e) - F(s0 - h * e)) / (2 * h) for e in np.eye(3)])
        mean, se = g[c].mean(0), g[c].std(0) / np.sqrt(runs)
        assert np.sum(np.abs(fd) > 5 * se) >= 2, (obj, psi, fd, se)  # resolvable
        np.testing.assert_array_less(np.abs(mean - fd), 4 * se, err_msg=f"{obj} psi={psi}")
        exact = exact_terms(s0, beta, lam, sb, loop, obj)
        est = ev[c][:, [0, 1, 2, 4]]
        se_ev = est.std(0) / np.sqrt(runs) + 1e-6
        np.testing.assert_array_less(np.abs(est.mean(0) - exact), 4 * se_ev,
                                     err_msg=f"evaluation of {obj}")
