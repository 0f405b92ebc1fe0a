"""Run a config's grid on a lane task (grid-world, mountain car, ...): group, batch, train, collect.

Runs are grouped by their static values (``episodes``, ``n_traj``, ``grad``, ...); each group
is one ``jit(vmap(...))`` program over all its runs (seeds x sigma0 x lam x ...), advanced in
chunks of blocks so progress can be printed without recompiling.
"""
from __future__ import annotations

import shutil
import time
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.core.stats import tail_trend
from dra_jax.lane import agent, batching
from dra_jax.results import GridResults
from dra_jax.runtime.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint
from dra_jax.runtime.devices import pad_batch
from dra_jax.runtime.execution import ExecOptions, available_bytes
from dra_jax.runtime.multihost import gather_runs, max_over_processes, shares


def agent_static(run: dict, cfg: dict, need_R: bool | None = None,
                 need_entropy: bool | None = None) -> agent.AgentStatic:
    d, e = run["dra"], cfg["eval"]
    # a run that never learns sigma skips the gradient rollouts (its n_traj then shapes
    # nothing: one program serves every such run)
    pinned = not d["learn_sigma"]
    return agent.AgentStatic(
        episodes=d["episodes"], n_traj=1 if pinned else d["n_traj"], grad=d["grad"],
        max_steps=d["max_steps"], pinned=pinned, eval_from=e.get("from", 0),
        eval_every=e["every"], n_rollouts=e["n_rollouts"],
        snapshots=tuple(sorted(set(int(s) for s in e["snapshots"]))),
        q_init=d["q_init"], optimizer=d["optimizer"], sub_lanes=d.get("sub_lanes", 1),
        block=d.get("block", 16),
        need_R=(d["psi"] == "R") if need_R is None else need_R,
        need_entropy=(d["objective"] != "dra") if need_entropy is None else need_entropy)


CPU_LANES_PER_DEVICE = 512  # on CPU, more lanes a device lower the throughput once the lanes'
# tables leave the caches (benchmarks/results/cpu_2core.json)


