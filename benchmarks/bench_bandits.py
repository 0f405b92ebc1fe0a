"""Bandit sweep throughput: agent-steps per second of TS and BLASTS (10 arms).

The issue's size is 1000 seeds x 10 betas x 10 000 steps (1e8 agent-steps per agent): BLASTS
by default as one ``jit(vmap(run))`` call per beta over its seeds (``--layout beta``, what
:mod:`dra_jax.bandits.runner` does: a step lasts as long as the batch's slowest lane, and
Blahut-Arimoto's iterations depend on beta), or one call over all (seed, beta) lanes
(``--layout mixed``, the layout before); a ``lax.scan`` over steps inside.
Compile time is measured apart (``lower().compile()``), every call is ``block_until_ready``-ed,
and the reported time is the median of ``--repeats`` calls. On a small CPU use ``--seeds`` /
``--steps`` to shrink the work (throughput per agent-step is what is compared).

    python benchmarks/bench_bandits.py                       # the issue's size
    python benchmarks/bench_bandits.py --seeds 100 --steps 200 --loops while fori
    python benchmarks/bench_bandits.py --agents blasts --seeds 50 --steps 1000 --layout beta mixed
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.bandits import agents as ba
from dra_jax.envs import bandits as envs


def bench(agent: str, kind: str, seeds: int, betas: np.ndarray, steps: int, arms: int, z: int,
          max_iter: int, tol: float, loop: str, repeats: int, warm: bool = True,
          vertex: bool = True, layout: str = "beta") -> dict:
    """``layout``: ``'mixed'``, one call over all (seed, beta) lanes (seed-major, as before);
    ``'beta'``, one call per beta over its seeds (the lanes of a call wait for its slowest
    lane only), the time being the sum over betas. The same compiled program serves every
    call of a layout; a lane's numbers do not depend on the layout (same key, same beta)."""
    st = ba.Static(agent, kind, arms, steps, record_every=steps, z_samples=z, ba_max_iter=max_iter,
                   ba_loop=loop, track_rate=False, ba_warm_start=warm, ba_vertex=vertex)
    n = seeds * len(betas)
    keys = jax.random.split(jax.random.key(0), n)  # lane i: seed i // n_betas, beta i % n_betas
    beta = jnp.asarray(np.repeat(betas[None, :], seeds, 0).reshape(-1), jnp.float32)
    hp = jax.vmap(lambda b: ba.make_hyper(ba_beta=b, ba_tol=tol))(beta)
    ep = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n,)), envs.EnvParams())
    if layout == "mixed":
        calls = [np.arange(n)]
    elif agent == "blasts":
        calls = [np.arange(j, n, len(betas)) for j in range(len(betas))]
    else:  # TS does not depend on beta: the layout is the same work
        calls = [np.arange(n)]
    take = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    with jax.threefry_partitionable(False):
        t0 = time.perf_counter()
        fn = jax.jit(jax.vmap(ba.make_run(st))).lower(*take((keys, hp, ep), calls[0])).compile()
        compile_s = time.perf_counter() - t0
        times, outs = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs = [jax.block_until_ready(fn(*take((keys, hp, ep), c))) for c in calls]
            times.append(time.perf_counter() - t0)
    run_s = statistics.median(times)
    out = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    lane = np.concatenate(calls)
    res = {"agent": agent, "kind": kind, "loop": loop if agent == "blasts" else None, "lanes": n,
           "layout": layout, "steps": steps, "agent_steps": n * steps,
           "compile_s": round(compile_s, 3),
           "run_s_median": round(run_s, 4), "run_s_all": [round(t, 4) for t in times],
           "agent_steps_per_s": n * steps / run_s,
           "mean_regret_per_step": float(np.mean(out.total_regret) / steps)}
    if agent == "blasts":
        res["ba_max_iters"] = int(np.max(out.max_iters))
        res["ba_capped_frac"] = float(np.sum(out.n_capped) / (n * steps))
        res["ba_iters_per_step_mean"] = float(np.mean(out.mean_iters))
        res["ba_warm_start"] = warm
        res["ba_vertex"] = vertex
        b_of = np.asarray(beta)[lane]
        res["per_beta"] = [{"beta": float(b),
                            "regret_per_step": float(np.mean(out.total_regret[b_of == b]) / steps),
                            "ba_iters_per_step_mean": float(np.mean(out.mean_iters[b_of == b])),
                            "ba_max_iters": int(np.max(out.max_iters[b_of == b])),
                            "ba_capped_frac": float(np.sum(out.n_capped[b_of == b]) / (seeds * steps))}
                           for b in np.asarray(betas, np.float32)]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--betas", type=float, nargs="+", default=list(np.logspace(0, 4.5, 10)))
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=10)
    ap.add_argument("--kind", default="gaussian", choices=envs.KINDS)
    ap.add_argument("--z", type=int, default=64, help="BLASTS posterior samples Z")
    ap.add_argument("--max-iter", type=int, default=100, help="Blahut-Arimoto cap")
    ap.add_argument("--tol", type=float, default=1e-4, help="Blahut-Arimoto tolerance")
    ap.add_argument("--agents", nargs="+", default=["ts", "blasts"], choices=ba.AGENTS)
    ap.add_argument("--loops", nargs="+", default=["while"], choices=ba.BA_LOOPS)
    ap.add_argument("--warm", nargs="+", default=["on"], choices=("on", "off"),
                    help="BLASTS: Blahut-Arimoto warm-started from the last step's marginal, or not")
    ap.add_argument("--vertex", nargs="+", default=["on"], choices=("on", "off"),
                    help="BLASTS: stop Blahut-Arimoto at a certified optimal vertex, or not")
    ap.add_argument("--layout", nargs="+", default=["beta"], choices=("beta", "mixed"),
                    help="BLASTS: one call per beta (its seeds), or one call over all lanes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    betas = np.asarray(args.betas, np.float32)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}; "
          f"{args.seeds} seeds x {len(betas)} betas x {args.steps} steps, {args.kind}, K={args.arms}, "
          f"Z={args.z}, BA cap {args.max_iter} tol {args.tol:g}", flush=True)
    results = []
    for agent in args.agents:
        blasts = agent == "blasts"
        for loop, warm, vx, lay in ([(lo, w, v, la) for lo in args.loops for w in args.warm
                                     for v in args.vertex for la in args.layout] if blasts
                                    else [("while", "on", "on", "mixed")]):
            r = bench(agent, args.kind, args.seeds, betas, args.steps, args.arms, args.z,
                      args.max_iter, args.tol, loop, args.repeats, warm == "on", vx == "on", lay)
            results.append(r)
            extra = (f"  warm {warm}, vertex {vx}, layout {lay}: BA iters/step "
                     f"{r['ba_iters_per_step_mean']:.1f}, max {r['ba_max_iters']}, capped "
                     f"{100 * r['ba_capped_frac']:.2f}% of steps" if blasts else "")
            print(f"{agent:7s} {r['loop'] or '':6s} compile {r['compile_s']:7.2f}s  run (median of "
                  f"{args.repeats}) {r['run_s_median']:8.3f}s  {r['agent_steps_per_s']:12,.0f} agent-steps/s"
                  f"{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
