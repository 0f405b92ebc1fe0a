"""Throughput of the grid-world particle filter (:func:`dra_jax.fitting.sequential.loglik`).

    PYTHONPATH=. python benchmarks/bench_fit_gridworld.py [--subjects 4] [--candidates 4]
        [--particles 16] [--episodes 20] [--max-steps 200] [--out FILE]

Synthetic subjects (the models' own simulator, Fig. 1 maze, one block) are filtered in one
jitted call per model; compile time (first call) is reported apart from the run time (best of
three later calls, block_until_ready), as wall and process-CPU seconds. Particle-steps =
subjects x candidates x particles x padded steps (episode-aligned); DRA's rollout steps come on
top (n_traj x their lengths per episode end) and are not counted.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.envs.gridworld import Layout
from dra_jax.fitting import models, seqsim, sequential
from dra_jax.fitting.data import sequential as seqdata
from dra_jax.fitting.spec import DEFAULTS

THETA = {**DEFAULTS, "lam": 0.2, "beta": 5.0, "alpha_q": 0.3, "alpha_sigma": 0.1,
         "sigma_base": 5.0, "sigma0": 3.0, "gamma": 1.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--particles", type=int, default=16)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    maze = tuple(Layout().to_maze())
    theta = np.array([THETA.get(p, DEFAULTS[p]) for p in models.PARAMS])
    out = {"machine": platform.processor() or platform.machine(), "devices": str(jax.devices()),
           "args": vars(a), "models": {}}
    for kind in ("qlearn", "lam0", "dra"):
        sst = sequential.SeqStatic(models.Static(kind, 54, 4, n_zeta=64), maze, a.max_steps)
        df = seqsim.simulate(sst, np.tile(theta, (a.subjects, 1)), 1, a.episodes, 0)
        ds = seqdata.load(df, 54, 4)
        tr = sequential.SeqTrials(*(jnp.asarray(x) for x in ds.trials))
        p = 1 if kind == "qlearn" else a.particles
        th = jnp.asarray(np.broadcast_to(theta, (a.subjects, a.candidates, len(theta))),
                         jnp.float32)
        keys = jax.vmap(lambda i: jax.vmap(lambda t: jax.random.fold_in(jax.random.key(i), t))(
            jnp.arange(a.candidates)))(jnp.arange(a.subjects))
        t0 = time.perf_counter()
        sequential.loglik(sst, p, 0.5, th, tr, keys)[0].block_until_ready()
        first = time.perf_counter() - t0
        runs = []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            sequential.loglik(sst, p, 0.5, th, tr, keys)[0].block_until_ready()
            runs.append((time.perf_counter() - t0, time.process_time() - c0))
        wall, cpu = min(runs)
        steps = a.subjects * a.candidates * p * tr.s.shape[1]
        rec = {"particles": p, "padded_steps": int(tr.s.shape[1]),
               "observed_steps_per_subject": float(ds.n_trials.mean()),
               "compile_plus_first_s": first - wall, "run_s": wall, "run_cpu_s": cpu,
               "particle_steps_per_s": steps / wall}
        out["models"][kind] = rec
        print(kind, json.dumps(rec))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
