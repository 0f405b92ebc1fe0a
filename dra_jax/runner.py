"""Run a config's grid on a lane task (grid-world, mountain car, ...): group, batch, train, collect.

Runs are grouped by their static values (``episodes``, ``n_traj``, ``grad``, ...); each group
is one ``jit(vmap(...))`` program over all its runs (seeds x sigma0 x lam x ...), advanced in
chunks of blocks so progress can be printed without recompiling.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax import agent, batching
from dra_jax.results import Results, atomic_savez


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


@dataclass
class ExecOptions:
    """How the sweep command executes a grid (not part of the config: they change no number).

    ``out``: output folder (checkpoints go to ``out/checkpoint/``); ``resume``: continue from
    the checkpoints there; ``max_batch``: runs per compiled batch (0: from available memory);
    ``n_devices``: devices the batch axis is split over (0: all of ``jax.local_devices()``);
    ``chunk_seconds``: target wall time between progress lines and checkpoints.
    """

    out: Path | None = None
    resume: bool = False
    max_batch: int = 0
    n_devices: int = 0
    chunk_seconds: float = 2.0


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this config (corrupted, or from another config)."""


def config_fingerprint(cfg: dict) -> str:
    """A hash of everything in the config that changes numbers (not ``out``, not ``figures``)."""
    from dra_jax import __version__

    keep = {k: v for k, v in cfg.items() if k not in ("out", "figures", "description", "name")}
    text = json.dumps(keep, sort_keys=True, default=str) + __version__
    return hashlib.sha256(text.encode()).hexdigest()


def _available_bytes() -> int:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


CPU_LANES_PER_DEVICE = 512  # benchmarks/results/cpu_2core.json: throughput peaks at 128-512 lanes
# a device on CPU and falls by half at 2048 (the lanes' tables leave the caches)


