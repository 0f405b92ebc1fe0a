"""The planning trainer's sigma gradient (Psi = max) against exact derivatives.

The planner draws a fresh ``zeta`` at every step, so one step's choice between the two moves of
``(s, k)`` has probability ``p0 = E_z[sigmoid(beta (dq + |sigma_row| z))]`` (a one-dimensional
Gauss-Hermite integral; ``dq = q0 - q1``, ``|sigma_row|^2 = sigma0^2 + sigma1^2``), or 1 for a
move forced because its sibling's subtree is fully explored. A planning trial is then a finite
tree of histories whose probabilities are products of these ``p0``: enumerating it gives
``E[max path reward]`` exactly, for any budget. Its central finite difference in every sigma
must match the mean of many gradient estimates of :func:`dra_jax.planning.planner.sigma_ascent` (the
formula the trainer calls) within the estimate's standard error.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax.envs import planning as env
from dra_jax.planning import planner
from dra_jax.planning import trainer as pt

M = 3
BETA = 0.1  # soft enough that the score-function estimator resolves every gradient
GH_X, GH_W = np.polynomial.hermite_e.hermegauss(120)
GH_W = GH_W / GH_W.sum()


@functools.lru_cache(maxsize=None)
def _histories(budget: int):
    """Every history of a trial from each start state: ``(s0, factors, best)``, ``factors`` a
    tuple of ``(s, k, a, forced)`` per step. Mirrors the planner's rules independently: a move
    is allowed iff its subtree holds an unexplored leaf; a completed path restarts at the root;
    the trial stops when the budget is spent or every leaf is explored."""
    out = []
    n_leaves = 2 ** M

    def rec(s0, s, depth, prefix, cum, done, best, spent, factors):
        if spent >= budget or len(done) == n_leaves:
            out.append((s0, tuple(factors), best))
            return
        k = M - depth
        allowed = []
        for a in (0, 1):
            child = 2 * prefix + a
            w = 2 ** (k - 1)
            leaves = set(range(child * w, (child + 1) * w))
            allowed.append(not leaves <= done)
        for a in (0, 1):
            if not allowed[a]:
                continue
            forced = not allowed[1 - a]
            r = float(env.REWARD[s, a])
            f = factors + [(s, k, a, forced)]
            if depth + 1 == M:
                leaf = 2 * prefix + a
                rec(s0, s0, 0, 0, 0.0, done | {leaf}, max(best, cum + r), spent + 1, f)
            else:
                rec(s0, int(env.NEXT_STATE[s, a]), depth + 1, 2 * prefix + a, cum + r, done, best,
                    spent + 1, f)

    for s0 in range(env.N_STATES):
        rec(s0, s0, 0, 0, 0.0, frozenset(), -np.inf, 0, [])
    return out


@functools.lru_cache(maxsize=None)
def _history_matrix(budget: int):
    """Histories as exponent counts: prob = prod_r p0_r^n0[h, r] (1 - p0_r)^n1[h, r]."""
    hs = _histories(budget)
    n0 = np.zeros((len(hs), env.N_STATES * M))
    n1 = np.zeros_like(n0)
    start = np.zeros(len(hs), int)
    best = np.zeros(len(hs))
    for i, (s0, factors, b) in enumerate(hs):
        start[i], best[i] = s0, b
        for s, k, a, forced in factors:
            if not forced:
                (n0 if a == 0 else n1)[i, s * M + k - 1] += 1
    return n0, n1, start, best


def exact_expected_reward(q: np.ndarray, sigma: np.ndarray, budget: int, beta: float = BETA):
    """``E[max path reward]`` of one trial (uniform start state), float64, exact up to the
    Gauss-Hermite quadrature of each move probability."""
    dq = (q[..., 0] - q[..., 1]).reshape(-1)
    sd = np.sqrt(sigma[..., 0] ** 2 + sigma[..., 1] ** 2).reshape(-1)
    x = beta * (dq[:, None] + sd[:, None] * GH_X[None, :])
    p0 = (GH_W / (1.0 + np.exp(-x))).sum(axis=1)
    n0, n1, start, best = _history_matrix(budget)
    prob = np.exp(n0 @ np.log(p0) + n1 @ np.log1p(-p0))
    per_start = np.bincount(start, weights=prob * best, minlength=env.N_STATES)
    mass = np.bincount(start, weights=prob, minlength=env.N_STATES)
    np.testing.assert_allclose(mass, 1.0, atol=1e-12)  # the enumeration is complete
    return per_start.mean()


def _fd(f, x: np.ndarray, h: float) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _kl(sigma, sb):
    r = sigma / sb
    return np.sum(0.5 * (r * r - 1.0) - np.log(r))


@functools.partial(jax.jit, static_argnames=("n",))
def _estimates(q, sigma, budget, key, lam, sb, n):
    """``sigma_ascent`` on ``n`` trials, flexible and equal, and the per-trial Psi * score (for
    the standard errors)."""
    noise = planner.trial_noise(key, n, env.full_budget(M))
    res = planner.plan_batch(q, sigma, budget, BETA, noise)
    mask = jnp.ones(q.shape, bool)
    flex = planner.sigma_ascent(res, sigma, lam, sb, mask, False)
    equal = planner.sigma_ascent(res, sigma, lam, sb, mask, True)
    per_trial = jax.vmap(planner.trial_gradient)(res)
    return flex, equal, per_trial, res.n_paths


def _setup(seed):
    q = env.q_star(M).astype(np.float64)
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(8.0, 30.0, q.shape)
    return q, sigma


def _run_params(budget: int, **extra) -> dict:
    """One planning run's traced parameters (Table B.1, planning column; means fixed at q*)."""
    p = {k: np.float32(v) for k, v in dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0,
                                            lam=1.0, sigma_base=100.0, sigma0=50.0,
                                            sigma_min=0.01, sigma_max=100.0, a_dec=0.025,
                                            t_nondec=1.0).items()}
    p.update(budget=np.int32(budget), learn_q=np.bool_(False), learn_sigma=np.bool_(True),
             equal=np.bool_(False), rate=np.bool_(False), seed=np.uint32(0), **extra)
    return p


