"""Throughput of DRA on mountain car: the config's sweep in the lane engine vs a plain-NumPy loop.

    python benchmarks/bench_mountain_car.py [--config configs/mountain_car.toml]
        [--episodes N] [--numpy-episodes M] [--repeats R] [--json OUT]
        [--from-summary results/.../summary.json]

* **JAX**: the config's whole grid (e.g. psi = R, Q, A x 5 seeds = 15 runs) through
  :func:`dra_jax.lane.runner.run_lane_task`, i.e. one ``jit(vmap(...))`` program per static group;
  compile time (``lower().compile()``) is reported apart from run time, which ends with
  ``block_until_ready``. ``--episodes`` shortens the runs (default: the config's).
  ``--repeats R`` runs the sweep R times (same numbers each time) and reports the median run
  time and the median compile time (each call compiles its own program), with every repeat's
  times listed.
* **NumPy**: the same work for one run, written as a plain Python/NumPy loop (Algorithm 1:
  acting episode with expected SARSA, ``n_traj`` gradient rollouts with Psi in A | Q | R,
  sigma update, evaluations; the MountainCar-v0 equations of gymnax, ``x = -0.5`` start), timed
  on the first ``--numpy-episodes`` episodes of each grid point and extrapolated by env steps:
  NumPy time of the sweep = JAX env steps / NumPy env steps per second. ``--numpy-episodes 0``
  skips it.

Early episodes are the longest (200-step truncated rollouts), so rates per episode depend on
how far training goes; env steps per second are the comparable number.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ the plain-NumPy loop

MIN_X, MAX_X, MAX_V, GOAL_X, FORCE, GRAVITY = -1.2, 0.6, 0.07, 0.5, 0.001, 0.0025


def _mc_step(x, v, a):
    """MountainCar-v0 (the equations of gymnax's step_env), one step in Python floats."""
    v = min(max(v + (a - 1) * FORCE - math.cos(3 * x) * GRAVITY, -MAX_V), MAX_V)
    x = min(max(x + v, MIN_X), MAX_X)
    if x == MIN_X and v < 0:
        v = 0.0
    return x, v, -1.0, (x >= GOAL_X and v >= 0.0)


def numpy_run(dra: dict, tp: dict, episodes: int, eval_every: int, n_rollouts: int, seed: int = 0):
    """Algorithm 1 on mountain car, one run, plain NumPy; returns (env_steps, seconds)."""
    cells = tuple(tp["cells"])
    scale = np.asarray(tp["scale"], np.float64)
    low = np.array([MIN_X, -MAX_V])
    S, A = cells[0] * cells[1], 3
    beta, gamma, lam = dra["beta"], dra["gamma"], dra["lam"]
    aq, asg, sb = dra["alpha_q"], dra["alpha_sigma"], dra["sigma_base"]
    psi, n_traj, max_steps = dra["psi"], dra["n_traj"], dra["max_steps"]
    q = np.zeros((S, A))
    sigma = np.full((S, A), dra["sigma0"])
    rng = np.random.default_rng(seed)
    steps = 0

    def row(x, v):
        i = np.clip(np.round((np.array([x, v]) - low) * scale), 0, np.array(cells) - 1).astype(int)
        return i[0] * cells[1] + i[1]

    def probs(s, z):
        lg = beta * (q[s] + z * sigma[s])
        e = np.exp(lg - lg.max())
        return e / e.sum()

    def rollout(mode):
        nonlocal steps
        x, v = -0.5, 0.0
        s = row(x, v)
        ret, disc, terms = 0.0, 1.0, []
        for t in range(1, max_steps + 1):
            z, z2 = rng.standard_normal(A), rng.standard_normal(A)
            p = probs(s, z)
            a = min(int(np.sum(np.cumsum(p) <= rng.random())), A - 1)
            x, v, r, term = _mc_step(x, v, a)
            s2 = row(x, v)
            steps += 1
            if mode == "act":
                p2 = probs(s2, z2)
                q[s, a] += aq * (r + gamma * (0.0 if term else 1.0) * p2 @ q[s2] - q[s, a])
            elif mode == "grad":
                score = beta * z * (np.eye(A)[a] - p)
                w = q[s, a] if psi == "Q" else q[s, a] - q[s].mean()
                terms.append((s, score, w, ret, disc))
            ret += disc * r
            disc *= gamma
            if term:
                break
            s = s2
        return ret, terms

    t0 = time.perf_counter()
    for k in range(episodes + 1):
        if k % eval_every == 0 or k == episodes:
            for _ in range(n_rollouts):
                rollout("eval")
            _ = lam * np.sum(0.5 * ((sigma / sb) ** 2 - 1) - np.log(sigma / sb))
        if k == episodes:
            break
        rollout("act")
        G = np.zeros((S, A))
        for _ in range(n_traj):
            R, terms = rollout("grad")
            for s, score, w, before, disc in terms:
                G[s] += ((R - before) / disc if psi == "R" else w) * score
        g = G / n_traj - lam * (sigma / sb ** 2 - 1 / sigma)
        if dra["allocation"] == "equal":
            g = np.full_like(g, g.sum())
        if dra["learn_sigma"]:
            sigma = np.clip(sigma + asg * g, dra["sigma_min"], dra["sigma_max"])
    return steps, time.perf_counter() - t0


# ------------------------------------------------------------------ main


class _Quiet:
    def update(self, *a, **k):
        pass

    def message(self, *a, **k):
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/mountain_car.toml"))
    ap.add_argument("--episodes", type=int, default=None, help="episodes per run (default: config's)")
    ap.add_argument("--numpy-episodes", type=int, default=10,
                    help="NumPy episodes timed per grid point (0: skip the NumPy loop)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the JAX sweep this many times; medians are reported")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    ap.add_argument("--from-summary", default=None, metavar="SUMMARY_JSON",
                    help="take the JAX timing from a finished sweep's summary.json (same config) "
                         "instead of running the sweep again")
    args = ap.parse_args(argv)

    from dra_jax import config as config_mod
    from dra_jax.experiments.mountain_car import make_task, task_run_params
    from dra_jax.lane.runner import run_lane_task

    over = [f"dra.episodes={args.episodes}"] if args.episodes else []
    cfg = config_mod.load(args.config, over)
    runs = list(config_mod.iter_run_params(cfg))
    episodes = sum(r["dra"]["episodes"] for r in runs)

    repeats = []
    if args.from_summary:
        t = json.loads(Path(args.from_summary).read_text())["timing"]
    else:
        for _ in range(max(1, args.repeats)):
            repeats.append(run_lane_task(cfg, runs, _Quiet(), make_task, task_run_params).timing)
        t = dict(repeats[0])
        t["run_s"] = float(np.median([r["run_s"] for r in repeats]))
        t["compile_s"] = float(np.median([r["compile_s"] for r in repeats]))
        assert len({r["env_steps"] for r in repeats}) == 1, "repeats gave different env steps"
    jax_rate = episodes / t["run_s"]
    jax_sps = t["env_steps"] / t["run_s"]

    # NumPy: the first episodes of one run per grid point (psi differs per point)
    np_steps = np_time = 0.0
    seen = set()
    for r in runs if args.numpy_episodes > 0 else []:
        key = json.dumps(r["point"] | {"seed": None}, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        s, dt = numpy_run(r["dra"], r["task_params"], args.numpy_episodes, cfg["eval"]["every"],
                          cfg["eval"]["n_rollouts"] if args.numpy_episodes >= cfg["eval"]["every"] else 1,
                          seed=r["seed"])
        np_steps += s
        np_time += dt
    np_sps = np_steps / np_time if np_time else float("nan")
    np_sweep_s = t["env_steps"] / np_sps
    out = {
        "config": args.config, "runs": len(runs), "episodes_per_run": runs[0]["dra"]["episodes"],
        "jax": {"compile_s": t["compile_s"], "run_s": t["run_s"], "env_steps": t["env_steps"],
                "run_episodes_per_s": round(jax_rate, 1), "env_steps_per_s": round(jax_sps),
                "devices": t["devices"],
                "repeats": [{"compile_s": r["compile_s"], "run_s": r["run_s"]} for r in repeats]},
        "numpy": None if not np_time else {
            "timed_env_steps": int(np_steps), "timed_s": round(np_time, 3),
            "env_steps_per_s": round(np_sps), "extrapolated_sweep_s": round(np_sweep_s, 1)},
        "speedup_env_steps_per_s": round(jax_sps / np_sps, 1) if np_time else None,
        "load_average": list(os.getloadavg()),
    }
    buf = io.StringIO()
    print(f"mountain car sweep ({args.config}): {len(runs)} runs x {out['episodes_per_run']} "
          "episodes", file=buf)
    med = f" (median of {len(repeats)})" if len(repeats) > 1 else ""
    print(f"  JAX  : compile {t['compile_s']:.1f} s, run {t['run_s']:.2f} s{med}, "
          f"{jax_rate:,.0f} run-episodes/s, {jax_sps / 1e6:.3f} M env steps/s", file=buf)
    if len(repeats) > 1:
        print("         run s per repeat: " + ", ".join(f"{r['run_s']:.2f}" for r in repeats), file=buf)
    if np_time:
        print(f"  NumPy: {np_sps / 1e3:.1f} k env steps/s ({int(np_steps):,} steps timed) -> "
              f"~{np_sweep_s / 60:.1f} min for the same sweep", file=buf)
        print(f"  speed-up (env steps/s): {out['speedup_env_steps_per_s']}x", file=buf)
    print(buf.getvalue(), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