def auto_max_batch(task, st: agent.AgentStatic, params_one: dict, n_devices: int = 1) -> int:
    """Runs per batch: the lanes (times 8 for temporaries) use <= 1/4 of free memory, and on
    CPU at most ``CPU_LANES_PER_DEVICE`` lanes a device (bigger batches run slower there)."""
    shapes = jax.eval_shape(lambda p: agent.init(task, st, p), params_one)
    lane_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    by_memory = _available_bytes() // 4 // (8 * max(lane_bytes, 1))
    if jax.devices()[0].platform == "cpu":  # (a run is st.sub_lanes lanes wide)
        by_memory = min(by_memory, max(1, CPU_LANES_PER_DEVICE * n_devices // st.sub_lanes))
    return int(max(2, min(1 << 16, by_memory)))


def _save_checkpoint(path: Path, meta: dict, tree) -> None:
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    arrays = {f"leaf_{i}": x for i, x in enumerate(leaves)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    atomic_savez(path, arrays)


def _load_checkpoint(path: Path, meta: dict, like):
    """Load a checkpoint written by :func:`_save_checkpoint` for the same ``meta``, shaped like
    ``like``; raise :class:`CheckpointError` with the reason otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            got = json.loads(str(z["meta"]))
            leaves = [z[f"leaf_{i}"] for i in range(len(z.files) - 1)]
    except Exception as e:  # noqa: BLE001  (any unreadable file is refused)
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                              "delete it or run without --resume") from None
    for key in ("fingerprint", "group", "batch", "kind"):
        if got.get(key) != meta.get(key):
            raise CheckpointError(f"checkpoint {path} belongs to another {'config' if key == 'fingerprint' else key} "
                                  f"({key} {got.get(key)!r} != {meta.get(key)!r}); delete it or run "
                                  "without --resume")
    ref = jax.tree.leaves(like)
    if len(ref) != len(leaves) or any(np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype
                                      for a, b in zip(ref, leaves)):
        raise CheckpointError(f"checkpoint {path} does not match this run's state (shapes differ); "
                              "delete it or run without --resume")
    return jax.tree.unflatten(jax.tree.structure(like), leaves), got


def run_lane_task(cfg: dict, runs: list[dict], progress, make_task, task_run_params) -> Results:
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
            params, _ = batching.pad_batch(agent.stack_params(all_params[start:start + per]), size, size)
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
                lane, _ = _load_checkpoint(path, meta, lane)
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
                    _save_checkpoint(path, meta, lane)
                progress.update(done_eps.sum(), extra=f"group {gi + 1}/{len(groups)}, runs "
                                f"{start + 1}-{start + len(bidx)} of {len(idx)}")
                chunk = int(np.clip(chunk * opts.chunk_seconds / max(dt, 1e-3), 1, 1 << 20))
            out = jax.block_until_ready(fin_b(lane))
            run_s += time.perf_counter() - t0
            out_np = jax.tree.map(np.asarray, out)
            for j, i in enumerate(bidx):
                outs[i] = jax.tree.map(lambda x: x[j], out_np)
    if n_proc > 1:
        outs = _gather_runs(outs, _shares(groups, n_proc))
        compile_s, run_s = _max_over_processes(compile_s, run_s)
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


def _shares(groups: dict, n_proc: int) -> list[list[int]]:
    """The run indices each process trains (run ``i`` on process ``i % n_proc``), in the
    order it trains them."""
    return [[i for idx in groups.values() for i in idx if i % n_proc == p] for p in range(n_proc)]


def _gather_runs(outs: list, shares: list[list[int]]) -> list:
    """Every process's finished runs to every process (``process_allgather``); each process
    passes its runs stacked and padded to the largest share (every process has at least one
    run: the sweep command refuses fewer runs than processes)."""
    from jax.experimental import multihost_utils

    mine = shares[jax.process_index()]
    width = max(len(s) for s in shares)
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[outs[i] for i in mine])
    padded = jax.tree.map(lambda x: np.concatenate([x, np.zeros((width - len(x),) + x.shape[1:],
                                                                 x.dtype)]), stacked)
    allg = jax.tree.map(np.asarray, multihost_utils.process_allgather(padded))  # [P, width, ...]
    full = list(outs)
    for p, share in enumerate(shares):
        for j, i in enumerate(share):
            full[i] = jax.tree.map(lambda x: x[p, j], allg)
    return full


def _max_over_processes(*values: float) -> tuple[float, ...]:
    from jax.experimental import multihost_utils

    g = np.asarray(multihost_utils.process_allgather(np.asarray(values, np.float64)))
    return tuple(float(v) for v in g.max(axis=0))


def collect(cfg: dict, runs: list[dict], outs: list, compile_s: float, run_s: float) -> Results:
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
    res = Results(
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


def choice_entropy_maps(q: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Normalized entropy of the hard-Thompson choice for a stack of memory tables
    ``[..., S, A]`` -> ``[..., S]``, exact by quadrature (:mod:`dra_jax.choice`)."""
    from dra_jax import choice

    return np.asarray(choice.choice_entropy(jnp.asarray(q), jnp.asarray(sigma)))


_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
         10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04, 60: 2.00}


def _t975(df: int) -> float:
    """97.5% quantile of Student's t (table; the next smaller tabulated df, 1.96 past 60)."""
    return 1.96 if df > 60 else _T975[max(k for k in _T975 if k <= df)]


def tail_trend(curve: np.ndarray, episodes: np.ndarray, tail: float = 0.1) -> dict:
    """Has a learning curve converged? A least-squares line through its last ``tail`` fraction
    of evaluations (at least 3): ``change`` = the line's rise over those episodes, ``noise`` =
    its 95% confidence half-width (Student t, from the residuals); ``converged`` =
    ``|change| <= noise``, i.e. no trend the evaluation noise cannot explain. Deterministic curves (no residual noise)
    count as converged only if flat to float32 rounding."""
    curve = np.asarray(curve, float)
    n = max(3, int(round(tail * len(curve))))
    if len(curve) < 3 or not np.all(np.isfinite(curve[-n:])):
        return {"converged": None, "change": None, "noise": None, "tail_evaluations": min(n, len(curve))}
    y, x = curve[-n:], np.asarray(episodes[-n:], float)
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    resid = y - y.mean() - slope * xc
    se = float(np.sqrt((resid ** 2).sum() / (n - 2) / (xc * xc).sum()))
    span = float(x[-1] - x[0])
    change, noise = slope * span, _t975(n - 2) * se * span
    tol = max(noise, 1e-5 * max(1.0, float(np.abs(y).max())))
    return {"converged": bool(abs(change) <= tol), "change": change, "noise": noise,
            "tail_evaluations": n}


def episodes_to_converge(curve: np.ndarray, episodes: np.ndarray, tol: float = 0.05,
                         tail: float = 0.1, mode: str = "band") -> float:
    """Episodes a learning curve takes to converge; the plateau is the mean of the last ``tail``
    fraction of evaluations, and curves are smoothed by a running mean over 5 evaluations.

    * ``mode="band"``: the first evaluation from which the smoothed curve *stays* within ``tol``
      (relative) of the plateau;
    * ``mode="rise"``: the first evaluation at which the smoothed curve has covered
      ``1 - tol`` of the way from its first value to the plateau (robust to a slow drift of the
      plateau itself, which the band criterion counts as not yet converged).
    """
    curve = np.asarray(curve, float)
    m = max(1, int(round(tail * len(curve))))
    plateau = curve[-m:].mean()
    w = min(5, len(curve))
    smooth = np.convolve(curve, np.ones(w) / w, mode="valid")
    if mode == "rise":
        start = smooth[0]
        if start == plateau:
            return float(episodes[w - 1])
        frac = (smooth - start) / (plateau - start)
        hit = np.nonzero(frac >= 1.0 - tol)[0]
        return float(episodes[hit[0] + w - 1]) if len(hit) else float("nan")
    band = tol * max(abs(plateau), 1e-12)
    inside = np.abs(smooth - plateau) <= band
    outside = np.nonzero(~inside)[0]
    first = 0 if len(outside) == 0 else outside[-1] + 1
    if first >= len(smooth):
        return float("nan")
    return float(episodes[first + w - 1])
