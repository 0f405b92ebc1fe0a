"""A plain-NumPy particle filter of the same models (float64; for tests and benchmarks).

Written straight from the algorithm in :mod:`dra_jax.fitting.particle`: a Python loop over one
subject's trials, NumPy arrays over particles, its own random numbers (``numpy.random``). It is
the yardstick of ``benchmarks/bench_fit.py`` and the independent implementation the tests
compare the JAX filter with (exact likelihood of deterministic models; brute-force Monte Carlo
of the likelihood of DRA).
"""
from __future__ import annotations

import numpy as np

from dra_jax.fitting import models


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def action_probs(st: models.Static, theta, q_row, s_row):
    """``P(. | s)`` for rows ``q_row, s_row [P, A]`` -> ``[P, A]`` (same zeta nodes as JAX)."""
    beta = theta[1]
    if st.kind == "qlearn":
        return _softmax(beta * q_row)
    nodes, weights = (np.asarray(x, np.float64) for x in models.zeta_nodes(st))
    p = _softmax(beta * (q_row[:, None, :] + nodes[None] * s_row[:, None, :]))  # [P, K, A]
    return np.einsum("k,pka->pa", weights, p)


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
           rng: np.random.Generator, ess_threshold: float = 0.5, resample: bool = True) -> float:
    """Log-likelihood estimate of one subject's trials (``a = -1``: missed)."""
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
        w = action_probs(st, theta, q[:, s[t]], sigma[:, s[t]])[:, a[t]]
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
