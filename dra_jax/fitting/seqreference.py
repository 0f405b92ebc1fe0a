"""A plain-NumPy (float64) likelihood of the sequential models, for tests: written from the
description in :mod:`dra_jax.fitting.sequential` with its own random numbers
(``numpy.random``), a Python loop over one subject's steps, NumPy arrays over M independent
latent paths (no resampling). ``log mean_i prod_t P(a_t | s_t; z_i)`` is the brute-force Monte
Carlo estimate of the likelihood (exact for a deterministic model with M = 1).
"""
from __future__ import annotations

import numpy as np

from dra_jax.fitting import models
from dra_jax.fitting.reference import rqmc_nodes
from dra_jax.fitting.sequential import GAMMA, SeqStatic, task_of


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def sigma_update(sst: SeqStatic, theta, q, sigma, rng: np.random.Generator):
    """DRA's end-of-episode update of ``sigma [M, S, A]`` for M independent paths: ``n_traj``
    rollouts from the start state under ``(q, sigma)``, then one plain SGD step, clipped."""
    st = sst.base
    lam, beta, _, alpha_sigma, sigma_base = (float(x) for x in theta[:5])
    task = task_of(sst.maze)
    nxt, term = task.tables.next_state[0], task.tables.terminal[0]
    learn = task.learnable
    m, na, j = q.shape[0], st.n_actions, st.n_traj
    paths = np.arange(m)
    g = np.zeros_like(q)
    cur = np.full((m, j), task.tables.start)
    run = np.ones((m, j), bool)
    for i in range(sst.max_steps):
        if not run.any():
            break
        qr, sr = q[paths[:, None], cur], sigma[paths[:, None], cur]  # [M, J, A]
        z = rng.standard_normal((m, j, na))
        pr = _softmax(beta * (qr + z * sr))
        u = rng.random((m, j))
        act = np.minimum((np.cumsum(pr, -1) <= u[..., None]).sum(-1), na - 1)
        onehot = np.eye(na)[act]
        psi = (qr * onehot).sum(-1) - (qr.mean(-1) if st.psi == "A" else 0.0)
        c = np.where(run[..., None], psi[..., None] * beta * z * (onehot - pr), 0.0)
        np.add.at(g, (paths[:, None].repeat(j, 1), cur), c)
        s_next = nxt[cur, act]
        run = run & ~term[s_next] & (i + 1 < sst.max_steps)
        cur = np.where(run, s_next, cur)
    asc = np.where(learn, g / j - lam * (sigma / sigma_base**2 - 1.0 / sigma), 0.0)
    if st.kind == "dra_equal":
        asc = np.where(learn, asc.sum(axis=(1, 2), keepdims=True), 0.0)
    return np.clip(sigma + alpha_sigma * asc, st.sigma_min, st.sigma_max)


def loglik(sst: SeqStatic, theta, steps, n_paths: int, rng: np.random.Generator,
           n_nodes: int = 256) -> float:
    """``steps``: rows ``(s, a, r, s2, done, end, new_block)`` of one subject (``a = -1``:
    missed); ``end``: the episode ends after this row. ``P(a | s)`` of each path and step is the
    reference's own randomized-QMC estimate (:func:`dra_jax.fitting.reference.rqmc_nodes`:
    ``n_nodes`` points, a fresh shift each time, unbiased), not the filter's nodes, so the
    result's ``exp`` is an unbiased estimate of the model's likelihood."""
    st = sst.base
    beta, alpha_q, sigma0 = float(theta[1]), float(theta[2]), float(theta[5])
    gamma = float(theta[GAMMA])
    eps, kappa, f = (float(theta[models.EPSILON]), float(theta[models.STICK]),
                     float(theta[models.FORGET]))
    m, na = n_paths, st.n_actions
    log_w = np.zeros(m)
    q = sigma = prev = None
    for s, a, r, s2, done, end, new_block in steps:
        if new_block:
            q = np.zeros((m, st.n_states, na))
            sigma = np.full_like(q, sigma0)
            prev = np.zeros(na)  # one-hot of the last answered choice (none yet)
        if a >= 0:
            row = q[:, s] + (kappa * prev if st.stick else 0.0)  # perseveration bonus
            if st.kind == "qlearn":
                p = _softmax(beta * row)[:, a]
            else:
                nodes = rqmc_nodes(n_nodes, na, rng, m)  # [M, K, A]
                p = _softmax(beta * (row[:, None, :] + nodes * sigma[:, s, None, :]))[
                    ..., a].mean(1)
            if st.lapse:
                p = eps / na + (1.0 - eps) * p
            log_w += np.log(p)
            if st.kind == "qlearn":
                p2 = _softmax(beta * q[:, s2])
            else:
                p2 = _softmax(beta * (q[:, s2] + rng.standard_normal((m, na)) * sigma[:, s2]))
            target = r + gamma * (1.0 - done) * np.sum(p2 * q[:, s2], axis=1)
            if st.forget:  # every mean decays toward 0 (after the target is formed)
                q *= 1.0 - f
            q[:, s, a] += alpha_q * (target - q[:, s, a])
            prev = np.eye(na)[a]
        if end and st.kind in ("dra", "dra_equal"):
            sigma = sigma_update(sst, theta, q, sigma, rng)
    mx = log_w.max()
    return float(mx + np.log(np.mean(np.exp(log_w - mx))))