@pytest.mark.parametrize("budget", [M, 2 * M + 1])
def test_sigma_ascent_is_the_exact_gradient(budget):
    """Flexible (per-memory) and equal (one shared sigma: the sum over memories) ascent
    directions, averaged over 2^16 trials, match the finite-difference derivative of the exact
    F = E[max path reward] - lam * KL within 4.5 standard errors. Budget M samples one path; 2M + 1
    samples two complete paths and one step of a third (cut off: its score is zero-mean noise),
    so Psi = max differs from, e.g., the mean or the last path's reward."""
    q, sigma = _setup(budget)
    lam, sb = 0.5, 40.0
    n = 2 ** 16
    flex, equal, per_trial, n_paths = _estimates(
        jnp.asarray(q, jnp.float32), jnp.asarray(sigma, jnp.float32), jnp.int32(budget),
        jax.random.key(11), jnp.float32(lam), jnp.float32(sb), n)
    assert np.all(np.asarray(n_paths) == budget // M)
    se = np.asarray(per_trial, np.float64).std(axis=0) / np.sqrt(n)

    def F(s):
        return exact_expected_reward(q, s, budget) - lam * _kl(s, sb)

    fd = _fd(F, sigma, 1e-3)
    flex = np.asarray(flex, np.float64)
    assert np.sum(np.abs(fd) > 5 * se) >= 10  # the test resolves most of the gradient
    np.testing.assert_array_less(np.abs(flex - fd), 4.5 * se + 1e-6)
    # equal_sgd: every memory gets the mean of the partial derivatives, that is
    # d/ds F(s * 1) / N over the N learned memories (all of them here)
    s_equal = np.full_like(sigma, 15.0)
    flex_e, equal_e, per_trial_e, _ = _estimates(
        jnp.asarray(q, jnp.float32), jnp.asarray(s_equal, jnp.float32), jnp.int32(budget),
        jax.random.key(12), jnp.float32(lam), jnp.float32(sb), n)
    h = 1e-3
    d_shared = (F(s_equal + h) - F(s_equal - h)) / (2 * h)
    se_sum = np.asarray(per_trial_e, np.float64).reshape(n, -1).sum(axis=1).std() / np.sqrt(n)
    equal_e = np.asarray(equal_e, np.float64)
    assert np.ptp(equal_e) == 0.0
    n_mem = sigma.size
    assert abs(d_shared) > 5 * se_sum
    assert abs(equal_e[0, 0, 0] * n_mem - d_shared) < 4.5 * se_sum
    np.testing.assert_allclose(equal_e[0, 0, 0], np.asarray(flex_e, np.float64).mean(), rtol=1e-4)


def test_exact_reference_agrees_with_the_planner_by_monte_carlo():
    """The enumeration and the planner are the same process: E[max path reward] by 2^16
    planner trials matches the exact value within 4 SE, at two budgets (the enumeration is
    independent code, so a rule broken in either shows up here)."""
    q, sigma = _setup(0)
    for budget in (M, 2 * M + 1, 4 * M):
        noise = planner.trial_noise(jax.random.key(budget), 2 ** 16, env.full_budget(M))
        res = planner.plan_batch(jnp.asarray(q, jnp.float32), jnp.asarray(sigma, jnp.float32),
                                 budget, BETA, noise)
        r = np.asarray(res.best_reward, np.float64)
        exact = exact_expected_reward(q, sigma, budget)
        assert abs(r.mean() - exact) < 4 * r.std() / np.sqrt(r.size), (budget, r.mean(), exact)


def test_trainer_steps_sigma_by_sigma_ascent_only(monkeypatch):
    """The trainer has no gradient formula of its own: with planner.sigma_ascent replaced by a
    known table G, one SGD episode moves sigma to clip(sigma0 + alpha_sigma * G)."""
    G = jnp.asarray(np.random.default_rng(3).normal(0, 5, (env.N_STATES, M, 2)), jnp.float32)
    calls = []

    def fake(res, sigma, lam, sb, mask, equal, weight=1.0, baseline=0, b_past=None):
        calls.append(res.score.shape)
        return G

    monkeypatch.setattr(planner, "sigma_ascent", fake)
    st = pt.PlanStatic(moves=M, n_traj=4, episodes=1, every=1)
    p = _run_params(budget=6)
    ts = pt.advance(st, p, pt.init(st, p), 1)
    assert calls == [(4, env.N_STATES, M, 2)]  # called once, on the n_traj gradient trials
    np.testing.assert_allclose(ts.sigma, np.clip(50.0 + 0.1 * np.asarray(G), 0.01, 100.0),
                               rtol=1e-6)


@functools.partial(jax.jit, static_argnames=("n_updates", "n_traj"))
def _update_estimates(q, sigma, budget, key, beta, baseline, past, n_updates, n_traj):
    """``n_updates`` independent sigma updates of ``n_traj`` trials each: the reward part of
    the ascent direction (lam = 0) of each with the baseline ``baseline`` (``past[s0]`` the
    loo_start fallback, or None) and without (the paper's estimator), on the SAME trials
    (common noise)."""
    noise = planner.trial_noise(key, n_updates * n_traj, env.full_budget(M))
    res = planner.plan_batch(q, sigma, budget, beta, noise)
    res = jax.tree.map(lambda x: x.reshape((n_updates, n_traj) + x.shape[1:]), res)
    mask = jnp.ones(q.shape, bool)

    def one(r, code):
        b_past = None if past is None else past[r.step_state[:, 0]]
        return planner.sigma_ascent(r, sigma, 0.0, 100.0, mask, False, 1.0, code, b_past)

    return jax.vmap(lambda r: one(r, baseline))(res), jax.vmap(lambda r: one(r, 0))(res)


def _estimates_np(q, sigma, budget, beta, baseline, n_traj, n_up, key=21, past=None):
    est, plain = _update_estimates(
        jnp.asarray(q, jnp.float32), jnp.asarray(sigma, jnp.float32), jnp.int32(budget),
        jax.random.key(key), jnp.float32(beta), jnp.int32(planner.BASELINES.index(baseline)),
        past, n_up, n_traj)
    return np.asarray(est, np.float64), np.asarray(plain, np.float64)


@pytest.mark.parametrize("baseline,n_traj", [("loo", 2), ("loo_start", 4)])
def test_baselines_are_unbiased_and_reduce_variance(baseline, n_traj):
    """Updates of few trials (n_traj = 2 for loo, where a biased baseline shows most:
    including trial i in its own baseline halves the gradient; 4 for loo_start, so that trials
    often share a start state), budget M (one path per trial) and beta = 0.05 (soft enough
    that no choice is a rare event): the mean over 2^15 / n_traj updates of the reward
    gradient with the baseline matches the finite-difference derivative of the exact
    E[max path reward] within 4.5 SE, with most entries resolved (> 5 SE). At the full budget
    (Psi = the start state's best path, whatever sigma is) the baseline's spread is well below
    the paper's estimator's on the same trials."""
    beta = 0.05
    q, sigma = _setup(M)
    n_up = 2 ** 15 // n_traj
    est, _ = _estimates_np(q, sigma, M, beta, baseline, n_traj, n_up)
    se = est.std(axis=0) / np.sqrt(n_up)
    fd = _fd(lambda s: exact_expected_reward(q, s, M, beta), sigma, 1e-3)
    assert np.sum(np.abs(fd) > 5 * se) >= 15  # the test resolves most of the gradient
    np.testing.assert_array_less(np.abs(est.mean(axis=0) - fd), 4.5 * se + 1e-6)
    est, plain = _estimates_np(q, sigma, env.full_budget(M), beta, baseline, n_traj, n_up)
    ratio = np.sqrt(np.sum(est.var(axis=0)) / np.sum(plain.var(axis=0)))
    assert ratio < {"loo": 0.8, "loo_start": 0.7}[baseline], ratio
    if baseline == "loo_start":  # with the right past mean as the fallback: no noise at all
        past = jnp.asarray(env.best_paths(M))
        est, plain = _estimates_np(q, sigma, env.full_budget(M), beta, baseline, n_traj, n_up,
                                   past=past)
        assert np.all(est == 0.0) and np.any(plain != 0.0)


def test_loo_start_baseline_by_hand():
    """The three baselines on 5 trials, against their definitions computed by hand."""
    psi = jnp.asarray([10.0, 20.0, 40.0, 70.0, 5.0])
    s0 = jnp.asarray([0, 1, 0, 0, 3])
    loo = np.asarray([(psi.sum() - p) / 4 for p in psi])
    # start state 0: trials 0, 2, 3 (each the mean of the other two); 1 and 3: alone -> loo
    start = np.asarray([(40.0 + 70.0) / 2, loo[1], (10.0 + 70.0) / 2, (10.0 + 40.0) / 2, loo[4]])
    np.testing.assert_allclose(planner.psi_baseline(psi, 0, s0), psi)
    np.testing.assert_allclose(planner.psi_baseline(psi, 1, s0), psi - loo, rtol=1e-6)
    np.testing.assert_allclose(planner.psi_baseline(psi, 2, s0), psi - start, rtol=1e-6)
    # with the trainer's past-only fallback, the trials without a partner use it instead
    past = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0])
    start[[1, 4]] = [2.0, 5.0]
    np.testing.assert_allclose(planner.psi_baseline(psi, 2, s0, past), psi - start, rtol=1e-6)


