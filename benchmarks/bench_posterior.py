"""Time of the PMMH posterior sampler (dra_jax.fitting.posterior) on one real subject: compile
time apart from run time, seconds per iteration (all chains), and the likelihood estimate's noise.

    PYTHONPATH=. python benchmarks/bench_posterior.py [--model dra] [--subject 1] [--iters 200]
        [--particles 32] [--chains 4] [--out benchmarks/results/posterior_cpu.json]

Uses configs/fit_rlwm.toml and ../shared/data/rlwm_collins_frank_2012.csv (18 blocks packed into
9 lanes). ``run_s`` is measured over whole jitted chunks whose outputs are copied to the host
(so the device work is finished); ``compile_s`` is the ahead-of-time compile of the chunk scan.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax

from dra_jax.fitting import data, posterior, spec
from dra_jax.results import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dra")
    ap.add_argument("--subject", default="1")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--particles", type=int, default=32)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--data", default="../shared/data/rlwm_collins_frank_2012.csv")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = spec.load("configs/fit_rlwm.toml", [f"posterior.n_iter={a.iters}",
                                              f"posterior.n_particles={a.particles}",
                                              f"posterior.n_chains={a.chains}"])
    ds = data.load_for(a.data, cfg).subset([a.subject])
    t0 = time.perf_counter()
    res = posterior.run(cfg, ds, a.subject, a.model)
    out = {"model": a.model, "subject": a.subject, "n_iter": a.iters, "n_chains": a.chains,
           "n_particles": res["n_particles"], "n_lanes": res["n_blocks"],
           "wall_s": time.perf_counter() - t0, **res["timing"],
           "sd_loglik": res["noise"]["sd_loglik"], "sd_log_ratio": res["noise"]["sd_log_ratio"],
           "accept": res["accept"], "device": jax.devices()[0].device_kind,
           "machine": platform.processor() or platform.machine()}
    print(json.dumps(out, indent=1))
    if a.out:
        atomic_write_json(Path(a.out), out)


if __name__ == "__main__":
    main()
