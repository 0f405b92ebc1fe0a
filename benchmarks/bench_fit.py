"""Particle-filter throughput of the fitter vs a plain-NumPy particle filter of the same model,
and the time to fit a set-size data set of the classic size.

    python benchmarks/bench_fit.py [--subjects 4] [--candidates 4] [--particles 256] [--out FILE]

Particle-steps = subjects x candidates x particles x trials. The JAX filter
(:func:`dra_jax.fitting.particle.loglik`, one jitted call) is timed with block_until_ready,
compile time apart; the NumPy filter (:mod:`dra_jax.fitting.reference`: a Python loop over
trials, NumPy over particles) runs one subject at a time. The fit time of 80 subjects x ~550
trials x 3 models (dra, dra_equal: 256 particles; lam0: one particle, exact) is EXTRAPOLATED from
the measured throughput and the number of likelihood calls the optimizer makes
(restarts x generations + finalists + the winner's replicates).
"""
from __future__ import annotations

import argparse
import json
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


def jax_rate(kind, ds, n_cand, n_particles, repeats=2):
    st = models.Static(kind, 6, 3)
    n = len(ds.subjects)
    th = jnp.asarray(np.broadcast_to(THETA, (n, n_cand, 6)), jnp.float32)
    keys = jax.vmap(lambda i: jax.vmap(lambda c: jax.random.fold_in(jax.random.key(i), c))(
        jnp.arange(n_cand)))(jnp.arange(n))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    t0 = time.perf_counter()
    particle.loglik(st, n_particles, 0.5, th, tr, keys)[0].block_until_ready()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        particle.loglik(st, n_particles, 0.5, th, tr, keys)[0].block_until_ready()
        runs.append(time.perf_counter() - t0)
    run = min(runs)
    steps = n * n_cand * n_particles * ds.trials.s.shape[1]
    return {"kind": kind, "subjects": n, "candidates": n_cand, "particles": n_particles,
            "trials": int(ds.trials.s.shape[1]), "compile_s": first - run, "run_s": run,
            "particle_steps": steps, "particle_steps_per_s": steps / run}


def numpy_rate(kind, ds, n_particles):
    st = models.Static(kind, 6, 3)
    tr = ds.trials
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    reference.loglik(st, THETA, tr.s[0], tr.a[0], tr.r[0], tr.new_block[0], tr.block[0],
                     n_particles, rng)
    run = time.perf_counter() - t0
    steps = n_particles * tr.s.shape[1]
    return {"kind": kind, "particles": n_particles, "trials": int(tr.s.shape[1]), "run_s": run,
            "particle_steps_per_s": steps / run}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--particles", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/fit_cpu.json")
    args = ap.parse_args(argv)
    df = simulate.synthetic_dataset(models.Static("dra", 6, 3), np.tile(THETA, (args.subjects, 1)),
                                    0, SET_SIZES, 14)
    ds = data.load(df, 6, 3)
    out = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
                       "load_avg_at_start": os.getloadavg()}}
    out["jax"] = [jax_rate("dra", ds, args.candidates, args.particles),
                  jax_rate("lam0", ds, args.candidates, 1)]
    out["numpy"] = [numpy_rate("dra", ds, args.particles), numpy_rate("lam0", ds, 1)]
    out["speedup_dra"] = out["jax"][0]["particle_steps_per_s"] / out["numpy"][0]["particle_steps_per_s"]
    # Extrapolated fit of the classic set-size data set size (configs/fit_stimulus_response.toml
    # search settings: 2 restarts x 25 generations, popsize 7 for 3 free parameters; finalists
    # 4 -> 1 call; 8 winner replicates -> 2 calls of width 7).
    calls = 2 * 25 + 1 + 2
    width, n_subj, trials = 7, 80, 550
    stoch = calls * n_subj * width * 256 * trials
    det = calls * n_subj * width * 1 * trials
    rate_s, rate_d = out["jax"][0]["particle_steps_per_s"], out["jax"][1]["particle_steps_per_s"]
    out["extrapolated_fit_80x550x3"] = {
        "models": ["dra (256 particles)", "dra_equal (256 particles)", "lam0 (exact, 1 particle)"],
        "likelihood_calls_per_model": calls,
        "particle_steps": 2 * stoch + det,
        "seconds_jax": 2 * stoch / rate_s + det / rate_d,
        "seconds_numpy": 2 * stoch / out["numpy"][0]["particle_steps_per_s"]
        + det / out["numpy"][1]["particle_steps_per_s"],
        "note": "extrapolated from the measured throughput, not measured; compile time excluded",
    }
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    atomic_write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
