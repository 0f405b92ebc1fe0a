"""Simulated subjects on a sequential task (the grid-world), consistent with the fitted models
(:mod:`dra_jax.fitting.sequential`): each step the agent draws its own ``zeta`` and acts by soft
Thompson (``qlearn``: its softmax), the maze's tables give ``(s', r, done)``, the means move by
expected SARSA with the agent's own ``zeta'``; at an episode's end (the goal or ``max_steps``
steps) DRA runs its gradient rollouts and updates sigma (:func:`sequential.sigma_step`, the
filter's own code). One jitted call: a scan over episodes, inside it a fixed-trip scan of
``max_steps`` steps (steps after the episode's end are masked), vectorized over subjects.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from dra_jax.fitting import models, sequential

_ACT = 0x20000000  # stream tag of the acting steps: fold_in(key, _ACT + episode)


@partial(jax.jit, static_argnames=("sst",))
def _simulate(sst: sequential.SeqStatic, theta, new_block, keys):
    st = sst.base
    task = sequential.task_of(sst.maze)
    nxt = jnp.asarray(task.tables.next_state[0])
    rew = jnp.asarray(task.tables.reward[0])
    term = jnp.asarray(task.tables.terminal[0])
    start = jnp.int32(task.tables.start)
    n = theta.shape[0]
    lat0 = jax.vmap(partial(models.init, st))(theta)

    def act(th, lat, s, run, key, e, i):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, _ACT + e), i), 3)
        z = jax.random.normal(k1, (st.n_actions,))
        a = models.sample_zeta_action(st, th, lat, s, z, jax.random.uniform(k2))
        s2, r, d = nxt[s, a], rew[s, a], term[nxt[s, a]]
        new = sequential.q_update(st, th, lat, s, a, r, s2, d,
                                  jax.random.normal(k3, (st.n_actions,)))
        lat = jax.tree.map(lambda x1, x0: jnp.where(run, x1, x0), new, lat)
        run2 = run & ~d & (i + 1 < sst.max_steps)
        return lat, jnp.where(run2, s2, s), run2, (s, a, r, s2, d, run)

    def episode(lat, xs):
        e, nb = xs
        lat = jax.tree.map(lambda x, x0: jnp.where(nb, x0, x), lat, lat0)

        def step(carry, i):
            lat, s, run = carry
            lat, s, run, rec = jax.vmap(act, in_axes=(0, 0, 0, 0, 0, None, None))(
                theta, lat, s, run, keys, e, i)
            return (lat, s, run), rec

        s0 = jnp.full((n,), start, jnp.int32)
        (lat, _, _), rec = jax.lax.scan(step, (lat, s0, jnp.ones((n,), bool)),
                                        jnp.arange(sst.max_steps, dtype=jnp.int32))
        lat_p = jax.tree.map(lambda x: x[:, None, None], lat)
        lat_p = sequential.sigma_step(sst, theta[:, None], lat_p, keys[:, None],
                                      jnp.full((n, 1), e, jnp.int32), jnp.ones((n, 1), bool))
        return jax.tree.map(lambda x: x[:, 0, 0], lat_p), rec

    e_idx = jnp.arange(new_block.shape[0], dtype=jnp.int32)
    _, rec = jax.lax.scan(episode, lat0, (e_idx, new_block))
    return rec  # each [E, max_steps, N]


def simulate(sst: sequential.SeqStatic, theta: np.ndarray, n_blocks: int, n_episodes: int,
             seed: int, subjects: list[str] | None = None) -> pd.DataFrame:
    """A long-format data set of N simulated subjects (``theta [N, len(PARAMS)]``), each with
    ``n_blocks`` blocks of ``n_episodes`` episodes (memories reset per block). Columns: the
    fitter's (``next_state, done`` and ``truncated`` included) and the covariate ``episode``
    (index within the block)."""
    theta = np.atleast_2d(theta)
    n = len(theta)
    nb = np.zeros(n_blocks * n_episodes, bool)
    nb[::n_episodes] = True
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))
    with jax.threefry_partitionable(False):
        rec = _simulate(sst, jnp.asarray(theta, jnp.float32), jnp.asarray(nb), keys)
    s, a, r, s2, d, run = (np.moveaxis(np.asarray(x), 2, 0) for x in rec)  # [N, E, max_steps]
    subjects = subjects or [f"s{i:03d}" for i in range(n)]
    frames = []
    for i in range(n):
        e, t = np.nonzero(run[i])
        last = np.concatenate([e[1:] != e[:-1], [True]])
        frames.append(pd.DataFrame({
            "subject": subjects[i], "block": e // n_episodes, "trial": 0, "state": s[i][e, t],
            "action": a[i][e, t], "reward": r[i][e, t], "next_state": s2[i][e, t],
            "done": d[i][e, t].astype(int), "truncated": (last & ~d[i][e, t]).astype(int),
            "episode": e % n_episodes}))
    df = pd.concat(frames, ignore_index=True)
    df["trial"] = df.groupby(["subject", "block"]).cumcount()
    return df


def episode_lengths(df: pd.DataFrame) -> pd.DataFrame:
    """Steps of every episode: ``subject, block, episode`` (index within the block), ``steps``
    (a validated sequential data set: its ``episode_end`` column marks the ends)."""
    ends = df["episode_end"].to_numpy()
    ep = np.concatenate([[0], np.cumsum(ends)[:-1]])
    g = df.assign(_ep=ep).groupby(["subject", "block", "_ep"], sort=False)
    out = g.size().rename("steps").reset_index()
    out["episode"] = out.groupby(["subject", "block"]).cumcount()
    return out.drop(columns="_ep")


def ppc(cfg: dict, ds, fits: pd.DataFrame, n_sims: int = 10, seed: int = 0) -> dict:
    """Posterior predictive learning curves: steps per episode by episode index within a block,
    the data (mean over subjects and blocks) against ``n_sims`` fresh agents per subject with
    its fitted parameters (one block of the longest block's episodes each)."""
    from dra_jax.fitting import optimize

    lengths = episode_lengths(ds.df)
    n_ep = int(lengths["episode"].max()) + 1
    out = {"episode": list(range(1, n_ep + 1)), "models": {},
           "data": lengths.groupby("episode")["steps"].mean().tolist()}
    for name, mspec in cfg["models"].items():
        tf = optimize.Transform(mspec, cfg["bounds"])
        f = fits[fits["model"] == name].set_index("subject")
        theta = np.tile(tf.base, (len(ds.subjects), 1))
        if tf.free:  # (the fitted values themselves: no round trip through the logit)
            theta[:, tf.idx] = f.loc[ds.subjects, tf.free].to_numpy(float)
        sim = simulate(optimize.seq_static_for(cfg, mspec), np.repeat(theta, n_sims, 0),
                       1, n_ep, seed)
        steps = sim.groupby(["subject", "episode"]).size()
        out["models"][name] = steps.groupby("episode").mean().tolist()
    return out
