"""Benchmark: the whole ``configs/planning.toml`` reproduction (Fig. 3c-f).

All budgets x restarts x n_traj settings x allocations (160 DRA runs in 3 compiled, vmapped
calls, one per n_traj) plus the CMA-ES baseline (8 budgets x 5 restarts in lockstep, one
vmapped evaluation per generation). Compile time is reported apart from run time; every timed
section ends on materialized (``block_until_ready`` / host-copied) results.

    python benchmarks/bench_planning.py [--set section.key=value ...] [--json out.json]

Target (issue 4): under 5 minutes on the 2-core CPU.

    python benchmarks/bench_planning.py --compare results/planning_loo [--json out.json]

reads a finished sweep of ``configs/planning_loo.toml`` instead and prints (and writes) the
budget table of Fig. 3c/3d: F of the paper's estimator, of the variance-reduced estimator, of
equal precision and of CMA-ES, with E*, spreads over seeds and converged counts
(:func:`dra_jax.paper.claims_planning.comparison`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from dra_jax import config as config_mod  # noqa: E402
from dra_jax.experiments import planning as px  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "planning.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="config override, e.g. --set dra.episodes=2000")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--compare", default=None, metavar="OUT_DIR",
                    help="print the budget table of a finished planning_loo sweep and exit")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(Path(args.compare), args.json)
    cfg = config_mod.load(args.config, args.overrides)
    runs = list(config_mod.iter_run_params(cfg))
    t0 = time.perf_counter()
    res = px.run(cfg, runs, None)  # results are host numpy arrays: everything has finished
    wall = time.perf_counter() - t0
    t = res.timing
    train_compile = t["compile_s"] - t.get("cma_compile_s", 0.0)
    train_run = t["run_s"] - t.get("cma_run_s", 0.0)
    out = {
        "config": args.config, "overrides": args.overrides, "runs": len(runs),
        "episodes": cfg["dra"]["episodes"], "cma_generations": cfg["cma"]["generations"],
        "devices": jax.device_count(), "backend": jax.default_backend(),
        "dra_compile_s": round(train_compile, 2), "dra_run_s": round(train_run, 2),
        "cma_compile_s": round(t.get("cma_compile_s", 0.0), 2),
        "cma_run_s": round(t.get("cma_run_s", 0.0), 2),
        "compile_s": round(t["compile_s"], 2), "run_s": round(t["run_s"], 2),
        "wall_s": round(wall, 2), "planner_transitions": t["env_steps"],
        "transitions_per_s": round(t["env_steps"] / max(t["run_s"], 1e-9)),
        "target_s": 300, "within_target": wall < 300,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _cell(e) -> str:
    if e is None:
        return "-"
    return (f"{e['mean']:.2f} ± {e['sd']:.2f} ({e['converged']}/{e['runs']} conv.)")


def compare(out_dir: Path, json_path) -> int:
    """The Fig. 3c/3d budget table of a finished sweep (see the module docstring)."""
    from dra_jax import load
    from dra_jax.paper.claims_planning import comparison

    res = load(out_dir)
    table = comparison(res)
    vr_n = sorted({n for t in table for n in t["flexible_vr"]})
    head = (["b", "paper est. flexible (n10)"] + [f"VR flexible (n{n})" for n in vr_n]
            + ["equal (VR)", "CMA-ES", "E*"])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for t in table:
        cells = ([str(t["budget"]), _cell(t["flexible_paper"])]
                 + [_cell(t["flexible_vr"].get(n)) for n in vr_n]
                 + [_cell(t["equal"]), _cell(t["cma"]), f"{t['E_star']:.3f}"])
        print("| " + " | ".join(cells) + " |")
    out = {"source": str(out_dir), "config": res.summary["config"], "timing": res.summary["timing"],
           "unconverged_runs": res.summary.get("unconverged_runs"),
           "converged_definition": res.summary.get("converged_definition"), "table": table}
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
