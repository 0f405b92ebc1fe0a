"""Time ``python -m dra_jax.fit`` with configs/fit_rlwm.toml's rlwm on the shared real data, whole,
and compare its fits with the authors' published ones.

    python benchmarks/bench_fit_rlwm.py [--data ../shared/data/rlwm_collins_frank_2012.csv]
                                        [--models rlwm] [--tree DIR] [--out FILE]

The command runs as a newcomer would run it (figures and posterior predictive check included),
in a subprocess with ``PYTHONPATH=DIR``; the compile time (tracing, lowering and XLA compile:
JAX's monitoring events) is recorded apart from the wall time, with the load average before
and after. Against the published "WM RL0 0" fits (the ``rlwm`` model of the config): per
subject the fitted minus the published log-likelihood, its median and minimum.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit_classic import _COMPILE_EVENTS, _WRAPPER  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/rlwm_collins_frank_2012.csv"))
    ap.add_argument("--models", default="rlwm")
    ap.add_argument("--tree", default=str(ROOT))
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import pandas as pd

    tree = Path(args.tree).resolve()
    data = Path(args.data).resolve()
    published = data.with_name(data.stem + "_published_fits.csv")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-c", _WRAPPER, "--config", str(tree / "configs/fit_rlwm.toml"),
               "--data", str(data), "--models", args.models, "--out", str(out), "--quiet",
               "--no-compile-cache"]
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
        summ = json.loads((out / "summary.json").read_text())
        fits = pd.read_csv(out / "fits.csv", dtype={"subject": str})
        events = json.loads((Path(tmp) / "c.json").read_text())
    rec = {"label": args.label, "tree": str(tree), "models": args.models.split(","),
           "subjects": int(fits["subject"].nunique()), "process_wall_s": wall,
           "process_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "fit_s": summ["timing"]["fit_s"], "load_avg_before": load0,
           "load_avg_after": os.getloadavg(),
           "compile_s": sum(v for e, v in events.items() if e in _COMPILE_EVENTS),
           "loglik_totals": {m: v["loglik"] for m, v in summ["totals"].items()}}
    if "rlwm" in rec["models"] and published.exists():
        pub = pd.read_csv(published, dtype={"subject": str})
        pub = pub[pub["model"] == "WM RL0 0"].set_index("subject")["loglik"]
        own = fits[fits["model"] == "rlwm"].set_index("subject")["loglik"]
        diff = (own - pub.loc[own.index]).sort_values()
        rec["vs_published_wm_rl0"] = {"median": float(diff.median()), "min": float(diff.min()),
                                      "below_2": int((diff < -2).sum()),
                                      "above_0.01": int((diff > 0.01).sum()),
                                      "worst": diff.head(5).round(3).to_dict()}
    print(json.dumps(rec, indent=1))
    if args.out:
        from dra_jax.results import atomic_write_json

        path = Path(args.out)
        prev = json.loads(path.read_text()) if path.exists() else []
        atomic_write_json(path, prev + [rec])


if __name__ == "__main__":
    main()
