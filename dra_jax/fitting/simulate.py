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

from dra_jax.envs import stimulus_response as sr
from dra_jax.fitting import models


@partial(jax.jit, static_argnames=("st",))
def _simulate(st: models.Static, theta, s, correct, new_block, valid, block, keys):
    def one(th, s_, c_, nb_, v_, blk_, key):
        lat0 = models.init(st, th)

        def step(lat, xs):
            t, s1, c1, nb1, v1, b1 = xs
            lat = jax.tree.map(lambda x, x0: jnp.where(nb1, x0, x), lat, lat0)
            k1, k2, k3 = jax.random.split(jax.random.fold_in(key, t), 3)
            z = jax.random.normal(k1, (st.n_actions,))
            a = models.sample_zeta_action(st, th, lat, s1, z, jax.random.uniform(k2))
            r = (a == c1).astype(jnp.float32)
            p_correct = models.action_probs(st, th, lat, s1)[c1]
            new = models.update(st, th, lat, s1, a, r, b1, models.draw_noise(st, k3))
            lat = jax.tree.map(lambda n, o: jnp.where(v1, n, o), new, lat)
            return lat, (a, r, p_correct)

        t = jnp.arange(s_.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(step, lat0, (t, s_, c_, nb_, v_, blk_))
        return out

    return jax.vmap(one)(theta, s, correct, new_block, valid, block, keys)


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
    for i, d in enumerate(designs):
        k = len(d.state)
        s[i, :k], c[i, :k], v[i, :k] = d.state, d.correct, True
        nb[i, :k] = np.concatenate([[True], d.block[1:] != d.block[:-1]])
        for b in np.unique(d.block):
            rows = np.flatnonzero(d.block == b)
            blk[i, rows[:, None], np.unique(d.state[rows])[None, :]] = 1.0
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))
    a, r, pc = _simulate(st, jnp.asarray(theta, jnp.float32), s, c, nb, v, blk, keys)
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
