"""Time ``python -m dra_jax.fit`` on a data set of the size of the classic set-size studies.

    python benchmarks/bench_fit_classic.py --tree DIR [--subjects 80] [--cpu-devices N]
                                           [--set fit.n_particles=256] [--warm-cache]
                                           [--label NAME] [--out FILE]

The data set: 80 simulated DRA subjects (lam, beta, alpha_q drawn around the shipped config's
start values) x 560 trials (set sizes 2-6 twice, 14 presentations of each stimulus), written
once to ``benchmarks/results/classic_80x560.csv.gz`` by this tree's simulator. The fit: THIS
tree's configs/fit_stimulus_response.toml (its [fit] section and its models dra, dra_equal and
lam0; qlearn left out; no figures, no posterior predictive check), so the benchmark and the
shipped config cannot drift apart; ``--set`` overrides (e.g. ``fit.n_particles=256``, the
finalists and replicates of the first measurements) are passed to the fit command.

``--tree DIR`` runs DIR's ``dra_jax`` (``cd DIR; PYTHONPATH=DIR python -m dra_jax.fit``), so an
old tree is timed by the same script. JAX's persistent compilation cache starts empty in a
temporary folder (every program is compiled: compile time is part of the measurement);
``--warm-cache`` uses the user's cache instead. The default ``--subjects 80`` fits the whole
data set, measured whole; with fewer subjects the 80-subject time is also EXTRAPOLATED
linearly from the measured one (compile time counted once) and says so. The process wall and
CPU time, the fit's own ``timing.fit_s`` (summary.json), each model's time and the compile
time (JAX's monitoring events) are recorded with the load average before and after.
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
SHIPPED = ROOT / "configs" / "fit_stimulus_response.toml"
MODELS = ("dra", "dra_equal", "lam0")


def _toml_value(v) -> str:
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def config_text(shipped: Path = SHIPPED) -> str:
    """The benchmark's config: the shipped config's task, seed, [fit], [bounds] and models dra,
    dra_equal, lam0, with no figures."""
    import tomllib

    raw = tomllib.loads(shipped.read_text())
    lines = [f'task = {_toml_value(raw["task"])}', f'seed = {raw.get("seed", 0)}',
             "figures = []", "[fit]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in raw["fit"].items()]
    for m in MODELS:
        lines.append(f"[models.{m}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in raw["models"][m].items()]
    lines.append("[bounds]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in raw["bounds"].items()]
    return "\n".join(lines) + "\n"


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


def run_timed(cmd: list[str], tree: Path, tmp: Path, cold_cache: bool = True) -> dict:
    """Run ``cmd`` (a ``python -c _WRAPPER ...`` fit command) with ``PYTHONPATH=tree``; exits
    with its stderr on failure. Returns the process wall and CPU time, the load average before
    and after, the compile time (JAX's tracing, lowering and XLA compile events) and every
    JAX event's summed duration. ``cold_cache``: an empty compilation cache in ``tmp``."""
    env = dict(os.environ, PYTHONPATH=str(tree), BENCH_COMPILE_OUT=str(tmp / "c.json"))
    env.pop("XLA_FLAGS", None)
    if cold_cache:
        env["DRA_JAX_CACHE_DIR"] = str(tmp / "jax-compile")
    load0 = os.getloadavg()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    events = json.loads((tmp / "c.json").read_text())
    return {"process_wall_s": wall,
            "process_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            "load_avg_before": load0, "load_avg_after": os.getloadavg(),
            "compile_s": sum(v for e, v in events.items() if e in _COMPILE_EVENTS),
            "jax_events_s": events}


def append_record(path: Path, rec: dict) -> None:
    """Append ``rec`` to the JSON list in ``path`` (atomically)."""
    from dra_jax.results import atomic_write_json

    prev = json.loads(path.read_text()) if path.exists() else []
    atomic_write_json(path, prev + [rec])


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
    ap.add_argument("--subjects", type=int, default=80)
    ap.add_argument("--cpu-devices", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="section.key=value, passed to the fit command")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use the user's persistent compilation cache (default: an empty one)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not DATA.exists():
        make_data()
    import pandas as pd

    df = pd.read_csv(DATA, dtype={"subject": str})
    subs = list(dict.fromkeys(df["subject"]))[:args.subjects]
    tree = Path(args.tree).resolve()
    text = config_text()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "classic.toml"
        cfg.write_text(text)
        cmd = [sys.executable, "-c", _WRAPPER, "--config", str(cfg), "--data", str(DATA),
               "--out", str(Path(tmp) / "out"), "--quiet"]
        if len(subs) < len(set(df["subject"])):
            cmd += ["--subjects", ",".join(subs)]
        for o in args.overrides:
            cmd += ["--set", o]
        if args.cpu_devices is not None:
            cmd += ["--cpu-devices", str(args.cpu_devices)]
        timed = run_timed(cmd, tree, Path(tmp), cold_cache=not args.warm_cache)
        summ = json.loads((Path(tmp) / "out" / "summary.json").read_text())
        fits = pd.read_csv(Path(tmp) / "out" / "fits.csv", dtype={"subject": str})
    wall = timed["process_wall_s"]
    k = len(subs)
    fcfg = summ["config"]["fit"]
    rec = {"label": args.label, "tree": str(tree), "subjects": k, "trials_per_subject": 560,
           "models": list(MODELS), "config": text, "overrides": args.overrides,
           "n_particles": fcfg["n_particles"], "search_particles": fcfg["search_particles"],
           "restarts": fcfg["restarts"], "generations": fcfg["generations"],
           "n_reps": fcfg["n_reps"], "cpu_devices": args.cpu_devices,
           "compile_cache": "user's (warm)" if args.warm_cache else "empty (cold)",
           **timed, "fit_s": summ["timing"]["fit_s"],
           "model_s": {m: float(g["fit_s"].sum()) for m, g in fits.groupby("model", sort=False)}}
    if k == 80:
        rec["note"] = "all 80 subjects fitted: measured whole, compile included"
    else:
        rec["extrapolated_80_subjects_s"] = rec["compile_s"] + (wall - rec["compile_s"]) * 80 / k
        rec["note"] = (f"measured on {k} subjects; the 80-subject time is a linear extrapolation "
                       "of the process wall time less the compile time (tracing, lowering, XLA "
                       "compile: JAX's monitoring events), which is counted once")
    rec.update({
           "loglik_totals": {m: v["loglik"] for m, v in summ["totals"].items()},
           "loglik": fits.set_index(["model", "subject"])["loglik"].round(3).to_dict(),
           "loglik_se": fits.set_index(["model", "subject"])["loglik_se"].round(4).to_dict()})
    for key in ("loglik", "loglik_se"):
        rec[key] = {f"{m}/{s}": v for (m, s), v in rec[key].items()}
    params = [c for c in fits.columns if c in ("lam", "beta", "alpha_q", "sigma0")]
    rec["estimates"] = {f"{r['model']}/{r['subject']}": {p: round(float(r[p]), 5) for p in params
                                                          if r[p] == r[p]}
                        for _, r in fits.iterrows()}
    print(json.dumps({k_: v for k_, v in rec.items()
                      if k_ not in ("loglik", "loglik_se", "estimates", "config")}, indent=1))
    if args.out:
        append_record(Path(args.out), rec)


if __name__ == "__main__":
    main()
