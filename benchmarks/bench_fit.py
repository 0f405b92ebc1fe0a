"""Particle-filter throughput of the fitter vs a plain-NumPy particle filter of the same model,
and the time to fit a set-size data set of the classic size.

    python benchmarks/bench_fit.py [--subjects 4] [--candidates 4] [--particles 256]
                                   [--search-particles 16] [--out FILE]
    python benchmarks/bench_fit.py --zeta-compare --out benchmarks/results/fit_zeta_cpu.json

Particle-steps = subjects x candidates x particles x trials. The JAX filter
(:func:`dra_jax.fitting.particle.loglik`, one jitted call) is timed with block_until_ready,
compile time apart, as wall and process-CPU seconds (the CPU time is less sensitive to other
jobs on a shared machine); the NumPy filter (:mod:`dra_jax.fitting.reference`: a Python loop over
trials, NumPy over particles) runs one subject at a time. The Monte Carlo SD of one subject's
log-likelihood over independent replicates is measured at the search's and the final particle
counts. The fit time of 80 subjects x ~550 trials x 3 models (dra, dra_equal; lam0 exact with
one particle) is EXTRAPOLATED from the measured throughputs and the candidates the optimizer
evaluates with configs/fit_stimulus_response.toml's search (2 restarts x 25 generations x
popsize 7, 8 replicates): the search at ``--search-particles``, the 4 finalists and the 8
replicates at ``--particles``; and with the first version's protocol (every call at
``--particles``, finalists and replicates padded to calls of popsize 7).
Run from the repository root with PYTHONPATH pointing at the tree to measure. The fit of that
data set is MEASURED (on a subset of subjects, compile time apart) by
benchmarks/bench_fit_classic.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.fitting import data, models, particle, reference, simulate
from dra_jax.results import atomic_write_json

THETA = np.array([0.1, 20.0, 0.5, 0.05, 1.0, 0.3])
SET_SIZES = (2, 3, 4, 5, 6, 2, 3, 4, 5, 6)  # 40 stimuli-blocks x 14 presentations = 560 trials
# configs/fit_stimulus_response.toml: 2 restarts x 25 generations, popsize 7 (3 free), 8 reps
RESTARTS, GENERATIONS, POPSIZE, N_REPS = 2, 25, 7, 8


def _call(st, n_particles, th, tr, keys):
    return particle.loglik(st, n_particles, 0.5, th, tr, keys)[0].block_until_ready()


def jax_rate(kind, ds, n_cand, n_particles, repeats=3, zeta="qmc", n_zeta=128):
    st = models.Static(kind, 6, 3, zeta=zeta, n_zeta=n_zeta)
    n = len(ds.subjects)
    th = jnp.asarray(np.broadcast_to(THETA, (n, n_cand, 6)), jnp.float32)
    keys = jax.vmap(lambda i: jax.vmap(lambda c: jax.random.fold_in(jax.random.key(i), c))(
        jnp.arange(n_cand)))(jnp.arange(n))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    t0 = time.perf_counter()
    _call(st, n_particles, th, tr, keys)
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        _call(st, n_particles, th, tr, keys)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    run = min(wall)
    steps = n * n_cand * n_particles * ds.trials.s.shape[1]
    return {"kind": kind, "zeta": zeta, "n_zeta": n_zeta, "subjects": n, "candidates": n_cand,
            "particles": n_particles,
            "trials": int(ds.trials.s.shape[1]), "compile_s": first - run, "run_s": run,
            "cpu_s": min(cpu), "particle_steps": steps, "particle_steps_per_s": steps / run,
            "particle_steps_per_cpu_s": steps / min(cpu)}


def numpy_rate(kind, ds, n_particles):
    st = models.Static(kind, 6, 3)
    tr = ds.trials
    rng = np.random.default_rng(0)
    t0, c0 = time.perf_counter(), time.process_time()
    reference.loglik(st, THETA, tr.s[0], tr.a[0], tr.r[0], tr.new_block[0], tr.block[0],
                     n_particles, rng, nodes=models.zeta_nodes(st))  # the filter's 128 nodes
    run, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = n_particles * tr.s.shape[1]
    return {"kind": kind, "particles": n_particles, "trials": int(tr.s.shape[1]), "run_s": run,
            "cpu_s": cpu, "particle_steps_per_s": steps / run,
            "particle_steps_per_cpu_s": steps / cpu}


def loglik_sd(ds, n_particles, n_rep=8):
    """Monte Carlo SD of each subject's DRA log-likelihood over n_rep independent replicates."""
    st = models.Static("dra", 6, 3)
    n = len(ds.subjects)
    th = jnp.asarray(np.broadcast_to(THETA, (n, n_rep, 6)), jnp.float32)
    keys = jax.vmap(lambda i: jax.vmap(lambda c: jax.random.fold_in(jax.random.key(i), c))(
        jnp.arange(n_rep) + 1000))(jnp.arange(n))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    ll = np.asarray(_call(st, n_particles, th, tr, keys), np.float64)
    return {"particles": n_particles, "replicates": n_rep, "mean_loglik": ll.mean(1).tolist(),
            "sd_loglik": ll.std(1, ddof=1).tolist()}


