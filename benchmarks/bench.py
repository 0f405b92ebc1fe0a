"""The benchmark suite of the DRA lane engine: throughput, cost against work, memory, speed-ups.

    python benchmarks/bench.py [--tasks gridworld,mountain_car] [--batch-sizes 1,4,16,64,256,1024,4096]
                               [--episodes 5000] [--out benchmarks/results/NAME] [--quick]
                               [--devices N] [--local-shard-map] [--target-s 2] [--repeats 3]

Writes ``NAME.json`` (the record) and ``NAME.png`` (the figure). ``--quick`` runs tiny sizes
(well under a minute on a quiet machine) to check the script works; write its output to /tmp.

Sections (each measured point of the JAX engine runs in its own subprocess, so its peak host
memory is its own; compile time is always measured apart, every timing ends in
``block_until_ready``, and rates are medians over ``--repeats`` timed chunks):

* **throughput** against batch size (runs in one ``jit(vmap)``): env steps / s and
  runs x episodes / s, nanoseconds per lane-step, lane utilization (active env steps / lane
  iterations), compile time, peak host RSS (``VmHWM``) and, on GPU, the device's peak bytes.
  *Steady state*: the rates are taken on consecutive chunks of superblocks of a run already
  under way (``--episodes`` does not matter here: the run's horizon is set so no lane finishes
  during the measurement; ``lanes_done`` in the record checks it). Grid-world: ``q_init =
  "optimal"`` (no early random-walk episodes), plus a warm-up chunk excluded. Mountain car: no
  tabular q*, so ``q_init = "zero"`` and a warm-up of ``--warmup-s`` excluded (its episodes are
  then still mostly 200-step truncations: ``env_steps_per_episode`` says which regime was timed).
  The sweep's runs cycle sigma0 over 1, 3, 4, 5 (as Fig. 1b) with seeds 0, 1, ...
* **multi-device** (``--devices N`` > 1, or XLA_FLAGS forcing N host devices / several GPUs):
  the same throughput over all devices, through the engine's sharded entry point if
  ``dra_jax.lane.agent`` has one (``make_sharded`` & co, same contract as ``make_batched``); if not,
  skipped with a note, unless ``--local-shard-map`` asks for this script's own ``shard_map`` of
  the engine's ``advance`` (what the layout gives; marked as such in the record).
* **cost against work**: (a) time against episodes (grid-world, ``q_init = "optimal"``, runs to
  completion at batch ``--work-batch``, episodes ``--episodes`` / 8, / 4, / 2, x 1): a linear fit;
  (b) per-step cost against task size: the Fig. 1 maze scaled by 1, 2, 4, 8 (6x9 ... 48x72: every
  cell becomes an f x f block, so the obstacle density is the same and a path is guaranteed),
  steady state at batch ``--work-batch``; the log-log slope of ns per lane-step against the
  memory-table size is reported, with the numba loop's steps / s on the same mazes.
* **speed-ups**: over the plain-NumPy loop (``dra_jax.lane.reference.run_reference``,
  ``noise_source = "numpy"``, float64, a few short runs from scratch, extrapolated by env steps)
  and over the numba yardstick (``benchmarks/numba_ref.py``): one core, and "two numba
  processes" = 2x its rate as the 2-core comparison. Steady state against steady state
  (numba with ``q_init = "optimal"`` too), and end to end on the Fig. 1b sweep (20 runs x
  ``--episodes``, from scratch, final objectives of both reported).
* the record: date, JAX version, devices, backend, CPU model, core count, XLA_FLAGS, load
  average at start and end (a loaded machine inflates every time).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

SIGMA0S = (1.0, 3.0, 4.0, 5.0)
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


# ====================================================================== helpers (both sides)


def proc_status_kb(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmHWM = peak resident set, VmRSS = current)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def forced_host_devices(flags: str | None) -> int:
    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", flags or "")
    return int(m.group(1)) if m else 1


def scaled_layout(f: int):
    """The Fig. 1 maze with every cell an f x f block: same obstacle density, a path guaranteed
    (the scaled copy of a connected maze), start at the top-left of the start block, goal in the
    top-right corner."""
    from dra_jax.envs.gridworld import Layout

    L = Layout()
    if f == 1:
        return L
    obst = tuple((r * f + i, c * f + j) for (r, c) in L.obstacles for i in range(f) for j in range(f))
    return Layout(L.rows * f, L.cols * f, (L.start[0] * f, L.start[1] * f), (0, L.cols * f - 1), obst)


# ====================================================================== the worker (one point)


def _build(task_name: str, scale: int = 1):
    """(task, dra, task_run_params, max_steps, q_init for steady state)."""
    import numpy as np

    if task_name == "gridworld":
        from dra_jax.envs.gridworld import GridTask

        return GridTask(scaled_layout(scale)), dict(DRA), {}, 500, "optimal"
    if task_name == "mountain_car":
        from dra_jax.envs.mountain_car import MountainCarTask

        return (MountainCarTask(), dict(DRA, lam=0.1), {"random_start": np.bool_(False)}, 200, "zero")
    raise ValueError(f"unknown task {task_name!r}")


def _params(n: int, dra: dict, tp: dict):
    from dra_jax.lane import agent, batching  # noqa: F401

    return agent.stack_params([agent.make_run_params(dict(dra, sigma0=SIGMA0S[i % 4]), i // 4, tp)
                               for i in range(n)])


def _sharded_fns(task, st, local: bool):
    """``(init_b, adv_b, fin_b, source)`` over all devices, or ``(None, note)``.

    Prefers the engine's own sharded entry point (same contract as ``batching.make_batched``);
    ``local`` = this script's ``shard_map`` of the engine's ``advance`` over a 1-D mesh."""
    import jax

    from dra_jax.lane import agent, batching

    if not local:
        # the engine's own: make_batched(task, st, n_devices) shard_maps the batch axis
        return batching.make_batched(task, st, len(jax.devices())), "dra_jax.lane.batching.make_batched(n_devices)"
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("runs",))
    init_b = jax.jit(jax.shard_map(jax.vmap(lambda p: agent.init(task, st, p)), mesh=mesh,
                                   in_specs=(P("runs"),), out_specs=P("runs"), check_vma=False))
    adv_b = jax.jit(jax.shard_map(
        jax.vmap(lambda p, c, n: agent.advance(task, st, p, c, n), in_axes=(0, 0, None)),
        mesh=mesh, in_specs=(P("runs"), P("runs"), P()), out_specs=P("runs"), check_vma=False))
    fin_b = jax.jit(jax.vmap(agent.finish))
    return (init_b, adv_b, fin_b), "benchmarks/bench.py local shard_map of agent.advance"


def _device_mem():
    import jax

    out = []
    for d in jax.local_devices():
        try:
            ms = d.memory_stats()
        except Exception:
            ms = None
        if ms:
            out.append({"device": str(d), "peak_bytes_in_use": ms.get("peak_bytes_in_use"),
                        "bytes_limit": ms.get("bytes_limit")})
    return out or None


def _sum(x, n):
    return int(np.asarray(x)[:n].astype(np.int64).sum())


def worker_throughput(cfg: dict) -> dict:
    """Steady-state throughput of one (task, batch[, scale, sharded]) point."""
    import jax
    import jax.numpy as jnp

    from dra_jax.lane import agent, batching

    hwm_import = proc_status_kb("VmHWM")
    task, dra, tp, max_steps, q_init = _build(cfg["task"], cfg.get("scale", 1))
    B = int(cfg["batch"])
    st = agent.AgentStatic(episodes=int(cfg["horizon"]), n_traj=10, max_steps=max_steps,
                           eval_every=100, n_rollouts=100, q_init=q_init)
    n_dev = len(jax.devices()) if cfg.get("sharded") else 1
    if cfg.get("sharded"):
        fns, source = _sharded_fns(task, st, cfg.get("local_shard_map", False))
        if fns is None:
            return {"skipped": source}
        init_b, adv_b, fin_b = fns
    else:
        init_b, adv_b, fin_b = batching.make_batched(task, st)
        source = "dra_jax.lane.batching.make_batched"
    params, n = batching.pad_batch(_params(B, dra, tp), max(2, n_dev))
    padded = int(jax.tree.leaves(params)[0].shape[0])
    t0 = time.perf_counter()
    lane0 = jax.block_until_ready(init_b(params))
    adv = adv_b.lower(params, lane0, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    iters_per_sb = st.block * st.noise_blocks

    def chunk(lane, n_sb):
        s0, k0 = _sum(lane.env_steps, n), _sum(lane.k, n)
        t = time.perf_counter()
        lane = jax.block_until_ready(adv(params, lane, jnp.int32(n_sb)))
        dt = time.perf_counter() - t
        return lane, dt, _sum(lane.env_steps, n) - s0, _sum(lane.k, n) - k0

    # warm-up (excluded): one superblock, then more until warmup_s has passed
    lane, dt1, _, _ = chunk(lane0, 1)
    lane, dt1, _, _ = chunk(lane, 1)  # a second single superblock: its time calibrates
    warm_sb = max(0, int(cfg["warmup_s"] / max(dt1, 1e-6)))
    if warm_sb:
        lane, _, _, _ = chunk(lane, warm_sb)
    n_sb = int(np.clip(cfg["target_s"] / max(dt1, 1e-6), 1, 10**7))
    reps = []
    for _ in range(int(cfg["repeats"])):
        lane, dt, ds, dk = chunk(lane, n_sb)
        lane_iters = n_sb * iters_per_sb * padded
        reps.append({"seconds": dt, "env_steps": ds, "episodes": dk,
                     "env_steps_per_s": ds / dt, "run_episodes_per_s": dk / dt,
                     "ns_per_lane_step": dt / lane_iters * 1e9,
                     "lane_utilization": ds / (n_sb * iters_per_sb * n)})
    med = lambda key: statistics.median(r[key] for r in reps)  # noqa: E731
    done = int((np.asarray(lane.phase)[:n] == agent.DONE).sum())
    hwm = proc_status_kb("VmHWM")
    return {
        "task": cfg["task"], "batch": B, "padded_batch": padded, "devices": n_dev, "source": source,
        "scale": cfg.get("scale", 1), "n_states": int(task.n_states), "n_actions": int(task.n_actions),
        "memories": int(task.n_states * task.n_actions), "q_init": q_init,
        "compile_s": compile_s, "superblocks_per_chunk": n_sb, "warmup_superblocks": warm_sb + 2,
        "env_steps_per_s": med("env_steps_per_s"), "run_episodes_per_s": med("run_episodes_per_s"),
        "ns_per_lane_step": med("ns_per_lane_step"), "lane_utilization": med("lane_utilization"),
        "env_steps_per_episode": sum(r["env_steps"] for r in reps) / max(1, sum(r["episodes"] for r in reps)),
        "mean_episode_reached": float(np.asarray(lane.k)[:n].mean()), "horizon": int(cfg["horizon"]),
        "lanes_done": done, "repeats": reps,
        "host_peak_rss_mb": hwm / 1024 if hwm else None,
        "host_peak_rss_after_import_mb": hwm_import / 1024 if hwm_import else None,
        "device_memory": _device_mem(),
    }


def worker_episodes(cfg: dict) -> dict:
    """Time to train ``batch`` runs to completion for each episode count (grid-world)."""
    import jax
    import jax.numpy as jnp

    from dra_jax.lane import agent, batching

    task, dra, tp, max_steps, _ = _build("gridworld")
    params, n = batching.pad_batch(_params(int(cfg["batch"]), dra, tp), 2)
    pts = []
    for E in cfg["episodes"]:
        st = agent.AgentStatic(episodes=int(E), n_traj=10, max_steps=max_steps, eval_every=100,
                               n_rollouts=100, q_init=cfg["q_init"])
        init_b, adv_b, fin_b = batching.make_batched(task, st)
        t0 = time.perf_counter()
        lane0 = jax.block_until_ready(init_b(params))
        adv = adv_b.lower(params, lane0, jnp.int32(1)).compile()
        compile_s = time.perf_counter() - t0
        times, out = [], None
        for _ in range(int(cfg["repeats"])):
            t0 = time.perf_counter()
            out = jax.block_until_ready(fin_b(adv(params, lane0, jnp.int32(2**30))))
            times.append(time.perf_counter() - t0)
        pts.append({"episodes": int(E), "compile_s": compile_s, "run_s": statistics.median(times),
                    "run_s_all": times, "env_steps": _sum(out.env_steps, n),
                    "episodes_done": _sum(out.episodes, n)})
    E = np.array([p["episodes"] for p in pts], float)
    T = np.array([p["run_s"] for p in pts])
    fit = {}
    if len(E) >= 2:
        b, a = np.polyfit(E, T, 1)
        pred = a + b * E
        ss = float(((T - T.mean()) ** 2).sum())
        fit = {"seconds_per_episode": float(b), "intercept_s": float(a),
               "r2": float(1 - ((T - pred) ** 2).sum() / ss) if ss > 0 else 1.0,
               "time_ratio_last_first": float(T[-1] / T[0]), "episode_ratio_last_first": float(E[-1] / E[0])}
    return {"task": "gridworld", "batch": int(cfg["batch"]), "q_init": cfg["q_init"], "points": pts,
            "linear_fit": fit}


def worker_fig1b(cfg: dict) -> dict:
    """The Fig. 1b sweep end to end (q from zero): compile, run, final objectives."""
    import jax
    import jax.numpy as jnp

    from dra_jax.lane import agent, batching

    task, dra, tp, max_steps, _ = _build("gridworld")
    R = int(cfg["runs"])
    st = agent.AgentStatic(episodes=int(cfg["episodes"]), n_traj=10, max_steps=max_steps,
                           eval_every=100, n_rollouts=100, q_init="zero")
    params, n = batching.pad_batch(_params(R, dra, tp), 2)
    init_b, adv_b, fin_b = batching.make_batched(task, st)
    t0 = time.perf_counter()
    lane0 = jax.block_until_ready(init_b(params))
    adv = adv_b.lower(params, lane0, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fin_b(adv(params, lane0, jnp.int32(2**30))))
    run_s = time.perf_counter() - t0
    c = np.asarray(out.curves)[:n]
    steps = _sum(out.env_steps, n)
    return {"runs": R, "episodes": int(cfg["episodes"]), "sigma0": [SIGMA0S[i % 4] for i in range(R)],
            "seed": [i // 4 for i in range(R)], "compile_s": compile_s, "run_s": run_s,
            "env_steps": steps, "env_steps_per_s": steps / run_s,
            "final_objective": c[:, -1, 0].tolist(),
            "final_objective_last5": c[:, -5:, 0].mean(1).tolist()}


WORKERS = {"throughput": worker_throughput, "episodes": worker_episodes, "fig1b": worker_fig1b}


def worker_main(spec: str) -> int:
    cfg = json.loads(spec)
    res = WORKERS[cfg["kind"]](cfg)
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# ====================================================================== the driver


def spawn(cfg: dict, n_devices: int = 1, timeout: float = 1800) -> dict:
    """Run one worker point in a fresh process (its own peak memory); ``n_devices`` > 1 forces
    that many host devices on CPU (harmless elsewhere); 1 removes the flag."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
    if n_devices > 1:
        flags = (flags + f" --xla_force_host_platform_device_count={n_devices}").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)],
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["process_wall_s"] = wall
            return res
    lines = p.stderr.strip().splitlines() or ["?"]
    exc = [ln for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", ln)]
    return {"error": f"worker exited {p.returncode}: " + (exc[-1] if exc else lines[-1])[:500]}


def horizon_for(batch: int) -> int:
    """Episodes per run for a throughput point: enough that no lane finishes while timed (a
    small batch runs many episodes per lane per second), small enough that the learning curves
    (one row per 100 episodes) do not weigh in the memory measurement."""
    return int(min(200_000, max(2_000, 800_000 // batch)))


def run_jobs(jobs, parallel: int = 1) -> dict:
    """Run worker jobs ``(key, cfg, n_devices)``; returns ``{key: result}``, printing each
    throughput point as it comes."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job):
        key, cfg, nd = job
        r = spawn(cfg, n_devices=nd)
        if cfg["kind"] == "throughput" and key[0] in ("throughput", "multi"):
            name = cfg["task"] if key[0] == "throughput" else f"gridworld x{nd} devices"
            log(_fmt_point(name, cfg["batch"], r))
        return key, r

    if parallel <= 1:
        return dict(one(j) for j in jobs)
    with ThreadPoolExecutor(parallel) as ex:
        return dict(ex.map(one, jobs))


def log(msg: str) -> None:
    print(msg, flush=True)


def run_numpy_reference(runs: int, episodes: int, n_rollouts: int) -> dict:
    from dra_jax.envs.gridworld import GridTask
    from dra_jax.lane.reference import run_reference

    task = GridTask()
    t = task.tables
    tables = {"next": t.next_state[0], "reward": t.reward[0], "terminal": t.terminal[0], "start": t.start}
    steps, secs = 0, 0.0
    for i in range(runs):
        t0 = time.perf_counter()
        *_, n = run_reference(tables, dict(DRA, sigma0=SIGMA0S[i % 4]), episodes, 10, 500, 100,
                              n_rollouts, seed=i, learnable=task.learnable, noise_source="numpy",
                              dtype=np.float64)
        secs += time.perf_counter() - t0
        steps += n
    return {"runs": runs, "episodes": episodes, "n_rollouts": n_rollouts, "q_init": "zero",
            "env_steps": steps, "seconds": secs, "env_steps_per_s": steps / secs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tasks", default="gridworld,mountain_car")
    ap.add_argument("--batch-sizes", default="1,4,16,64,256,1024,4096")
    ap.add_argument("--episodes", type=int, default=5000,
                    help="episodes of the Fig. 1b sweep and of the longest time-vs-episodes point")
    ap.add_argument("--fig1b-runs", type=int, default=20)
    ap.add_argument("--work-batch", type=int, default=16, help="batch of the cost-vs-work sections")
    ap.add_argument("--scales", default="1,2,4,8", help="maze scale factors (6x9 times f)")
    ap.add_argument("--target-s", type=float, default=2.0, help="seconds per timed chunk")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="excluded warm-up per point")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", type=int, default=None,
                    help="devices for the multi-device section (default: what XLA_FLAGS forces on "
                         "CPU, or the GPU count); 1 skips it")
    ap.add_argument("--local-shard-map", action="store_true",
                    help="without an engine entry point, measure this script's shard_map")
    ap.add_argument("--numpy-runs", type=int, default=2)
    ap.add_argument("--numpy-episodes", type=int, default=20)
    ap.add_argument("--skip", default="", help="sections to skip: throughput,multi,episodes,size,fig1b,numpy,numba")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script works")
    ap.add_argument("--out", default=None, help="output path without extension (.json and .png)")
    a = ap.parse_args(argv)
    if a.worker:
        return worker_main(a.worker)

    import jax

    if a.quick:
        a.batch_sizes, a.episodes, a.fig1b_runs, a.scales = "16", 200, 4, "1,2"
        a.target_s, a.warmup_s, a.repeats, a.numpy_runs, a.numpy_episodes = 0.3, 0.1, 2, 1, 2
        a.work_batch = 16
    backend = jax.default_backend()
    out = Path(a.out) if a.out else HERE / "results" / f"bench_{backend}"
    out = out.with_suffix("") if out.suffix in (".json", ".png") else out
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    batches = [int(b) for b in a.batch_sizes.split(",")]
    scales = [int(s) for s in a.scales.split(",")]
    skip = set(s.strip() for s in a.skip.split(",") if s.strip())
    if a.devices is None:
        a.devices = (forced_host_devices(os.environ.get("XLA_FLAGS")) if backend == "cpu"
                     else len(jax.devices()))
    notes: list[str] = []
    t_start = time.perf_counter()
    rec: dict = {
        "benchmark": "dra_jax lane engine suite (benchmarks/bench.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:], "quick": a.quick,
        "jax_version": jax.__version__, "backend": backend, "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "loadavg_start": loadavg(),
        "protocol": {
            "throughput": "steady state: consecutive timed chunks of superblocks (128 lane "
                          "iterations each) of runs already under way, warm-up excluded; "
                          "grid-world q_init=optimal, mountain car q_init=zero; median of repeats",
            "sweep_params": "Fig. 1b / Table B.1 (alpha 0.1, beta 10, gamma 1, n_traj 10, psi A, "
                            "eval every 100 episodes x 100 rollouts); sigma0 cycles 1,3,4,5; "
                            "mountain car lam 0.1, max_steps 200; grid-world lam 0.2, max_steps 500",
            "batch_1": "a batch of one run is padded to two lanes (batching.pad_batch): its rates "
                       "count the real run only",
        },
        "args": {k: v for k, v in vars(a).items() if k != "worker"},
        "notes": notes,
    }

    # ---------------------------------------------------------------- the JAX points
    # Every JAX point is one worker process; the jobs are listed first, then run (one at a time,
    # or two at a time with --quick, whose timings only check that the script works).
    avail = []
    for t in tasks:
        if t == "mountain_car":
            try:
                from dra_jax.envs.mountain_car import MountainCarTask  # noqa: F401
            except Exception as e:
                msg = f"mountain_car skipped: dra_jax.envs.mountain_car.MountainCarTask unavailable ({e})"
                log(msg)
                notes.append(msg)
                continue
        avail.append(t)
    common = {"target_s": a.target_s, "warmup_s": a.warmup_s, "repeats": a.repeats}
    jobs: list[tuple[tuple, dict, int]] = []
    if "throughput" not in skip:
        for t in avail:
            for B in batches:
                jobs.append((("throughput", t, B), dict(common, kind="throughput", task=t, batch=B,
                                                        horizon=horizon_for(B)), 1))
    if "multi" not in skip and a.devices > 1:
        # grid-world only: the speed target is stated for it
        for B in [b for b in batches if b >= a.devices]:
            jobs.append((("multi", B), dict(common, kind="throughput", task="gridworld", batch=B,
                                            horizon=horizon_for(B), sharded=True,
                                            local_shard_map=a.local_shard_map),
                         a.devices if backend == "cpu" else 1))
    elif a.devices <= 1:
        msg = ("multi-device skipped: one device (set XLA_FLAGS=--xla_force_host_platform_device_count=2 "
               "or pass --devices 2)")
        log(msg)
        notes.append(msg)
    if "episodes" not in skip:
        eps = sorted({max(1, a.episodes // d) for d in ((2, 1) if a.quick else (8, 4, 2, 1))})
        jobs.append((("episodes",), {"kind": "episodes", "batch": a.work_batch, "episodes": eps,
                                     "q_init": "optimal", "repeats": 1}, 1))
    reuse_scale1 = ("throughput" not in skip and "gridworld" in avail and a.work_batch in batches)
    if "size" not in skip:
        for f in scales:
            if not (f == 1 and reuse_scale1):
                jobs.append((("size", f), dict(common, kind="throughput", task="gridworld", scale=f,
                                               batch=a.work_batch, horizon=horizon_for(a.work_batch)), 1))
    if "fig1b" not in skip:
        jobs.append((("fig1b",), {"kind": "fig1b", "runs": a.fig1b_runs, "episodes": a.episodes}, 1))
    results = run_jobs(jobs, parallel=2 if a.quick else 1)
    if a.quick:
        notes.append("--quick: worker processes ran two at a time: timings only check the script works")

    rec["throughput"] = {t: [results[("throughput", t, B)] for B in batches]
                         for t in avail if ("throughput", t, batches[0]) in results}
    rec["multi_device"] = {"devices": a.devices, "points": []}
    for B in batches:
        r = results.get(("multi", B))
        if r is None:
            continue
        if "skipped" in r:
            log(f"multi-device: skipped: {r['skipped']}")
            notes.append("multi-device skipped: " + r["skipped"])
            break
        rec["multi_device"]["points"].append(r)
    if ("episodes",) in results:
        r = results[("episodes",)]
        rec["time_vs_episodes"] = r
        if "error" in r:
            log(f"time vs episodes: {r['error']}")
        else:
            f = r["linear_fit"]
            log(f"time vs episodes (batch {a.work_batch}): "
                + ", ".join(f"{p['episodes']}: {p['run_s']:.2f} s ({p['run_s'] / p['env_steps'] * 1e9:.0f} ns/step)"
                            for p in r["points"])
                + (f"; fit {f['seconds_per_episode'] * 1e3:.3f} ms/episode + {f['intercept_s']:.2f} s, "
                   f"R2 {f['r2']:.4f}" if f else ""))
    if "size" not in skip:
        from numba_ref import compile_seconds, gridworld_tables
        from numba_ref import run as numba_run

        pts = []
        for f in scales:
            if f == 1 and reuse_scale1:
                r = dict(results[("throughput", "gridworld", a.work_batch)])
            else:
                r = results[("size", f)]
            if "numba" not in skip:
                compile_seconds()
                nr = numba_run(episodes=20 if a.quick else 200, q_init="optimal",
                               tables=gridworld_tables(scaled_layout(f)))
                r["numba_env_steps_per_s"] = nr["env_steps"] / nr["seconds"]
            pts.append(r)
            log(_fmt_point(f"gridworld x{f}", a.work_batch, r)
                + (f"; numba {r['numba_env_steps_per_s'] / 1e6:.2f} M/s" if "numba_env_steps_per_s" in r else ""))
        ok = [p for p in pts if "ns_per_lane_step" in p]
        slope = None
        if len(ok) >= 2:
            slope = float(np.polyfit(np.log([p["memories"] for p in ok]),
                                     np.log([p["ns_per_lane_step"] for p in ok]), 1)[0])
        rec["cost_vs_size"] = {"batch": a.work_batch, "points": pts,
                               "loglog_slope_ns_per_step_vs_memories": slope}
        if slope is not None:
            log(f"per-step cost grows as memories^{slope:.2f}")

    # ---------------------------------------------------------------- yardsticks
    if "numba" not in skip:
        from numba_ref import compile_seconds, sweep

        c = compile_seconds()
        st_runs = [(SIGMA0S[i % 4], i // 4) for i in range(4)]
        steady = sweep(st_runs, episodes=100 if a.quick else a.episodes, q_init="optimal")
        fig = sweep([(SIGMA0S[i % 4], i // 4) for i in range(a.fig1b_runs)], episodes=a.episodes,
                    q_init="zero")
        steady_full = sweep(st_runs, episodes=100 if a.quick else a.episodes, q_init="optimal",
                            full_noise=True)
        rec["numba"] = {"compile_s": c, "steady_state": steady, "fig1b": fig,
                        "steady_state_engine_noise": steady_full,
                        "note": "steady_state draws only the numbers it uses (A normals + 1 uniform a "
                                "step, A more on acting steps); steady_state_engine_noise draws the "
                                "engine's 2A + 2 a step (the yardstick is the former)"}
        log(f"numba (one core): compile {c:.1f} s; steady state {steady['env_steps_per_s'] / 1e6:.2f} M steps/s; "
            f"Fig. 1b {len(fig['runs'])} runs x {a.episodes}: {fig['seconds']:.2f} s, "
            f"{fig['env_steps_per_s'] / 1e6:.2f} M steps/s, final objective "
            f"{np.mean(fig['final_objective_last5']):.2f}; with the engine's noise draws "
            f"{steady_full['env_steps_per_s'] / 1e6:.2f} M steps/s")
    if "numpy" not in skip:
        rec["numpy_reference"] = run_numpy_reference(a.numpy_runs, a.numpy_episodes, 10 if a.quick else 100)
        log(f"NumPy reference: {rec['numpy_reference']['env_steps_per_s'] / 1e3:.1f} k steps/s")
    if ("fig1b",) in results:
        r = results[("fig1b",)]
        rec["jax_fig1b"] = r
        if "error" not in r:
            log(f"JAX Fig. 1b {r['runs']} runs x {r['episodes']}: compile {r['compile_s']:.1f} s, run "
                f"{r['run_s']:.2f} s, {r['env_steps_per_s'] / 1e6:.2f} M steps/s, final objective "
                f"{np.mean(r['final_objective_last5']):.2f}")
        else:
            log(f"JAX Fig. 1b: {r['error']}")

    # runs x episodes / s in the timed window depends on how far the runs had got (early
    # episodes are long); the per-step cost does not (every phase is computed every step), so
    # also convert env steps / s to Fig. 1b-protocol episodes (grid-world, full runs from scratch)
    ref = rec.get("jax_fig1b") if "env_steps" in (rec.get("jax_fig1b") or {}) else None
    if ref is None and rec.get("numba"):
        ref = {"env_steps": rec["numba"]["fig1b"]["env_steps"], "runs": len(rec["numba"]["fig1b"]["runs"]),
               "episodes": rec["numba"]["fig1b"]["episodes"]}
    if ref:
        spe = ref["env_steps"] / (ref["runs"] * ref["episodes"])
        rec["fig1b_env_steps_per_run_episode"] = spe
        for p in rec.get("throughput", {}).get("gridworld", []) + rec.get("multi_device", {}).get("points", []):
            if "env_steps_per_s" in p:
                p["run_episodes_per_s_fig1b_equiv"] = p["env_steps_per_s"] / spe
    rec["speedups"] = speedups(rec)
    for k, v in rec["speedups"].items():
        if isinstance(v, float):
            log(f"  {k}: {v:.2f}")
    rec["loadavg_end"] = loadavg()
    rec["suite_wall_s"] = time.perf_counter() - t_start
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(out.with_suffix(".json"))
    try:
        figure(rec, out.with_suffix(".png"))
    except Exception as e:  # the record is written either way
        log(f"figure failed: {type(e).__name__}: {e}")
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')} in {rec['suite_wall_s']:.0f} s")
    return 0


def _fmt_point(name: str, B: int, r: dict) -> str:
    if "error" in r or "skipped" in r:
        return f"{name:>24} batch {B:>5}: {r.get('error') or r.get('skipped')}"
    return (f"{name:>24} batch {B:>5}: {r['env_steps_per_s'] / 1e6:7.2f} M steps/s, "
            f"{r['run_episodes_per_s']:9.0f} run-episodes/s, {r['ns_per_lane_step']:7.1f} ns/lane-step, "
            f"util {r['lane_utilization']:.2f}, compile {r['compile_s']:.1f} s, "
            f"peak RSS {r['host_peak_rss_mb']:.0f} MB"
            + (f", {r['lanes_done']} lanes done!" if r["lanes_done"] else ""))


def _best(points):
    ok = [p for p in points or [] if "env_steps_per_s" in p]
    return max(ok, key=lambda p: p["env_steps_per_s"]) if ok else None


def speedups(rec: dict) -> dict:
    s: dict = {}
    best1 = _best(rec.get("throughput", {}).get("gridworld"))
    bestm = _best(rec.get("multi_device", {}).get("points"))
    nb = rec.get("numba")
    npy = rec.get("numpy_reference")
    if best1:
        s["gridworld_best_batch_single_device"] = best1["batch"]
        s["gridworld_best_env_steps_per_s_single_device"] = float(best1["env_steps_per_s"])
    if bestm:
        s["gridworld_best_batch_multi_device"] = bestm["batch"]
        s["gridworld_best_env_steps_per_s_multi_device"] = float(bestm["env_steps_per_s"])
    best_any = max([b for b in (best1, bestm) if b], key=lambda p: p["env_steps_per_s"], default=None)
    if nb and best_any:
        n1 = nb["steady_state"]["env_steps_per_s"]
        s["numba_one_core_steady_env_steps_per_s"] = float(n1)
        s["vs_numba_one_core_steady"] = best_any["env_steps_per_s"] / n1
        s["vs_two_numba_processes_steady"] = best_any["env_steps_per_s"] / (2 * n1)
        s["issue6_target_1p5x_numba_one_core_met"] = bool(best_any["env_steps_per_s"] >= 1.5 * n1)
    if npy and best_any:
        s["vs_numpy_steady"] = best_any["env_steps_per_s"] / npy["env_steps_per_s"]
    jf = rec.get("jax_fig1b")
    if jf and "run_s" in jf:
        if nb:
            s["fig1b_numba_one_core_s"] = float(nb["fig1b"]["seconds"])
            s["fig1b_two_numba_processes_s"] = float(nb["fig1b"]["seconds"] / 2)
            s["fig1b_jax_run_s"] = float(jf["run_s"])
            s["fig1b_vs_numba_one_core"] = nb["fig1b"]["seconds"] / jf["run_s"]
            s["fig1b_final_objective_jax"] = float(np.mean(jf["final_objective_last5"]))
            s["fig1b_final_objective_numba"] = float(np.mean(nb["fig1b"]["final_objective_last5"]))
        if npy:
            np_s = jf["env_steps"] / npy["env_steps_per_s"]
            s["fig1b_numpy_s_extrapolated"] = float(np_s)
            s["fig1b_vs_numpy"] = np_s / jf["run_s"]
    return s


# ====================================================================== the figure


def figure(rec: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(2, 4, figsize=(20, 9.5))
    ax = axs.ravel()
    colors = {"gridworld": "C0", "mountain_car": "C1"}
    nb = rec.get("numba")
    npy = rec.get("numpy_reference")

    def series(points, key):
        ok = [p for p in points if p.get(key) is not None and p.get(key) > 0]
        return [p["batch"] for p in ok], [p[key] for p in ok]

    multi = rec.get("multi_device", {}).get("points", [])
    for t, pts in rec.get("throughput", {}).items():
        c = colors.get(t, None)
        for i, (key, scale) in enumerate([("env_steps_per_s", 1e-6), ("run_episodes_per_s", 1.0),
                                          ("ns_per_lane_step", 1.0), ("compile_s", 1.0)]):
            x, y = series(pts, key)
            ax[i].plot(x, np.array(y) * scale, "o-", color=c, label=f"{t}, 1 device")
        x, y = series(pts, "run_episodes_per_s_fig1b_equiv")
        if x:
            ax[1].plot(x, y, "o--", color=c, mfc="none",
                       label=f"{t}, 1 device, Fig. 1b-protocol equivalent (env steps/s / "
                             f"{rec.get('fig1b_env_steps_per_run_episode', 0):.0f})")
        x, y = series(pts, "lane_utilization")
        ax[2].plot(x, np.array(y) * 100, "s:", color=c, alpha=0.6, label=f"{t} utilization (%, right)")
        x, y = series(pts, "host_peak_rss_mb")
        ax[7].plot(x, y, "o-", color=c, label=f"{t} host peak RSS")
        dm = [(p["batch"], max(d["peak_bytes_in_use"] or 0 for d in p["device_memory"]) / 2**20)
              for p in pts if p.get("device_memory")]
        if dm:
            ax[7].plot(*zip(*dm), "s--", color=c, label=f"{t} device peak")
    if multi:
        nd = rec["multi_device"]["devices"]
        for i, (key, scale) in enumerate([("env_steps_per_s", 1e-6), ("run_episodes_per_s", 1.0),
                                          ("ns_per_lane_step", 1.0), ("compile_s", 1.0)]):
            x, y = series(multi, key)
            ax[i].plot(x, np.array(y) * scale, "^-", color="C2", label=f"gridworld, {nd} devices")
        x, y = series(multi, "run_episodes_per_s_fig1b_equiv")
        if x:
            ax[1].plot(x, y, "^--", color="C2", mfc="none", label=f"gridworld, {nd} devices, Fig. 1b equivalent")
    if nb:
        n1 = nb["steady_state"]["env_steps_per_s"] * 1e-6
        ax[0].axhline(n1, color="k", ls="--", lw=1, label=f"numba, 1 core ({n1:.2f} M/s)")
        ax[0].axhline(2 * n1, color="k", ls=":", lw=1, label=f"2 numba processes ({2 * n1:.2f} M/s)")
        ax[0].axhline(1.5 * n1, color="r", ls="-.", lw=0.8, label="issue-6 target: 1.5x numba 1 core")
    if npy:
        ax[0].axhline(npy["env_steps_per_s"] * 1e-6, color="grey", ls="-", lw=1,
                      label=f"plain NumPy ({npy['env_steps_per_s'] / 1e3:.0f} k/s)")
    titles = ["env steps / s (millions, steady state)", "runs x episodes / s (solid: in the timed window)",
              "ns per lane-step (lane iteration x batch)", "compile time (s)"]
    for i in range(4):
        ax[i].set_xscale("log", base=2)
        ax[i].set_xlabel("batch size (runs in one jit(vmap))")
        ax[i].set_title(titles[i])
        ax[i].grid(alpha=0.3, which="both")
    for i in (0, 1, 2):
        if ax[i].lines:
            ax[i].set_yscale("log")
    for i, kw in ((0, dict(fontsize=7.5, loc="best", framealpha=0.8)), (1, dict(fontsize=7, framealpha=0.8)),
                  (3, dict(fontsize=8))):
        if ax[i].get_legend_handles_labels()[0]:
            ax[i].legend(**kw)
    h, lab = ax[2].get_legend_handles_labels()
    ax[2].legend(h, lab, fontsize=7.5)
    # utilization shares the panel: put it on a twin axis
    ax2r = ax[2].twinx()
    for line in list(ax[2].lines):
        if line.get_linestyle() == ":":
            x, y = line.get_data()
            line.remove()
            ax2r.plot(x, y, "s:", color=line.get_color(), alpha=0.6)
    ax2r.set_ylim(0, 105)
    ax2r.set_ylabel("lane utilization (%, dotted)")

    # time vs episodes
    te = rec.get("time_vs_episodes") or {}
    if te.get("points"):
        E = np.array([p["episodes"] for p in te["points"]])
        T = np.array([p["run_s"] for p in te["points"]])
        ax[4].plot(E, T, "o", color="C0", label=f"grid-world, batch {te['batch']}, q_init {te['q_init']}")
        for p in te["points"]:
            ax[4].annotate(f"{p['run_s'] / max(p['env_steps'], 1) * 1e9:.0f} ns/step", (p["episodes"], p["run_s"]),
                           textcoords="offset points", xytext=(-10, 8), fontsize=8)
        f = te.get("linear_fit") or {}
        if f:
            xx = np.linspace(0, E.max(), 50)
            ax[4].plot(xx, f["intercept_s"] + f["seconds_per_episode"] * xx, "k--", lw=1,
                       label=f"fit: {f['seconds_per_episode'] * 1e3:.2f} ms/episode, R$^2$ {f['r2']:.3f}")
        ax[4].legend(fontsize=8)
    ax[4].set_xlabel("episodes per run")
    ax[4].set_ylabel("run time (s, compile apart)")
    ax[4].set_title("time against episodes (labels: ns per env step, whole batch)")
    ax[4].grid(alpha=0.3)

    # cost vs task size
    cs = rec.get("cost_vs_size") or {}
    ok = [p for p in cs.get("points", []) if "ns_per_lane_step" in p]
    if ok:
        M = [p["memories"] for p in ok]
        ax[5].plot(M, [p["ns_per_lane_step"] for p in ok], "o-", color="C0",
                   label=f"JAX ns / lane-step (batch {cs['batch']})"
                         + (f", slope {cs['loglog_slope_ns_per_step_vs_memories']:.2f}"
                            if cs.get("loglog_slope_ns_per_step_vs_memories") is not None else ""))
        nbp = [(p["memories"], 1e9 / p["numba_env_steps_per_s"]) for p in ok if p.get("numba_env_steps_per_s")]
        if nbp:
            ax[5].plot(*zip(*nbp), "s--", color="k", label="numba ns / env step (1 core)")
        for p in ok:
            ax[5].annotate(f"{p['n_states'] // (9 * p['scale']) if p['scale'] else ''}x{9 * p['scale']}",
                           (p["memories"], p["ns_per_lane_step"]), textcoords="offset points",
                           xytext=(4, 4), fontsize=8)
        ax[5].set_xscale("log")
        ax[5].set_yscale("log")
        ax[5].legend(fontsize=8)
    ax[5].set_xlabel("memories (states x actions)")
    ax[5].set_title("per-step cost against task size (grid-world)")
    ax[5].grid(alpha=0.3, which="both")

    # speed-ups
    s = rec.get("speedups", {})
    bars = [(k, s[k]) for k in ("vs_numpy_steady", "vs_numba_one_core_steady", "vs_two_numba_processes_steady",
                                "fig1b_vs_numpy", "fig1b_vs_numba_one_core") if k in s]
    if bars:
        lbl = {"vs_numpy_steady": "vs NumPy\n(steady)", "vs_numba_one_core_steady": "vs numba\n1 core\n(steady)",
               "vs_two_numba_processes_steady": "vs 2 numba\nprocesses\n(steady)",
               "fig1b_vs_numpy": "Fig. 1b\nsweep\nvs NumPy",
               "fig1b_vs_numba_one_core": "Fig. 1b\nsweep vs\nnumba 1 core"}
        xs = np.arange(len(bars))
        ax[6].bar(xs, [v for _, v in bars], color=["C7", "C3", "C3", "C7", "C3"][:len(bars)])
        for x, (_, v) in zip(xs, bars):
            ax[6].text(x, v, f"{v:.2f}x", ha="center", va="bottom", fontsize=9)
        ax[6].set_xticks(xs, [lbl[k] for k, _ in bars], fontsize=8)
        ax[6].set_yscale("log")
        ax[6].axhline(1, color="k", lw=0.8)
    ax[6].set_title("speed-up of the JAX engine (grid-world, best batch)")
    ax[6].grid(alpha=0.3, axis="y")
    ax[7].set_xscale("log", base=2)
    ax[7].set_xlabel("batch size")
    ax[7].set_ylabel("MB")
    ax[7].set_title("peak memory (one process per point)")
    ax[7].grid(alpha=0.3)
    if ax[7].lines:
        ax[7].legend(fontsize=8)
    la = rec.get("loadavg_start")
    fig.suptitle(f"dra_jax benchmark — {rec['device_kind']} ({rec['backend']}), {rec['cpu_model']}, "
                 f"{rec['cpu_count']} cores, JAX {rec['jax_version']}, {rec['date'][:10]}"
                 + (f", load avg at start {la[0]:.1f}" if la else "") + (" [QUICK]" if rec["quick"] else ""),
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