def test_trainer_fallback_baseline_is_from_past_updates_only(monkeypatch):
    """loo_start's fallback b_past (a running mean of Psi per start state) must not contain the
    current update's trials (that would bias the gradient): the first update sees zeros, the
    second the mean folded in after the first, which equals the first update's mean Psi per
    start state (weight 1 / count on the first visits)."""
    seen = []

    def fake(res, sigma, lam, sb, mask, equal, weight=1.0, baseline=0, b_past=None):
        jax.debug.callback(lambda *a: seen.append([np.asarray(x) for x in a]),
                           res.step_state[:, 0], res.best_reward, b_past)
        return jnp.zeros_like(sigma)

    monkeypatch.setattr(planner, "sigma_ascent", fake)
    st = pt.PlanStatic(moves=M, n_traj=12, episodes=2, every=1)
    p = _run_params(budget=4, baseline=np.int32(2))
    key = pt._keys(p)[0]
    step = jax.jit(lambda ts: pt.episode(st, p, ts, key))
    ts1 = step(pt.init(st, p))
    jax.block_until_ready(step(ts1))
    (s1, psi1, past1), (s2, _, past2) = seen
    assert np.all(past1 == 0.0)
    mean1 = np.asarray([psi1[s1 == s].mean() if (s1 == s).any() else 0.0 for s in range(6)])
    np.testing.assert_allclose(np.asarray(ts1.psi_mean), mean1, rtol=1e-6)
    np.testing.assert_allclose(past2, mean1[s2], rtol=1e-6)
