"""Posterior predictive check: the fitted agents replayed on each subject's own trial sequence.

For every subject x model, ``n_sims`` agents with the fitted parameters act on the subject's
stimuli (the correct action of each stimulus as the data reveal it,
:func:`dra_jax.envs.stimulus_response.correct_from_data`); the model's accuracy on a trial is its
probability of the correct action there, averaged over the simulated agents. Data and model
are summarized as accuracy by set size and by presentation of the stimulus within the block.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dra_jax.envs import stimulus_response as sr
from dra_jax.fitting import optimize, simulate


def _design(g: pd.DataFrame, n_actions: int) -> sr.Design:
    b, s = g["block"].to_numpy(), g["state"].to_numpy()
    c = sr.correct_from_data(s, g["action"].to_numpy(), g["reward"].to_numpy(), b, n_actions)
    ss = g["set_size"].to_numpy() if "set_size" in g else \
        g.groupby("block")["state"].transform("nunique").to_numpy()
    return sr.Design(b, g["trial"].to_numpy(), s, c, ss)


def run(cfg: dict, ds, fits: pd.DataFrame, n_sims: int = 20, seed: int = 0) -> dict:
    """``{"set_size": [...], "data": [...], "models": {name: [...]}, "curves": {...}}``."""
    if cfg["task"] == "gridworld":  # learning curves in steps per episode
        from dra_jax.fitting import seqsim

        return seqsim.ppc(cfg, ds, fits, seed=seed)
    df = ds.df.copy()
    if "set_size" not in df:
        df["set_size"] = df.groupby(["subject", "block"])["state"].transform("nunique")
    df["presentation"] = df.groupby(["subject", "block", "state"]).cumcount()
    designs = [_design(df[df["subject"] == s], cfg["fit"]["n_actions"]) for s in ds.subjects]
    obs = (df["action"] >= 0).to_numpy()
    df["correct_data"] = np.where(obs, df["reward"].to_numpy() > 0, np.nan)
    sizes = sorted(df["set_size"].unique().tolist())
    out = {"set_size": [int(x) for x in sizes], "models": {}, "curves": {}}
    out["data"] = [float(df.loc[df["set_size"] == k, "correct_data"].mean()) for k in sizes]
    out["curves"]["data"] = _curves(df, "correct_data", sizes)
    for name, mspec in cfg["models"].items():
        st = optimize.static_for(cfg, mspec)
        tf = optimize.Transform(mspec, cfg["bounds"])
        f = fits[fits["model"] == name].set_index("subject")
        theta = np.stack([tf.theta_at(f.loc[s, tf.free].to_numpy(float))
                          if tf.free else tf.base for s in ds.subjects])
        rep = np.repeat(theta, n_sims, axis=0)
        _, _, pc = simulate.simulate(st, rep, [d for d in designs for _ in range(n_sims)], seed)
        pc = pc.reshape(len(ds.subjects), n_sims, -1).mean(1)
        col = np.concatenate([pc[i, :len(d.state)] for i, d in enumerate(designs)])
        df[f"p_{name}"] = col
        out["models"][name] = [float(df.loc[df["set_size"] == k, f"p_{name}"].mean()) for k in sizes]
        out["curves"][name] = _curves(df, f"p_{name}", sizes)
    return out


def _curves(df, col, sizes):
    return {str(k): df[df["set_size"] == k].groupby("presentation")[col].mean().tolist()
            for k in sizes}