def extrapolate(rate_search, rate_final, rate_det, search_particles, particles, padded,
                n_subj=80, trials=550):
    """Seconds to fit n_subj x trials x (dra, dra_equal, lam0) with the shipped search: columns
    (candidates) of the search at ``search_particles`` (0: ``particles``), then the finalists
    (2 x restarts) and the winner's replicates (n_reps) at ``particles``; ``padded``: the first
    version's protocol, where those two were padded to calls of popsize columns."""
    sp = search_particles or particles
    search_cols = RESTARTS * GENERATIONS * POPSIZE
    final_cols = (1 + math.ceil(N_REPS / POPSIZE)) * POPSIZE if padded else 2 * RESTARTS + N_REPS
    per = n_subj * trials
    stoch = per * (search_cols * sp / rate_search + final_cols * particles / rate_final)
    det = per * (search_cols + final_cols) / rate_det
    return {"search_particles": sp, "final_particles": particles, "padded_finals": padded,
            "candidate_columns_per_model": search_cols + final_cols,
            "particle_steps": int(2 * per * (search_cols * sp + final_cols * particles)
                                  + per * (search_cols + final_cols)),
            "seconds": 2 * stoch + det}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--particles", type=int, default=256)
    ap.add_argument("--search-particles", type=int, default=16)
    ap.add_argument("--zeta-compare", action="store_true",
                    help="only the filter's throughput with fixed (qmc) vs per-trial randomized "
                         "(rqmc) zeta nodes: lam0 at 1 particle, dra at --particles")
    ap.add_argument("--out", default="benchmarks/results/fit_cpu_v2.json")
    args = ap.parse_args(argv)
    df = simulate.synthetic_dataset(models.Static("dra", 6, 3), np.tile(THETA, (args.subjects, 1)),
                                    0, SET_SIZES, 14)
    ds = data.load(df, 6, 3)
    out = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
                       "package": os.path.dirname(particle.__file__),
                       "load_avg_at_start": os.getloadavg()}}
    if args.zeta_compare:
        out["jax"] = []
        for n_zeta in (128, 512):
            for z in ("qmc", "rqmc"):
                out["jax"].append(jax_rate("lam0", ds, args.candidates, 1, 5, z, n_zeta))
                out["jax"].append(jax_rate("dra", ds, args.candidates, args.particles, 3, z,
                                           n_zeta))
                print(json.dumps(out["jax"][-2:]), flush=True)
        out["machine"]["load_avg_at_end"] = os.getloadavg()
        atomic_write_json(args.out, out)
        return
    sp = args.search_particles
    out["jax"] = [jax_rate("dra", ds, args.candidates, args.particles),
                  jax_rate("lam0", ds, args.candidates, 1)]
    if sp:
        out["jax"].append(jax_rate("dra", ds, args.candidates * 4, sp))
    out["numpy"] = [numpy_rate("dra", ds, args.particles), numpy_rate("lam0", ds, 1)]
    out["speedup_dra"] = out["jax"][0]["particle_steps_per_s"] / out["numpy"][0]["particle_steps_per_s"]
    out["loglik_mc_sd"] = [loglik_sd(ds, p) for p in sorted({sp or args.particles, args.particles})]
    r_final, r_det = out["jax"][0]["particle_steps_per_s"], out["jax"][1]["particle_steps_per_s"]
    r_search = out["jax"][2]["particle_steps_per_s"] if sp else r_final
    out["extrapolated_fit_80x550x3"] = {
        "models": ["dra", "dra_equal", "lam0 (exact, 1 particle)"],
        "first_protocol": extrapolate(r_final, r_final, r_det, 0, args.particles, True),
        "search_at_search_particles": extrapolate(r_search, r_final, r_det, sp, args.particles,
                                                  False),
        "note": "extrapolated from the measured wall-clock throughput, not measured; compile "
                "time excluded",
    }
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    atomic_write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "loglik_mc_sd"}, indent=1))
    print(json.dumps(out["loglik_mc_sd"]))


if __name__ == "__main__":
    main()
