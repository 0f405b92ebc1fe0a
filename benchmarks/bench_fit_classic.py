"""Time ``python -m dra_jax.fit`` on a data set of the size of the classic set-size studies.

    python benchmarks/bench_fit_classic.py --tree DIR [--subjects 8] [--cpu-devices N]
                                           [--label NAME] [--out FILE]

The data set: 80 simulated DRA subjects (lam, beta, alpha_q drawn around the shipped config's
start values) x 560 trials (set sizes 2-6 twice, 14 presentations of each stimulus), written
once to ``benchmarks/results/classic_80x560.csv.gz`` by this tree's simulator. The fit:
configs/fit_stimulus_response.toml's search (2 restarts x 25 generations, popsize 7, 16 search
particles) for the models dra, dra_equal and lam0 (qlearn left out; no figures, no posterior
predictive check), with ``fit.n_particles = 256`` for the finalists and the 8 replicates.

``--tree DIR`` runs DIR's ``dra_jax`` (``cd DIR; PYTHONPATH=DIR python -m dra_jax.fit``), so an
old tree is timed by the same script. Only the first ``--subjects`` subjects are fitted; the
80-subject time is EXTRAPOLATED linearly from the measured one (compile time included in both,
so the extrapolation over-counts it), and says so. The process wall and CPU time and the fit's
own ``timing.fit_s`` (summary.json) are recorded with the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "results" / "classic_80x560.csv.gz"
SET_SIZES = (2, 3, 4, 5, 6, 2, 3, 4, 5, 6)
CONFIG = """task = "stimulus_response"
seed = 0
figures = []
[fit]
n_particles = 256
search_particles = 16
n_reps = 8
restarts = 2
generations = 25
{devices}
[models.dra]
kind = "dra"
free = ["lam", "beta", "alpha_q"]
lam = 0.1
beta = 20.0
alpha_q = 0.5
alpha_sigma = 0.05
sigma_base = 1.0
sigma0 = 0.3
[models.dra_equal]
kind = "dra_equal"
free = ["lam", "beta", "alpha_q"]
lam = 0.1
beta = 20.0
alpha_q = 0.5
alpha_sigma = 0.05
sigma_base = 1.0
sigma0 = 0.3
[models.lam0]
kind = "lam0"
free = ["beta", "alpha_q", "sigma0"]
beta = 20.0
alpha_q = 0.5
sigma0 = 0.3
[bounds]
lam = [0.0, 1.0]
beta = [1.0, 40.0]
alpha_q = [0.02, 1.0]
sigma0 = [0.01, 2.0]
"""

_COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                   "/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration")
# runs ``python -m dra_jax.fit ARGS`` and writes the summed durations of JAX's monitoring events
_WRAPPER = """import atexit, json, os, runpy, sys
from jax import monitoring
tot = {}
monitoring.register_event_duration_secs_listener(
    lambda e, d, **kw: tot.__setitem__(e, tot.get(e, 0.0) + d))
atexit.register(lambda: open(os.environ["BENCH_COMPILE_OUT"], "w").write(json.dumps(tot)))
sys.argv = ["dra_jax.fit"] + sys.argv[1:]
runpy.run_module("dra_jax.fit", run_name="__main__", alter_sys=True)
"""


def make_data(n: int = 80) -> None:
    from dra_jax.fitting import models, simulate

    rng = np.random.default_rng(2020)
    theta = np.tile([0.1, 20.0, 0.5, 0.05, 1.0, 0.3], (n, 1))
    theta[:, 0] = rng.uniform(0.02, 0.4, n)
    theta[:, 1] = np.exp(rng.uniform(np.log(5.0), np.log(35.0), n))
    theta[:, 2] = rng.uniform(0.2, 0.8, n)
    df = simulate.synthetic_dataset(models.Static("dra", 6, 3), theta, 2020, SET_SIZES, 14)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(DATA, index=False)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--cpu-devices", type=int, default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not DATA.exists():
        make_data()
    import pandas as pd

    df = pd.read_csv(DATA, dtype={"subject": str})
    subs = list(dict.fromkeys(df["subject"]))[:args.subjects]
    tree = Path(args.tree).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "classic.toml"
        dev = "" if args.cpu_devices is None else "devices = 0"
        cfg.write_text(CONFIG.format(devices=dev))
        cmd = [sys.executable, "-c", _WRAPPER, "--config", str(cfg), "--data", str(DATA),
               "--out", str(Path(tmp) / "out"), "--subjects", ",".join(subs), "--quiet"]
        if args.cpu_devices is not None:
            cmd += ["--cpu-devices", str(args.cpu_devices)]
        env = dict(os.environ, PYTHONPATH=str(tree), BENCH_COMPILE_OUT=str(Path(tmp) / "c.json"))
        env.pop("XLA_FLAGS", None)
        load0 = os.getloadavg()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-4000:])
        summ = json.loads((Path(tmp) / "out" / "summary.json").read_text())
        fits = pd.read_csv(Path(tmp) / "out" / "fits.csv", dtype={"subject": str})
        events = json.loads((Path(tmp) / "c.json").read_text())
    k = len(subs)
    rec = {"label": args.label, "tree": str(tree), "subjects": k, "trials_per_subject": 560,
           "models": ["dra", "dra_equal", "lam0"], "n_particles": 256, "search_particles": 16,
           "cpu_devices": args.cpu_devices, "process_wall_s": wall,
           "process_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "fit_s": summ["timing"]["fit_s"], "load_avg_before": load0,
           "load_avg_after": os.getloadavg(),
           "compile_s": sum(v for e, v in events.items() if e in _COMPILE_EVENTS),
           "jax_events_s": events}
    rec["extrapolated_80_subjects_s"] = rec["compile_s"] + (wall - rec["compile_s"]) * 80 / k
    rec.update({
           "note": f"measured on {k} subjects; the 80-subject time is a linear extrapolation "
                   "of the process wall time less the compile time (tracing, lowering, XLA "
                   "compile: JAX's monitoring events), which is counted once",
           "loglik_totals": {m: v["loglik"] for m, v in summ["totals"].items()},
           "loglik": fits.set_index(["model", "subject"])["loglik"].round(3).to_dict()})
    rec["loglik"] = {f"{m}/{s}": v for (m, s), v in rec["loglik"].items()}
    print(json.dumps({k_: v for k_, v in rec.items() if k_ != "loglik"}, indent=1))
    if args.out:
        from dra_jax.results import atomic_write_json

        out = Path(args.out)
        prev = json.loads(out.read_text()) if out.exists() else []
        atomic_write_json(out, prev + [rec])


if __name__ == "__main__":
    main()