def auto_max_batch(task, st: agent.AgentStatic, params_one: dict, n_devices: int = 1) -> int:
    """Runs per batch: the lanes (times 8 for temporaries) use <= 1/4 of free memory, and on
    CPU at most ``CPU_LANES_PER_DEVICE`` lanes a device (bigger batches run slower there)."""
    shapes = jax.eval_shape(lambda p: agent.init(task, st, p), params_one)
    lane_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    by_memory = available_bytes() // 4 // (8 * max(lane_bytes, 1))
    if jax.devices()[0].platform == "cpu":  # (a run is st.sub_lanes lanes wide)
        by_memory = min(by_memory, max(1, CPU_LANES_PER_DEVICE * n_devices // st.sub_lanes))
    return int(max(2, min(1 << 16, by_memory)))


def run_lane_task(cfg: dict, runs: list[dict], progress, make_task, task_run_params) -> GridResults:
    """Train every run of the grid. ``make_task(task_params)`` returns the (cached) lane task;
    ``task_run_params(task_params)`` the traced per-run task parameters (dict of scalars).

    Runs are grouped by static values; a group is split into batches of at most ``max_batch``
    runs (padded to one size, so one compiled program serves every batch), each batch split
    over the devices and advanced in chunks; after each chunk the batch's whole state is
    checkpointed atomically when an output folder is given, and ``resume`` continues from it.
    """
    opts: ExecOptions = getattr(progress, "options", None) or ExecOptions()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        st = agent_static(run, cfg, need_R=False, need_entropy=False)
        tkey = tuple(sorted((k, v) for k, v in run["task_params"].items()
                            if not isinstance(v, list)))
        groups[(st, tkey)].append(i)

    n_dev = opts.n_devices or len(jax.local_devices())
    # several processes (jax.distributed): each trains its share of every group's runs
    proc, n_proc = jax.process_index(), jax.process_count()
    n = len(runs)
    outs: list = [None] * n
    compile_s = run_s = 0.0
    done_eps = np.zeros(n)
    total_eps = float(sum(r["dra"]["episodes"] for r in runs))
    fingerprint = config_fingerprint(cfg)
    ckpt_dir = Path(opts.out) / "checkpoint" if opts.out is not None else None
    for gi, ((st0, _), idx_all) in enumerate(groups.items()):
        idx = [i for i in idx_all if i % n_proc == proc]
        if not idx:
            continue
        # one program for the group; the R / ELBO accumulators only if some run needs them
        need_R = any(runs[i]["dra"]["psi"] == "R" for i in idx)
        need_entropy = any(runs[i]["dra"]["objective"] != "dra" for i in idx)
        st = st0._replace(need_R=need_R, need_entropy=need_entropy)
        task = make_task(runs[idx[0]]["task_params"])
        all_params = [agent.make_run_params(runs[i]["dra"], runs[i]["seed"],
                                            task_run_params(runs[i]["task_params"])) for i in idx]
        mb = opts.max_batch or cfg.get("max_batch", 0) or auto_max_batch(task, st, all_params[0], n_dev)
        # one batch size for the whole group: a multiple of the devices, >= 2 runs per device
        per = min(len(idx), max(mb, 1))
        size = max(2 * n_dev, -(-per // n_dev) * n_dev)
        init_b, adv_b, fin_b = batching.make_batched(task, st, n_dev)
        compiled = None
        for bi, start in enumerate(range(0, len(idx), per)):
            bidx = idx[start:start + per]
            params, _ = pad_batch(agent.stack_params(all_params[start:start + per]), size, size)
            meta = {"fingerprint": fingerprint, "group": gi, "batch": bi, "kind": "lanes",
                    "runs": [int(i) for i in bidx]}
            t0 = time.perf_counter()
            lane = init_b(params)
            if compiled is None:
                compiled = adv_b.lower(params, lane, jnp.int32(1)).compile()
                compile_s += time.perf_counter() - t0
            tag = f"_p{proc}" if n_proc > 1 else ""
            path = ckpt_dir / f"group{gi}_batch{bi}{tag}.npz" if ckpt_dir is not None else None
            if opts.resume and path is not None and path.exists():
                lane, _ = load_checkpoint(path, meta, lane)
                getattr(progress, "notice", progress.message)(f"resumed group {gi} batch {bi} from {path} "
                                 f"({int(np.asarray(lane.k)[:len(bidx)].sum()):,} run-episodes done)")
            chunk = 8
            t0 = time.perf_counter()
            while True:
                done = bool(np.all(np.asarray(lane.phase) == agent.DONE))
                if done:
                    break
                tc = time.perf_counter()
                lane = compiled(params, lane, jnp.int32(chunk))
                k = np.asarray(lane.k)[:len(bidx)]  # (padded lanes dropped)
                dt = time.perf_counter() - tc
                done_eps[bidx] = k
                if path is not None:
                    save_checkpoint(path, meta, lane)
                progress.update(done_eps.sum(), extra=f"group {gi + 1}/{len(groups)}, runs "
                                f"{start + 1}-{start + len(bidx)} of {len(idx)}")
                chunk = int(np.clip(chunk * opts.chunk_seconds / max(dt, 1e-3), 1, 1 << 20))
            out = jax.block_until_ready(fin_b(lane))
            run_s += time.perf_counter() - t0
            out_np = jax.tree.map(np.asarray, out)
            for j, i in enumerate(bidx):
                outs[i] = jax.tree.map(lambda x: x[j], out_np)
    if n_proc > 1:
        outs = gather_runs(outs, shares(groups, n_proc))
        compile_s, run_s = max_over_processes(compile_s, run_s)
    progress.update(total_eps, force=True)
    if n_proc > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("dra_jax checkpoints done")
    if ckpt_dir is not None and ckpt_dir.exists() and proc == 0:
        shutil.rmtree(ckpt_dir)  # finished: the results are written next
    res = collect(cfg, runs, outs, compile_s, run_s)
    res.timing["devices_used"] = n_dev * n_proc
    res.timing["processes"] = n_proc
    return res


def collect(cfg: dict, runs: list[dict], outs: list, compile_s: float, run_s: float) -> GridResults:
    """Stack per-run outputs into curves and final records."""
    curves = np.stack([o.curves for o in outs])  # [n, n_evals, 6] (ragged episodes -> equal here)
    st = agent_static(runs[0], cfg)
    finals, extra = [], []
    for o in outs:
        last = o.curves[-1]
        finals.append({"objective": float(last[0]), "expected_reward": float(last[1]),
                       "cost": float(last[2]),
                       "expected_reward_undiscounted": float(last[5]),
                       "objective_undiscounted": float(last[5] - last[2] + last[4])})
        bad = int(o.nonfinite_at)
        trend = tail_trend(o.curves[:, 0], st.eval_episodes)
        extra.append({"truncated_rollouts": int(o.truncations), "env_steps": int(o.env_steps),
                      "final_eval_truncated_fraction": float(last[3]),
                      "converged": trend["converged"],
                      "tail_change_of_objective": trend["change"],
                      "tail_noise_of_objective": trend["noise"],
                      "nonfinite_after_episodes": None if bad < 0 else bad})
    nonfinite = [{"index": i, "after_episodes": e["nonfinite_after_episodes"]}
                 for i, e in enumerate(extra) if e["nonfinite_after_episodes"] is not None]
    res = GridResults(
        finals=finals,
        curves={"objective": curves[..., 0], "expected_reward": curves[..., 1],
                "cost": curves[..., 2], "eval_truncated_fraction": curves[..., 3],
                "entropy_term": curves[..., 4],
                "expected_reward_undiscounted": curves[..., 5],
                "objective_undiscounted": curves[..., 5] - curves[..., 2] + curves[..., 4],
                "q": np.stack([o.q for o in outs]), "sigma": np.stack([o.sigma for o in outs]),
                "truncated_rollouts": np.array([o.truncations for o in outs]),
                "env_steps": np.array([o.env_steps for o in outs])},
        arrays={"eval_episodes": st.eval_episodes},
        run_extra=extra,
        summary={"nonfinite_runs": nonfinite,
                 "unconverged_runs": [i for i, e in enumerate(extra) if e["converged"] is False],
                 "converged_definition": tail_trend.__doc__.split("\n\n")[0].replace("\n    ", " ")},
        timing={"compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
                "env_steps": int(sum(int(o.env_steps) for o in outs)),
                "env_steps_per_s": round(sum(int(o.env_steps) for o in outs) / max(run_s, 1e-9)),
                "devices": [str(d) for d in jax.local_devices()]},
    )
    if st.snapshots:
        res.curves["snap_q"] = np.stack([o.snap_q for o in outs])
        res.curves["snap_sigma"] = np.stack([o.snap_sigma for o in outs])
        res.arrays["snapshot_episodes"] = np.asarray(st.snapshots)
    return res


