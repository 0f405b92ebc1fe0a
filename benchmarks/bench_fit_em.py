"""Time of hierarchical EM (dra_jax.fitting.group) on the shared RLWM data: per model the ML fit
it starts from, the first EM iteration (which includes the XLA compiles of the E-step), the
later iterations (run time only: the mean and the median per iteration), the iBIC and the total.

    PYTHONPATH=. python benchmarks/bench_fit_em.py [--models rlwm,qlearn] [--subjects 79]
        [--max-iter 100] [--accelerate squarem|none] [--out benchmarks/results/fit_em_cpu.json]

Uses configs/fit_rlwm.toml and ../shared/data/rlwm_collins_frank_2012.csv. The EM iterations are
timed from the fit's own progress callback (each E-step ends in host arrays, so its device work
is finished); compile time is not separable inside the first iteration, so the first iteration
is reported apart from the rest. The issue's target: rlwm + qlearn over 79 subjects under 5
minutes on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from dra_jax.fitting import cli, data, group, spec
from dra_jax.results import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="rlwm,qlearn")
    ap.add_argument("--subjects", type=int, default=79)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--data", default="../shared/data/rlwm_collins_frank_2012.csv")
    ap.add_argument("--accelerate", default="squarem", choices=("squarem", "none"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = spec.load("configs/fit_rlwm.toml", [f"group.max_iter={a.max_iter}",
                                              f"group.accelerate={a.accelerate}"])
    cli.select_models(cfg, a.models.split(","))
    ds = data.load_for(a.data, cfg)
    ds = ds.subset(ds.subjects[:a.subjects])
    t0 = time.perf_counter()
    ml = cli.fit(ds, cfg).fits
    out = {"n_subjects": len(ds.subjects), "ml_s": time.perf_counter() - t0, "models": {},
           "device": jax.devices()[0].device_kind,
           "machine": platform.processor() or platform.machine()}
    for m in cfg["models"]:
        stamps = [time.perf_counter()]
        res = group.fit_group(cfg, m, ds, ml[ml["model"] == m].to_dict("records"),
                              lambda *_: stamps.append(time.perf_counter()))
        total = time.perf_counter() - stamps[0]
        dt = np.diff(stamps)
        em = res["em"]
        out["models"][m] = {
            "iterations": em["iterations"], "converged": em["converged"],
            "accelerate": em["accelerate"], "n_extrapolated": em["n_extrapolated"],
            "final_change": em["final_change"], "sum_log_evidence": em["sum_log_evidence"],
            "ibic": em["ibic"],
            "first_iter_s": float(dt[0]), "later_iter_mean_s": float(dt[1:].mean()) if len(dt) > 1
            else None, "later_iter_median_s": float(np.median(dt[1:])) if len(dt) > 1 else None,
            "em_s": em["em_s"], "ibic_s": em["ibic_s"], "total_s": total}
        print(m, json.dumps(out["models"][m]), flush=True)
    out["total_s"] = time.perf_counter() - t0
    print(json.dumps(out, indent=1))
    if a.out:
        atomic_write_json(Path(a.out), out)


if __name__ == "__main__":
    main()
