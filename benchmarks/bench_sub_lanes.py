"""Benchmark (issue 12): sub-lanes in the lane engine, old tree against new tree back to back,
beside the numba scalar loop, in one run.

    python benchmarks/bench_sub_lanes.py --old /work/main --new . [--sub-lanes 1,2,4,10]
        [--engine-runs 4,20,200] [--json benchmarks/results/sub_lanes_cpu.json]

Each measurement runs in a fresh subprocess with ``PYTHONPATH`` set to the tree (so the old
tree's package is imported, not the installed one); the old tree's engine has one lane per run.
For each size the old tree and then the new tree with each ``--sub-lanes`` value run back to
back, so they see the same load:

* **engine**: the Fig. 1b parameters (grid-world, n_traj 10, evaluation every 100 episodes x
  100 rollouts), ``R`` runs x ``E`` episodes (sigma0 in 1, 3, 4, 5 x seeds) on one device:
  compile (lower + compile) apart from the run (``block_until_ready``), env steps per second;
  also the run's process CPU time (on a loaded machine less noisy than the wall time);
* **command**: the Fig. 1b sweep (``configs/gridworld.toml``, 20 runs x 5000 episodes) through
  ``python -m dra_jax.sweep --no-compile-cache --quiet`` (its default devices: both cores), wall
  time from process start to exit, and the ``timing`` of its ``summary.json``;
* **numba**: ``benchmarks/numba_ref.py``, compile + the 20 runs x 5000 episodes on one core;
* **mountain car** (``--mc-episodes N``): ``configs/mountain_car.toml`` (15 runs) shortened to
  N episodes through the command, old vs new, beside ``benchmarks/numba_mountain_car.py``.

The target of the issue: the command's wall time, compile included, <= 1.0x numba's 20 runs
plus its compile.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


def engine_worker(runs: int, episodes: int, sub_lanes: int) -> dict:
    """One engine measurement in this process (the tree on ``sys.path`` decides the engine)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dra_jax.envs.gridworld import GridTask
    from dra_jax.lane import agent, batching

    kw = {"sub_lanes": sub_lanes} if "sub_lanes" in agent.AgentStatic._fields else {}
    if sub_lanes != 1 and not kw:
        raise SystemExit("this tree has no sub-lanes")
    st = agent.AgentStatic(episodes=episodes, n_traj=10, max_steps=500, eval_every=100,
                           n_rollouts=100, **kw)
    params = agent.stack_params([agent.make_run_params(dict(DRA, sigma0=(1.0, 3.0, 4.0, 5.0)[i % 4]),
                                                       i // 4) for i in range(runs)])
    params, _ = batching.pad_batch(params, 2)
    init_b, adv_b, fin_b = batching.make_batched(GridTask(), st)
    t0 = time.perf_counter()
    lane0 = jax.block_until_ready(init_b(params))
    adv = adv_b.lower(params, lane0, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fin_b(adv(params, lane0, jnp.int32(2**30))))
    run_s, run_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    steps = int(np.asarray(out.env_steps)[:runs].sum())
    curves = np.asarray(out.curves)[:runs]
    return {"runs": runs, "episodes": episodes, "sub_lanes": sub_lanes, "compile_s": compile_s,
            "run_s": run_s, "run_cpu_s": run_cpu_s, "env_steps": steps, "env_steps_per_s": steps / run_s,
            "final_objective_mean": float(curves[:, -1, 0].mean()),
            "loadavg": os.getloadavg()[0]}


def _engine(tree: Path, runs: int, episodes: int, sub_lanes: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    p = subprocess.run([sys.executable, __file__, "--worker", f"{runs},{episodes},{sub_lanes}"],
                       env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        return {"runs": runs, "episodes": episodes, "sub_lanes": sub_lanes, "error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _command(tree: Path, sub_lanes: int | None, config: str = "configs/gridworld.toml",
             sets: tuple[str, ...] = ()) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("XLA_FLAGS", None)
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, "-m", "dra_jax.sweep", "--config", str(tree / config),
                "--out", d, "--quiet", "--no-compile-cache"]
        for x in sets:
            args += ["--set", x]
        if sub_lanes is not None:
            args += ["--set", f"dra.sub_lanes={sub_lanes}"]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600, cwd=tree)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            return {"sub_lanes": sub_lanes, "error": p.stderr[-2000:]}
        s = json.loads((Path(d) / "summary.json").read_text())
    t = s["timing"]
    finals = [r["final"]["objective"] for r in s["runs"]] if "runs" in s else None
    return {"sub_lanes": sub_lanes or 1, "wall_s": wall, "compile_s": t.get("compile_s"),
            "run_s": t.get("run_s"), "env_steps": t.get("env_steps"),
            "env_steps_per_s": t.get("env_steps_per_s"), "devices": len(t.get("devices", [])),
            "final_objective_mean": (sum(finals) / len(finals)) if finals else None,
            "loadavg_start": load}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--old", type=Path, default=Path("/work/main"))
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--sub-lanes", default="1,2,4,10")
    ap.add_argument("--engine-runs", default="4,20,200")
    ap.add_argument("--engine-episodes", default="2000,1000,200",
                    help="episodes per run at each --engine-runs size")
    ap.add_argument("--command-sub-lanes", default="1,2", help="new tree's values in the command")
    ap.add_argument("--max-lanes", type=int, default=1024, help="skip runs x sub_lanes above this")
    ap.add_argument("--skip", default="", help="comma list of engine,command,numba")
    ap.add_argument("--mc-episodes", type=int, default=0,
                    help="also mountain car (configs/mountain_car.toml, 15 runs) with this many "
                         "episodes through the command, old vs new (--command-sub-lanes), beside "
                         "benchmarks/numba_mountain_car.py (0: skip)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.worker:
        r, e, w = (int(x) for x in a.worker.split(","))
        print(json.dumps(engine_worker(r, e, w)))
        return 0
    old, new = a.old.resolve(), a.new.resolve()
    Ws = [int(x) for x in a.sub_lanes.split(",")]
    skip = set(a.skip.split(","))
    rec = {"benchmark": "sub-lanes (issue 12): old tree vs new tree, same moment",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "old_tree": str(old), "new_tree": str(new),
           "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "python": platform.python_version(), "loadavg_start": os.getloadavg(),
           "engine": [], "command": [], "numba": None}

    def save():
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(rec, indent=2) + "\n")

    if "engine" not in skip:
        for runs, eps in zip((int(x) for x in a.engine_runs.split(",")),
                             (int(x) for x in a.engine_episodes.split(","))):
            r = dict(_engine(old, runs, eps, 1), tree="old")
            rec["engine"].append(r)
            print("engine old", json.dumps(r), flush=True)
            for w in Ws:
                if runs * w > a.max_lanes:
                    continue
                r = dict(_engine(new, runs, eps, w), tree="new")
                rec["engine"].append(r)
                print("engine new", json.dumps(r), flush=True)
            save()
    if "command" not in skip:
        r = dict(_command(old, None), tree="old")
        rec["command"].append(r)
        print("command old", json.dumps(r), flush=True)
        for w in (int(x) for x in a.command_sub_lanes.split(",")):
            r = dict(_command(new, w), tree="new")
            rec["command"].append(r)
            print("command new", json.dumps(r), flush=True)
        save()
    if "numba" not in skip:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import numba_ref

        t0 = time.perf_counter()
        n = numba_ref.sweep()
        n["wall_s"] = time.perf_counter() - t0
        n["total_s_incl_compile"] = n["seconds"] + n["compile_s"]
        rec["numba"] = {k: v for k, v in n.items() if k not in ("runs",)}
        print("numba", json.dumps({k: n[k] for k in ("compile_s", "seconds", "env_steps_per_s")}))
        base = n["total_s_incl_compile"]
        for c in rec["command"]:
            if "wall_s" in c:
                c["wall_vs_numba_incl_compile"] = c["wall_s"] / base
                c["compile_plus_run_vs_numba_incl_compile"] = (c["compile_s"] + c["run_s"]) / base
    if a.mc_episodes:
        sets = (f"dra.episodes={a.mc_episodes}",)
        mc = rec["mountain_car"] = {"episodes": a.mc_episodes, "command": []}
        r = dict(_command(old, None, "configs/mountain_car.toml", sets), tree="old")
        mc["command"].append(r)
        print("mountain car old", json.dumps(r), flush=True)
        for w in (int(x) for x in a.command_sub_lanes.split(",")):
            r = dict(_command(new, w, "configs/mountain_car.toml", sets), tree="new")
            mc["command"].append(r)
            print("mountain car new", json.dumps(r), flush=True)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import numba_mountain_car

        n = numba_mountain_car.sweep(episodes=a.mc_episodes)
        mc["numba"] = n
        print("mountain car numba", json.dumps({k: n[k] for k in ("compile_s", "seconds",
                                                                  "env_steps_per_s")}), flush=True)
        for c in mc["command"]:
            if "run_s" in c:
                c["env_steps_per_s_vs_numba_one_core"] = c["env_steps_per_s"] / n["env_steps_per_s"]
    rec["loadavg_end"] = os.getloadavg()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
