"""Simulated subjects: the fittable agents acting on stimulus-response trial sequences.

The agent draws its own ``zeta`` and action on every trial (soft Thompson, Sec. 2.3), is
rewarded by the task, and updates exactly as in :func:`dra_jax.fitting.models.update` (its own
gradient rollouts included). Used to make synthetic data sets, for parameter and model recovery,
and for the posterior predictive check. One jitted call: vmap over agents, scan over trials.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from dra_jax.core import policy
from dra_jax.envs import stimulus_response as sr
from dra_jax.fitting import models


@partial(jax.jit, static_argnames=("st",))
def _simulate(st: models.Static, theta, s, correct, new_block, valid, block, ns, keys):
    def one(th, s_, c_, nb_, v_, blk_, ns_, key):
        lat0 = models.init(st, th)

        def step(lat, xs):
            t, s1, c1, nb1, v1, b1, n1 = xs
            lat = jax.tree.map(lambda x, x0: jnp.where(nb1, x0, x), lat, lat0)
            k1, k2, k3 = jax.random.split(jax.random.fold_in(key, t), 3)
            z = jax.random.normal(k1, (st.n_actions,))
            a = models.sample_zeta_action(st, th, lat, s1, z, jax.random.uniform(k2), n1)
            r = (a == c1).astype(jnp.float32)
            p_correct = models.action_probs(st, th, lat, s1, n1)[c1]
            new = models.update(st, th, lat, s1, a, r, b1, models.draw_noise(st, k3, normal="erfinv"))
            lat = jax.tree.map(lambda n, o: jnp.where(v1, n, o), new, lat)
            return lat, (a, r, p_correct)

        t = jnp.arange(s_.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(step, lat0, (t, s_, c_, nb_, v_, blk_, ns_))
        return out

    return jax.vmap(one)(theta, s, correct, new_block, valid, block, ns, keys)


def simulate(st: models.Static, theta: np.ndarray, designs: list[sr.Design], seed: int):
    """Actions, rewards and the model's P(correct) ``[N, T]`` of N agents (``theta [N, 6]``) on
    their designs (padded to the longest; padding entries are meaningless)."""
    n = len(designs)
    t_max = max(len(d.state) for d in designs)
    s = np.zeros((n, t_max), np.int32)
    c = np.zeros((n, t_max), np.int32)
    nb = np.zeros((n, t_max), bool)
    v = np.zeros((n, t_max), bool)
    blk = np.zeros((n, t_max, st.n_states), np.float32)
    ns = np.ones((n, t_max), np.float32)
    for i, d in enumerate(designs):
        k = len(d.state)
        s[i, :k], c[i, :k], v[i, :k], ns[i, :k] = d.state, d.correct, True, d.set_size
        nb[i, :k] = np.concatenate([[True], d.block[1:] != d.block[:-1]])
        for b in np.unique(d.block):
            rows = np.flatnonzero(d.block == b)
            blk[i, rows[:, None], np.unique(d.state[rows])[None, :]] = 1.0
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))
    a, r, pc = _simulate(st, jnp.asarray(theta, jnp.float32), s, c, nb, v, blk, ns, keys)
    return np.asarray(a), np.asarray(r), np.asarray(pc)


def synthetic_dataset(st: models.Static, theta: np.ndarray, seed: int, set_sizes=(2, 3, 4, 5, 6),
                      reps: int = 13, subjects: list[str] | None = None) -> pd.DataFrame:
    """A long-format data set (the fitter's format, with a ``set_size`` covariate) of N
    simulated subjects, each with one block per set size."""
    theta = np.atleast_2d(theta)
    rng = np.random.default_rng(seed)
    designs = [sr.make_design(rng, set_sizes, reps) for _ in range(len(theta))]
    a, r, _ = simulate(st, theta, designs, seed)
    subjects = subjects or [f"s{i:03d}" for i in range(len(theta))]
    rows = []
    for i, d in enumerate(designs):
        k = len(d.state)
        rows.append(pd.DataFrame({"subject": subjects[i], "block": d.block, "trial": d.trial,
                                  "state": d.state, "action": a[i, :k], "reward": r[i, :k],
                                  "set_size": d.set_size}))
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------- K-armed bandits


@partial(jax.jit, static_argnames=("st",))
def _simulate_bandit(st: models.Static, theta, mu, eps, new_block, keys):
    """Agents on Gaussian bandits: ``mu [N, T, K]`` the arm means of each trial's block, ``eps
    [N, T, K]`` unit reward noise (reward ``mu[a] + eps[a]``)."""
    block = jnp.ones((1,), jnp.float32)

    def one(th, mu_, eps_, nb_, key):
        lat0 = models.init(st, th)

        def step(lat, xs):
            t, m1, e1, nb1 = xs
            lat = jax.tree.map(lambda x, x0: jnp.where(nb1, x0, x), lat, lat0)
            k1, k2, k3, k4 = jax.random.split(jax.random.fold_in(key, t), 4)
            z = jax.random.normal(k1, (st.n_actions,))
            u = jax.random.uniform(k2)
            if st.kind == "ts_lapse":  # the agent: a lapse, else the argmax of one sample
                greedy = jnp.argmax(lat.q[0] + z * lat.sigma[0]).astype(jnp.int32)
                lapse = jax.random.uniform(k4) < th[6]
                a = jnp.where(lapse, jnp.minimum((u * st.n_actions).astype(jnp.int32),
                                                 st.n_actions - 1), greedy)
            elif st.kind == "blasts":  # the likelihood's channel (fixed posterior nodes)
                a = policy.sample_action(models.action_probs(st, th, lat, 0), u)
            else:
                a = models.sample_zeta_action(st, th, lat, 0, z, u)
            r = m1[a] + e1[a]
            lat = models.update(st, th, lat, 0, a, r, block,
                                models.draw_noise(st, k3, normal="erfinv"))
            return lat, (a, r)

        t = jnp.arange(mu_.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(step, lat0, (t, mu_, eps_, nb_))
        return out

    return jax.vmap(one)(theta, mu, eps, new_block, keys)


def synthetic_bandit_dataset(st: models.Static, theta: np.ndarray, seed: int, n_blocks: int = 4,
                             n_trials: int = 50, subjects: list[str] | None = None) -> pd.DataFrame:
    """A long-format bandit data set (state 0 throughout) of N simulated subjects: each plays
    ``n_blocks`` fresh K-armed Gaussian bandits (arm means ~ N(0, 1), rewards ~ N(mean, 1), the
    review's setting) for ``n_trials`` trials; the agent's beliefs or memories reset per block.
    Covariate ``best``: 1 when the chosen arm has the block's highest mean."""
    theta = np.atleast_2d(theta)
    n, k, t = len(theta), st.n_actions, n_blocks * n_trials
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n, n_blocks, k))
    mu = np.repeat(means, n_trials, axis=1).astype(np.float32)  # [N, T, K]
    eps = rng.standard_normal((n, t, k)).astype(np.float32)
    block = np.repeat(np.arange(n_blocks), n_trials)
    nb = np.tile(np.concatenate([[True], block[1:] != block[:-1]]), (n, 1))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))
    a, r = _simulate_bandit(st, jnp.asarray(theta, jnp.float32), mu, eps, nb, keys)
    a, r = np.asarray(a), np.asarray(r)
    subjects = subjects or [f"s{i:03d}" for i in range(n)]
    best = (a == np.argmax(mu, axis=2)).astype(int)
    return pd.DataFrame({"subject": np.repeat(subjects, t), "block": np.tile(block, n),
                         "trial": np.tile(np.tile(np.arange(n_trials), n_blocks), n),
                         "state": 0, "action": a.ravel(), "reward": r.ravel(),
                         "best": best.ravel()})
