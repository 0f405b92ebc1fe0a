"""VE-PSRL (Algorithm 7) sweep time on RiverSwim, and Blahut-Arimoto iterations with and without
the warm start.

The issue's size: 100 seeds x 8 betas x 500 episodes of RiverSwim (H = 20), Z = 64 posterior
samples a episode, in under 5 minutes on this CPU. One ``jit(vmap(run))`` call over the 800
(seed, beta) lanes (split over the host devices with ``shard_map``), a ``lax.scan`` over
episodes inside. Compile time is measured apart (``lower().compile()``) and the call is
``block_until_ready``-ed. Run once with the warm start and once from the uniform marginal; the
record gives the mean and the largest BA iterations per episode of each.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/bench_episodic.py \\
        --json benchmarks/results/episodic_cpu.json
    python benchmarks/bench_episodic.py --seeds 10 --episodes 100     # a quick look
    ... --compare-episodes 100   # full size with the warm start, the comparison at 100 episodes
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import jax
import numpy as np

from dra_jax.envs import episodic as envs
from dra_jax.episodic import psrl
from dra_jax.experiments import episodic as exp


def bench(seeds: int, betas: list[float], episodes: int, z: int, n_values: int, warm: bool,
          tol: float, max_iter: int, loop: str) -> dict:
    st_, true = envs.riverswim(6)
    tr = envs.MDP(np.asarray(true.P), np.asarray(true.R))
    static = psrl.Static("vepsrl", 20, episodes, z, "all", "optimal", n_values, max_iter, loop, warm)
    seed_list = [s for _ in betas for s in range(seeds)]
    hyps = [psrl.make_hyper(beta=b, ba_tol=tol) for b in betas for _ in range(seeds)]
    out, c_s, r_s = exp.run_psrl_batch(static, st_, seed_list, hyps, [tr] * len(seed_list))
    it = out.iters.reshape(len(betas), seeds, episodes)
    reg = out.cum_regret.reshape(len(betas), seeds)
    rate = out.cum_rate.reshape(len(betas), seeds)
    return {
        "warm_start": warm, "lanes": len(seed_list), "episodes": episodes, "z_samples": z,
        "n_values": n_values, "ba_tol": tol, "ba_max_iter": max_iter, "ba_loop": loop,
        "compile_s": round(c_s, 2), "run_s": round(r_s, 2),
        "lane_episodes_per_s": round(len(seed_list) * episodes / r_s, 1),
        "ba_iters_per_episode_mean": float(it.mean()),
        "ba_iters_per_episode_mean_by_beta": [round(float(x), 2) for x in it.mean(axis=(1, 2))],
        "ba_iters_max": int(it.max()), "ba_capped_episodes": int(out.capped.sum()),
        "ba_gap_capped_median": float(np.median(out.gap[out.capped])) if out.capped.any() else 0.0,
        "ba_gap_max": float(out.gap.max()),
        "cum_regret_mean_by_beta": [round(float(x), 3) for x in reg.mean(1)],
        "cum_rate_mean_by_beta": [round(float(x), 3) for x in rate.mean(1)],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--betas", type=float, nargs="+",
                    default=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e6])
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--z", type=int, default=64)
    ap.add_argument("--n-values", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--loop", default="while", choices=("while", "fori"))
    ap.add_argument("--warm", nargs="+", default=["on", "off"], choices=("on", "off"))
    ap.add_argument("--compare-episodes", type=int, default=0,
                    help="if > 0: the first --warm setting at the full size, then every --warm "
                         "setting at this many episodes (the warm-start comparison, cheaper)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rec = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "devices": [str(d) for d in jax.devices()],
                       "load_avg_at_start": list(os.getloadavg())},
           "betas": args.betas, "runs": []}
    plan = [(w, args.episodes) for w in args.warm]
    if args.compare_episodes:
        plan = [(args.warm[0], args.episodes)] + [(w, args.compare_episodes) for w in args.warm]
    for w, episodes in plan:
        r = bench(args.seeds, args.betas, episodes, args.z, args.n_values, w == "on",
                  args.tol, args.max_iter, args.loop)
        print(json.dumps(r), flush=True)
        rec["runs"].append(r)
    rec["machine"]["load_avg_at_end"] = list(os.getloadavg())
    if args.json:
        from dra_jax.results import atomic_write_json

        atomic_write_json(args.json, rec)


if __name__ == "__main__":
    main()
