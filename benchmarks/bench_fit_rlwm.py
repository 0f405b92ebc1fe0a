"""Time ``python -m dra_jax.fit`` with configs/fit_rlwm.toml's rlwm on the shared real data, whole,
and compare its fits with the authors' published ones.

    python benchmarks/bench_fit_rlwm.py [--data ../shared/data/rlwm_collins_frank_2012.csv]
                                        [--models rlwm] [--tree DIR] [--out FILE]

The command runs as a newcomer would run it (figures and posterior predictive check included),
in a subprocess with ``PYTHONPATH=DIR`` and an empty compilation cache; the compile time (tracing,
lowering and XLA compile: JAX's monitoring events) is recorded apart from the wall time, with the
load average before and after. Against the published "WM RL0 0" fits (the ``rlwm`` model of the
config): per subject the fitted minus the published log-likelihood, its median and minimum.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit_classic import _WRAPPER, append_record, run_timed  # noqa: E402


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
               "--data", str(data), "--models", args.models, "--out", str(out), "--quiet"]
        timed = run_timed(cmd, tree, Path(tmp))
        summ = json.loads((out / "summary.json").read_text())
        fits = pd.read_csv(out / "fits.csv", dtype={"subject": str})
    rec = {"label": args.label, "tree": str(tree), "models": args.models.split(","),
           "subjects": int(fits["subject"].nunique()), **timed,
           "fit_s": summ["timing"]["fit_s"],
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
        append_record(Path(args.out), rec)


if __name__ == "__main__":
    main()
