"""Where the classic fit's time goes: each likelihood call shape of the fit, compiled and run
apart, and ablations inside the filter.

    PYTHONPATH=. python benchmarks/profile_fit_classic.py [--subjects 8] [--kinds dra,lam0]
                                                          [--ablate] [--out FILE]

The fit (benchmarks/bench_fit_classic.py's config) makes, per model, 2 restarts x 25 search
calls of shape ``[N, 7 candidates, 16 particles]``, one finalists call ``[N, 4, 256]`` and
one replicates call ``[N, 8, 256]`` (lam0: 1 particle each). Each shape is compiled (AOT:
``lower`` + ``compile``, timed) and run (wall and process-CPU, best of ``--repeats``) on the
first ``--subjects`` subjects of benchmarks/results/classic_80x560.csv.gz; the 80-subject cost
of each part is the run time x 80 / N x its number of calls. ``--ablate``: the DRA search call
with parts of the particle step removed (not the model: a measurement of what each part costs;
the numbers of an ablated filter mean nothing). CMA-ES's own time (ask / tell for 80 subjects x
50 generations, a fake objective) is measured too. Records the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.fitting import data as data_mod
from dra_jax.fitting import models, optimize, particle

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "results" / "classic_80x560.csv.gz"
THETA = np.array([0.1, 20.0, 0.5, 0.05, 1.0, 0.3] + [0.0] * 6)
SHAPES = {"search": (7, 16, 50), "finalists": (4, 256, 1), "replicates": (8, 256, 1),
          # alternatives: (candidates, particles, calls)
          "search8": (7, 8, 50), "finalists64": (4, 64, 1), "replicates_4x2": (4, 256, 2),
          "replicates64_4x2": (4, 64, 2)}


def _inputs(ds, n_cand):
    n = len(ds.subjects)
    th = jnp.asarray(np.broadcast_to(THETA, (n, n_cand, len(THETA))), jnp.float32)
    keys = optimize._keys(ds.subjects, np.arange(n_cand))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    return th, tr, keys


def time_call(st, p, ds, n_cand, repeats):
    th, tr, keys = _inputs(ds, n_cand)
    fn = jax.jit(lambda th, tr, k: particle._filter(st, p, 0.5, th, tr, k))
    with jax.threefry_partitionable(False):
        t0, c0 = time.perf_counter(), time.process_time()
        comp = fn.lower(th, tr, keys).compile()
        compile_s, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
        comp(th, tr, keys)[0].block_until_ready()
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            comp(th, tr, keys)[0].block_until_ready()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    steps = len(ds.subjects) * n_cand * p * ds.trials.s.shape[1]
    return {"compile_s": compile_s, "compile_cpu_s": compile_cpu, "run_s": min(wall),
            "cpu_s": min(cpu), "particle_steps": steps, "steps_per_cpu_s": steps / min(cpu)}


@contextmanager
def patched(obj, name, new):
    old = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield
    finally:
        setattr(obj, name, old)


def ablations(ds, repeats):
    """The DRA search call with parts removed (each a different program; numbers meaningless)."""
    st = models.Static("dra", 6, 3)
    n_cand, p = SHAPES["search"][:2]
    out = {"full": time_call(st, p, ds, n_cand, repeats)}
    real_grad, real_noise, real_chosen = models._sigma_grad, models.draw_noise, models.chosen_prob

    def grad_zero(st_, theta, lat, block, noise):  # the noise is still drawn and consumed
        u, z = noise
        return jnp.zeros_like(lat.sigma) + 0.0 * (jnp.sum(u, (0, 1)) + jnp.sum(z, (0, 1)))

    def noise_const(st_, key, shape=(), normal="box_muller"):
        n, na = st_.n_traj, st_.n_actions
        u = jnp.broadcast_to(jnp.linspace(0.05, 0.95, n)[None, :, None], (2, n) + shape)
        z = jnp.broadcast_to(jnp.linspace(-1.5, 1.5, n)[None, :, None], (na, n) + shape)
        return u + 0.0 * jax.random.key_data(key).sum(), z

    def chosen_const(st_, theta, lat, s, a):
        return jnp.full(lat.q.shape[2:], 0.5) + 0.0 * lat.q[s, a]

    with patched(models, "_sigma_grad", grad_zero):
        out["no_rollouts (noise kept)"] = time_call(st, p, ds, n_cand, repeats)
    with patched(models, "draw_noise", noise_const):
        out["no_noise (constant noise)"] = time_call(st, p, ds, n_cand, repeats)
    with patched(models, "_sigma_grad", grad_zero), patched(models, "draw_noise", noise_const):
        out["no_rollouts_no_noise"] = time_call(st, p, ds, n_cand, repeats)
    with patched(models, "chosen_prob", chosen_const):
        out["no_choice_prob"] = time_call(st, p, ds, n_cand, repeats)
    out["n_traj=1"] = time_call(st._replace(n_traj=1), p, ds, n_cand, repeats)
    th, tr, keys = _inputs(ds, n_cand)  # resampling: never (threshold 0)
    fn = jax.jit(lambda th, tr, k: particle._filter(st, p, 0.0, th, tr, k))
    with jax.threefry_partitionable(False):
        comp = fn.lower(th, tr, keys).compile()
        comp(th, tr, keys)[0].block_until_ready()
        c0 = time.process_time()
        comp(th, tr, keys)[0].block_until_ready()
        out["no_resampling"] = {"cpu_s": time.process_time() - c0}
    del real_grad, real_noise, real_chosen
    return out


def cma_overhead(n_subjects=80, gens=50, popsize=7, d=3):
    import warnings

    import cma

    es = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n_subjects):
            es.append(cma.CMAEvolutionStrategy(np.zeros(d), 1.0, {
                "popsize": popsize, "seed": i + 1, "verbose": -9, "maxiter": gens}))
        t0 = time.process_time()
        for _ in range(gens):
            for e in es:
                y = np.asarray(e.ask())
                e.tell(list(y), list(np.sum(y ** 2, 1)))
    return time.process_time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--kinds", default="dra,dra_equal,lam0")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--shapes", default="search,finalists,replicates")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import pandas as pd

    df = pd.read_csv(DATA, dtype={"subject": str})
    subs = list(dict.fromkeys(df["subject"]))[:args.subjects]
    ds = data_mod.load(df[df["subject"].isin(subs)], 6, 3)
    rec = {"subjects": len(subs), "load_avg_before": os.getloadavg(), "calls": {}}
    scale = 80 / len(subs)
    for kind in args.kinds.split(","):
        st = models.Static(kind, 6, 3)
        for name in args.shapes.split(","):
            c, p, n_calls = SHAPES[name]
            p = p if models.STOCHASTIC[kind] else 1
            r = time_call(st, p, ds, c, args.repeats)
            r["calls"] = n_calls
            r["cpu_80_subjects_s"] = r["cpu_s"] * scale * n_calls
            rec["calls"][f"{kind}/{name}"] = r
            print(kind, name, json.dumps({k: round(v, 3) for k, v in r.items()}), flush=True)
    rec["cma_ask_tell_cpu_s_80x50"] = cma_overhead()
    print("cma", rec["cma_ask_tell_cpu_s_80x50"], flush=True)
    if args.ablate:
        rec["ablations_dra_search"] = ablations(ds, args.repeats)
        for k, v in rec["ablations_dra_search"].items():
            print("ablate", k, round(v["cpu_s"], 3), flush=True)
    rec["load_avg_after"] = os.getloadavg()
    print(json.dumps({"load": [rec["load_avg_before"], rec["load_avg_after"]]}))
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
