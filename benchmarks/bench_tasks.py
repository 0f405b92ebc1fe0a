"""Benchmark: lane-engine throughput of a task as the grid-world experiment builds it.

    python benchmarks/bench_tasks.py [--batches 16,256] [--episodes 500] [--repeats 5]
                                     [--json PATH]

Times ``make_batched`` on the task that ``dra_jax.experiments.gridworld.make_task``
returns (Table B.1 parameters, sigma0 = 3, one device), so the same script measures any version
of the code: run it on two checkouts back to back to compare a table-driven task with another.
Compile time (lower + compile) is reported apart; run time is the median of ``--repeats``
timed runs, each ending in ``block_until_ready``; throughput is env steps per second.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.lane import agent

try:  # the batching module (older versions of the code kept it in agent)
    from dra_jax.lane.batching import make_batched
except ImportError:
    make_batched = agent.make_batched
from dra_jax.experiments import gridworld

DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


def bench(batch: int, episodes: int, repeats: int, switch: bool) -> dict:
    task = gridworld.make_task({"switch": switch, "switch_episode": episodes // 2})
    st = agent.AgentStatic(episodes=episodes, n_traj=10, max_steps=500, eval_every=100,
                           n_rollouts=100)
    tp = {"switch_episode": np.int32(episodes // 2)}
    params = agent.stack_params([agent.make_run_params(DRA, s, tp) for s in range(batch)])
    init_b, adv_b, fin_b = make_batched(task, st)
    t0 = time.perf_counter()
    lane = init_b(params)
    compiled = adv_b.lower(params, lane, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    times, steps = [], 0
    for _ in range(repeats):
        lane = jax.block_until_ready(init_b(params))
        t0 = time.perf_counter()
        lane = jax.block_until_ready(compiled(params, lane, jnp.int32(2**30)))
        times.append(time.perf_counter() - t0)
        steps = int(np.asarray(lane.env_steps).sum())
    run_s = statistics.median(times)
    return {"batch": batch, "episodes": episodes, "switch": switch, "compile_s": round(compile_s, 3),
            "run_s_median": round(run_s, 4), "run_s_all": [round(t, 4) for t in times],
            "env_steps": steps, "env_steps_per_s": round(steps / run_s),
            "final_objective_mean": float(np.nanmean(np.asarray(lane.curves)[:, -1, 0]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,256")
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--switch", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = [bench(int(b), a.episodes, a.repeats, a.switch) for b in a.batches.split(",")]
    for r in rows:
        print(json.dumps(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"devices": [str(d) for d in jax.devices()], "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
