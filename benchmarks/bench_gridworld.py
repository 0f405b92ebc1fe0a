"""Benchmark: the Fig. 1b sweep (grid-world, 20 runs x 5000 episodes) in JAX vs plain NumPy.

    python benchmarks/bench_gridworld.py [--episodes 5000] [--numpy-episodes 300] [--repeats 3]
                                         [--json benchmarks/results/gridworld.json]

JAX: compile time (lower + compile) apart from run time, which is the median of ``--repeats``
timed runs, each ending in ``block_until_ready``. NumPy: ``dra_jax.lane.reference.run_reference``
(the same Algorithm 1, one run at a time, its own NumPy random numbers) on a few runs of
``--numpy-episodes`` episodes; its env steps per second are extrapolated to the JAX sweep's
env steps. Early episodes are long (random walks of up to 500 steps), so the NumPy runs cover
the same mix by running the first episodes of the sweep; the extrapolation is by steps.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.envs.gridworld import GridTask
from dra_jax.lane import agent, batching
from dra_jax.lane.reference import run_reference

DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)
SIGMA0S = (1.0, 3.0, 4.0, 5.0)


def bench_jax(episodes: int, n_seeds: int, repeats: int) -> dict:
    task = GridTask()
    st = agent.AgentStatic(episodes=episodes, n_traj=10, max_steps=500, eval_every=100,
                           n_rollouts=100)
    params = agent.stack_params([agent.make_run_params(dict(DRA, sigma0=s0), seed)
                                 for s0 in SIGMA0S for seed in range(n_seeds)])
    init_b, adv_b, fin_b = batching.make_batched(task, st)
    t0 = time.perf_counter()
    lane0 = jax.block_until_ready(init_b(params))
    adv_c = adv_b.lower(params, lane0, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        lane = adv_c(params, lane0, jnp.int32(2**30))
        out = jax.block_until_ready(fin_b(lane))
        times.append(time.perf_counter() - t0)
    steps = int(np.asarray(out.env_steps).sum())
    run_s = statistics.median(times)
    curves = np.asarray(out.curves)
    return {"runs": len(SIGMA0S) * n_seeds, "episodes": episodes, "compile_s": compile_s,
            "run_s_median": run_s, "run_s_all": times, "env_steps": steps,
            "env_steps_per_s": steps / run_s, "total_s_incl_compile": compile_s + run_s,
            "final_objective_mean": float(curves[:, -1, 0].mean())}


def bench_numpy(episodes: int, n_runs: int) -> dict:
    task = GridTask()
    t = task.tables
    tables = {"next": t.next_state[0], "reward": t.reward[0], "terminal": t.terminal[0], "start": t.start}
    steps, secs = 0, 0.0
    for i in range(n_runs):
        t0 = time.perf_counter()
        *_, n = run_reference(tables, dict(DRA, sigma0=SIGMA0S[i % 4]), episodes, 10, 500, 100, 100,
                              seed=i, learnable=task.learnable, noise_source="numpy",
                              dtype=np.float64)
        secs += time.perf_counter() - t0
        steps += n
    return {"runs": n_runs, "episodes": episodes, "env_steps": steps, "seconds": secs,
            "env_steps_per_s": steps / secs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=5, help="seeds per sigma0 (4 sigma0 values)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-episodes", type=int, default=300)
    ap.add_argument("--numpy-runs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    j = bench_jax(a.episodes, a.seeds, a.repeats)
    n = bench_numpy(a.numpy_episodes, a.numpy_runs)
    numpy_sweep_s = j["env_steps"] / n["env_steps_per_s"]
    rec = {
        "benchmark": "gridworld Fig. 1b sweep",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_version": jax.__version__, "devices": [str(d) for d in jax.devices()],
        "machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
        "jax": j, "numpy_reference": n,
        "numpy_sweep_s_extrapolated": numpy_sweep_s,
        "speedup_run": numpy_sweep_s / j["run_s_median"],
        "speedup_incl_compile": numpy_sweep_s / j["total_s_incl_compile"],
    }
    print(f"JAX   : {j['runs']} runs x {j['episodes']} episodes: compile {j['compile_s']:.2f} s, "
          f"run {j['run_s_median']:.2f} s (median of {a.repeats}), {j['env_steps'] / 1e6:.1f} M env steps, "
          f"{j['env_steps_per_s'] / 1e6:.2f} M steps/s; compile + run {j['total_s_incl_compile']:.1f} s")
    print(f"NumPy : {n['env_steps_per_s'] / 1e3:.1f} k steps/s ({n['runs']} runs x {n['episodes']} episodes); "
          f"the sweep would take {numpy_sweep_s:.0f} s")
    print(f"speed-up: {rec['speedup_run']:.0f}x (run), {rec['speedup_incl_compile']:.0f}x (compile included)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rec, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
