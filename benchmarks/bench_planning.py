"""Benchmark: the whole ``configs/planning.toml`` reproduction (Fig. 3c-f).

All budgets x restarts x n_traj settings x allocations (160 DRA runs in 3 compiled, vmapped
calls, one per n_traj) plus the CMA-ES baseline (8 budgets x 5 restarts in lockstep, one
vmapped evaluation per generation). Compile time is reported apart from run time; every timed
section ends on materialized (``block_until_ready`` / host-copied) results.

    python benchmarks/bench_planning.py [--set section.key=value ...] [--json out.json]

Target (issue 4): under 5 minutes on the 2-core CPU.
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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
