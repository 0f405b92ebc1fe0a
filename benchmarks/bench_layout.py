"""Benchmark (issue 21): the lane engine's layout per config: sub-lanes W and block length.

    python benchmarks/bench_layout.py [--json benchmarks/results/paper_layout_cpu.json]

For the grid-world (20 runs: Fig. 1b's width) and mountain car (16 runs: Fig. 2's 15, padded
to the devices) at their configs' parameters (n_traj 10, 100 evaluation rollouts), each
layout ``(W, block)`` trains the same runs for a few hundred (grid-world) or tens (mountain
car) of episodes on all host devices (one per core, as the sweep and paper commands do), in
a fresh subprocess: compile apart from the run (``block_until_ready``), env steps per second,
loop iterations and microseconds per iteration. A different W or block changes a run's random
numbers, not their distribution: the final objective is printed beside (same runs, seeds).
The shipped configs take the fastest layout: grid-world W 4, block 32; mountain car W 8,
block 64 (the sync's dense work over 855 memories, every block, is what a longer block saves).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, sigma_base=5.0, sigma0=3.0,
           sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible", learn_q=True,
           learn_sigma=True)
LAYOUTS = {"gridworld": [(1, 16), (4, 16), (4, 32), (8, 16)],
           "mountain_car": [(1, 16), (1, 64), (4, 16), (4, 64), (8, 64)]}
SIZES = {"gridworld": (20, 500), "mountain_car": (16, 20)}  # runs, episodes


def worker(task_name: str, runs: int, episodes: int, W: int, block: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dra_jax.lane import agent, batching

    if task_name == "gridworld":
        from dra_jax.envs.gridworld import GridTask

        task, tp, lam, max_steps, every = GridTask(), None, 0.2, 500, 100
    else:
        from dra_jax.experiments.mountain_car import make_task, task_run_params

        task = make_task({"cells": [19, 15], "scale": [10.0, 100.0]})
        tp, lam, max_steps, every = task_run_params({"random_start": False}), 0.1, 200, 50
    n_dev = len(jax.local_devices())
    st = agent.AgentStatic(episodes=episodes, n_traj=10, max_steps=max_steps, eval_every=every,
                           n_rollouts=100, sub_lanes=W, block=block)
    params = agent.stack_params([agent.make_run_params(dict(DRA, lam=lam), i, tp)
                                 for i in range(runs)])
    params, _ = batching.pad_batch(params, n_dev, 2)
    init_b, adv_b, fin_b = batching.make_batched(task, st, n_dev)
    t0 = time.perf_counter()
    lane0 = jax.block_until_ready(init_b(params))
    adv = adv_b.lower(params, lane0, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lane = jax.block_until_ready(adv(params, lane0, jnp.int32(2**30)))
    run_s = time.perf_counter() - t0
    out = fin_b(lane)
    steps = int(np.asarray(out.env_steps)[:runs].sum())
    iters = int(np.asarray(lane.block_idx).max()) * block
    return {"task": task_name, "runs": runs, "episodes": episodes, "sub_lanes": W,
            "block": block, "devices": n_dev, "compile_s": round(compile_s, 2),
            "run_s": round(run_s, 3), "env_steps": steps, "env_steps_per_s": round(steps / run_s),
            "loop_iterations": iters, "us_per_iteration": round(1e6 * run_s / iters, 2),
            "final_objective_mean": float(np.asarray(out.curves)[:runs, -1, 0].mean()),
            "loadavg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        t, r, e, w, b = a.worker.split(",")
        print(json.dumps(worker(t, int(r), int(e), int(w), int(b))))
        return
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    env.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")
    rows = []
    for task, layouts in LAYOUTS.items():
        runs, eps = SIZES[task]
        for W, block in layouts:
            p = subprocess.run([sys.executable, __file__, "--worker", f"{task},{runs},{eps},{W},{block}"],
                               env=env, capture_output=True, text=True, timeout=1800)
            if p.returncode != 0:
                raise SystemExit(p.stderr[-3000:])
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        base = rows[-len(layouts)]["run_s"]
        for r in rows[-len(layouts):]:
            r["speedup_vs_W1_block16"] = round(base / r["run_s"], 2)
    rec = {"benchmark": "lane engine layout (issue 21)", "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
