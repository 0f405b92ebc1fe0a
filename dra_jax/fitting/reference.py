"""A plain-NumPy particle filter of the same models (float64; for tests and benchmarks).

Written straight from the algorithm in :mod:`dra_jax.fitting.particle`: a Python loop over one
subject's trials, NumPy arrays over particles, its own random numbers (``numpy.random``). It is
the yardstick of ``benchmarks/bench_fit.py`` and the independent implementation the tests
compare the JAX filter with (exact likelihood of deterministic models; brute-force Monte Carlo
of the likelihood of DRA). Its choice probabilities come from its own randomized integration
over zeta (:func:`action_probs`), not the filter's nodes, so a bias of the filter's node rule
shows up against it.
"""
from __future__ import annotations

import numpy as np

from dra_jax.fitting import models


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


REF_SEED = 7  # the reference's own Sobol scramble (the JAX filter's nodes use seed 0)


def sobol_uniforms(n_points: int, n_actions: int, seed: int = REF_SEED) -> np.ndarray:
    """``[n, A]`` scrambled Sobol uniforms of the reference's own scramble (float64)."""
    import warnings

    from scipy.stats import qmc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-power-of-two n: still uniform points
        return qmc.Sobol(n_actions, scramble=True, seed=seed).random(n_points)


def rqmc_nodes(n_points: int, n_actions: int, rng: np.random.Generator, n_sets: int):
    """``[n_sets, n, A]`` standard normals: the reference's Sobol points under independent
    Cranley-Patterson random shifts ``(u + d) mod 1`` (one ``d ~ U[0, 1)^A`` a set), so each
    set's average of ``f(zeta)`` is an unbiased estimate of ``E_{zeta ~ N(0, I)} f(zeta)``; an
    implementation of randomized QMC apart from the filter's digital shift
    (:mod:`dra_jax.fitting.zeta`)."""
    from scipy.special import ndtri

    u = (sobol_uniforms(n_points, n_actions)[None] + rng.random((n_sets, 1, n_actions))) % 1.0
    return ndtri(np.clip(u, 1e-300, 1.0 - 2.0**-53))


def action_probs(st: models.Static, theta, q_row, s_row, rng=None, n_nodes: int = 1024,
                 nodes=None):
    """``P(. | s)`` for rows ``q_row, s_row [P, A]`` -> ``[P, A]`` (float64).

    The reference's own integration over zeta, independent of the filter's nodes: ``n_nodes``
    randomized Sobol points (:func:`rqmc_nodes`), a fresh shift for every row from ``rng``, so
    each row's probabilities are an unbiased estimate of the model's ``P(. | s)`` and rows and
    calls are independent. ``nodes = (nodes [K, A], weights [K])``: exactly those nodes instead
    (a check of the arithmetic on the filter's own rule, e.g. ``models.zeta_nodes(st)``)."""
    beta = theta[1]
    if st.kind == "qlearn":
        return _softmax(beta * q_row)
    if nodes is not None:
        z, w = (np.asarray(x, np.float64) for x in nodes)
        p = _softmax(beta * (q_row[:, None, :] + z[None] * s_row[:, None, :]))  # [P, K, A]
        return np.einsum("k,pka->pa", w, p)
    z = rqmc_nodes(n_nodes, st.n_actions, rng, q_row.shape[0])  # [P, K, A]
    return _softmax(beta * (q_row[:, None, :] + z * s_row[:, None, :])).mean(1)


def fine_probs(theta, q_row, s_row, n_points: int = 2**15, n_sets: int = 4, seed: int = 0):
    """``P(. | s) [A]`` of one row by ``n_sets`` independent randomized Sobol sets of
    ``n_points`` each (``n_sets * n_points`` = 2^17 by default; float64), and the standard error
    of that mean over the sets (a yardstick for tests of node rules)."""
    rng = np.random.default_rng(seed)
    q_row, s_row = np.asarray(q_row, np.float64), np.asarray(s_row, np.float64)
    z = rqmc_nodes(n_points, q_row.size, rng, n_sets)  # [n_sets, n, A]
    est = _softmax(theta[1] * (q_row + z * s_row)).mean(1)  # [n_sets, A]
    return est.mean(0), est.std(0, ddof=1) / np.sqrt(n_sets)


