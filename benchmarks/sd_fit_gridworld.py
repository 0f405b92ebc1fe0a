"""Monte Carlo SD of the grid-world filter's log-likelihood at the true parameters.

    PYTHONPATH=. python benchmarks/sd_fit_gridworld.py [--config configs/fit_gridworld.toml]
        [--subjects 4] [--reps 16] [--particles N] [--models lam0,dra,dra_equal] [--out FILE]

Subjects are simulated as the config's ``[recovery]`` does (true parameters drawn from the
middle 80% of each free parameter's box, ``n_blocks x n_episodes`` episodes each); ``dra_equal``
is the config's ``dra`` model with one shared sigma. Each subject's log-likelihood at its true
parameters is estimated ``--reps`` times with independent particle noise (``fit.n_particles``
particles unless ``--particles``); reported per subject: the SD of the replicates, their mean,
the steps, and the filter's wall time.
"""
from __future__ import annotations

import argparse
import json
import time

import jax.numpy as jnp
import numpy as np

from dra_jax.fitting import optimize, recovery, seqsim, sequential, spec
from dra_jax.fitting.data import sequential as seqdata


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/fit_gridworld.toml")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--reps", type=int, default=16)
    ap.add_argument("--particles", type=int, default=0)
    ap.add_argument("--models", default="lam0,dra,dra_equal")
    ap.add_argument("--ahead", type=int, default=-1, help="SeqStatic.n_ahead (-1: default)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = spec.load(a.config)
    if "dra_equal" not in cfg["models"]:
        cfg["models"]["dra_equal"] = {**cfg["models"]["dra"], "kind": "dra_equal"}
    p = a.particles or cfg["fit"]["n_particles"]
    out = {"config": a.config, "particles": p, "reps": a.reps, "fit": cfg["fit"], "models": {}}
    rng = np.random.default_rng(cfg["seed"])
    for gi, name in enumerate(a.models.split(",")):
        mspec = cfg["models"][name]
        truth = recovery.true_parameters(cfg, name, a.subjects, rng)
        tf = optimize.Transform(mspec, cfg["bounds"])
        theta = np.stack([tf.theta(tf.to_y(r)) for r in truth[tf.free].to_numpy(float)])
        sst = optimize.seq_static_for(cfg, mspec["kind"])
        if a.ahead >= 0:
            sst = sst._replace(n_ahead=a.ahead)
        df = seqsim.simulate(sst, theta, cfg["recovery"]["n_blocks"],
                             cfg["recovery"]["n_episodes"], cfg["seed"] * 1000 + gi)
        ds = seqdata.load(df, sst.base.n_states, sst.base.n_actions)
        tr = sequential.SeqTrials(*(jnp.asarray(x) for x in ds.trials))
        th = jnp.asarray(np.broadcast_to(theta[:, None], (a.subjects, a.reps, theta.shape[1])),
                         jnp.float32)
        keys = optimize._keys(ds.subjects, 7_000_000 + np.arange(a.reps))
        ess = cfg["fit"]["ess_threshold"]
        sequential.loglik(sst, p, ess, th, tr, keys)[0].block_until_ready()  # compile
        t0 = time.perf_counter()
        ll = np.asarray(sequential.loglik(sst, p, ess, th, tr, keys)[0], np.float64)
        wall = time.perf_counter() - t0
        rec = {"true": truth.to_dict("list"), "steps": ds.n_trials.tolist(),
               "sd": ll.std(1, ddof=1).tolist(), "mean": ll.mean(1).tolist(), "wall_s": wall}
        out["models"][name] = rec
        print(name, {k: np.round(v, 2).tolist() for k, v in truth.items()})
        print(name, "sd", np.round(rec["sd"], 2).tolist(), "mean",
              np.round(rec["mean"], 1).tolist(), "steps", rec["steps"], f"{wall:.1f} s",
              flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