def update(st: models.Static, theta, q, sigma, s, a, r, block, rng):
    """One observed trial for all particles (``q, sigma [P, S, A]``), in place; plain SGD."""
    lam, beta, alpha_q, alpha_sigma, sigma_base, _ = theta
    q[:, s, a] += alpha_q * (r - q[:, s, a])
    if not models.STOCHASTIC[st.kind]:
        return
    n_p, n_s, n_a = q.shape
    stim = np.flatnonzero(block)
    g = np.zeros_like(sigma)
    rows = np.arange(n_p)
    for _ in range(st.n_traj):
        s2 = stim[rng.integers(0, stim.size, n_p)]
        zeta = rng.standard_normal((n_p, n_a))
        qr, sr = q[rows, s2], sigma[rows, s2]
        p = _softmax(beta * (qr + zeta * sr))
        u = rng.random(n_p)
        a2 = np.minimum((p.cumsum(-1) <= u[:, None]).sum(-1), n_a - 1)
        q_sa = qr[rows, a2]
        psi = q_sa - qr.mean(-1) if st.psi == "A" else q_sa
        onehot = np.eye(n_a)[a2]
        g[rows, s2] += (psi / st.n_traj)[:, None] * beta * zeta * (onehot - p)
    learn = np.broadcast_to((block > 0)[None, :, None], g.shape)
    g = np.where(learn, g - lam * (sigma / sigma_base**2 - 1.0 / sigma), 0.0)
    if st.kind == "dra_equal":
        g = np.where(learn, g.sum(axis=(1, 2), keepdims=True), 0.0)
    sigma += alpha_sigma * g
    np.clip(sigma, st.sigma_min, st.sigma_max, out=sigma)


def loglik(st: models.Static, theta, s, a, r, new_block, block, n_particles: int,
           rng: np.random.Generator, ess_threshold: float = 0.5, resample: bool = True,
           n_nodes: int = 1024, nodes=None) -> float:
    """Log-likelihood estimate of one subject's trials (``a = -1``: missed). ``P(a | s)`` by
    :func:`action_probs` (its own ``n_nodes`` randomized points a particle and trial, so
    ``exp`` of the result is an unbiased estimate of the model's likelihood; ``nodes``: a
    fixed rule instead)."""
    theta = np.asarray(theta, np.float64)
    n_p = n_particles
    shape = (n_p, st.n_states, st.n_actions)
    q = np.zeros(shape)
    sigma = np.full(shape, theta[5])
    logw = np.full(n_p, -np.log(n_p))
    ll = 0.0
    for t in range(len(s)):
        if new_block[t]:
            q[:] = 0.0
            sigma[:] = theta[5]
            logw[:] = -np.log(n_p)
        if a[t] < 0:
            continue
        w = action_probs(st, theta, q[:, s[t]], sigma[:, s[t]], rng, n_nodes, nodes)[:, a[t]]
        lw = logw + np.log(np.maximum(w, 1e-30))
        m = lw.max()
        inc = m + np.log(np.exp(lw - m).sum())
        ll += inc
        logw = lw - inc
        if resample and n_p > 1 and 1.0 / np.exp(2 * logw).sum() < ess_threshold * n_p:
            c = np.cumsum(np.exp(logw))
            idx = np.minimum(np.searchsorted(c, (rng.random() + np.arange(n_p)) / n_p * c[-1],
                                             side="right"), n_p - 1)
            q, sigma = q[idx].copy(), sigma[idx].copy()
            logw[:] = -np.log(n_p)
        update(st, theta, q, sigma, s[t], a[t], r[t], block[t], rng)
    return ll
