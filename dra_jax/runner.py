"""Run a config's grid on a lane task (grid-world, mountain car, ...): group, batch, train, collect.

Runs are grouped by their static values (``episodes``, ``n_traj``, ``grad``, ...); each group
is one ``jit(vmap(...))`` program over all its runs (seeds x sigma0 x lam x ...), advanced in
chunks of blocks so progress can be printed without recompiling.
"""
from __future__ import annotations

import time
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax import agent, policy
from dra_jax.results import Results


def agent_static(run: dict, cfg: dict, block: int = 16, need_R: bool | None = None,
                 need_entropy: bool | None = None) -> agent.AgentStatic:
    d, e = run["dra"], cfg["eval"]
    return agent.AgentStatic(
        episodes=d["episodes"], n_traj=d["n_traj"], grad=d["grad"], max_steps=d["max_steps"],
        eval_every=e["every"], n_rollouts=e["n_rollouts"],
        snapshots=tuple(sorted(set(int(s) for s in e["snapshots"]))),
        q_init=d["q_init"], optimizer=d["optimizer"],
        need_R=(d["psi"] == "R") if need_R is None else need_R,
        need_entropy=(d["objective"] != "dra") if need_entropy is None else need_entropy,
        block=block)


def run_lane_task(cfg: dict, runs: list[dict], progress, make_task, task_run_params) -> Results:
    """Train every run of the grid. ``make_task(task_params)`` returns the (cached) lane task;
    ``task_run_params(task_params)`` the traced per-run task parameters (dict of scalars)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        st = agent_static(run, cfg, need_R=False, need_entropy=False)
        tkey = tuple(sorted((k, v) for k, v in run["task_params"].items()
                            if not isinstance(v, list)))
        groups[(st, tkey)].append(i)

    n = len(runs)
    outs: list = [None] * n
    compile_s = run_s = 0.0
    done_eps = np.zeros(n)
    total_eps = float(sum(r["dra"]["episodes"] for r in runs))
    for (st0, _), idx in groups.items():
        # one program for the group; the R accumulators only if some run uses Psi = R
        need_R = any(runs[i]["dra"]["psi"] == "R" for i in idx)
        need_entropy = any(runs[i]["dra"]["objective"] != "dra" for i in idx)
        st = st0._replace(need_R=need_R, need_entropy=need_entropy)
        task = make_task(runs[idx[0]]["task_params"])
        params = agent.stack_params([
            agent.make_run_params(runs[i]["dra"], runs[i]["seed"], task_run_params(runs[i]["task_params"]))
            for i in idx])
        init_b, adv_b, fin_b = agent.make_batched(task, st)
        params, _ = agent.pad_batch(params, 2)
        t0 = time.perf_counter()
        lane = init_b(params)
        step_c = adv_b.lower(params, lane, jnp.int32(1)).compile()
        compile_s += time.perf_counter() - t0
        # chunk so that a progress line comes every few seconds: calibrate on a first chunk
        chunk = 256
        t0 = time.perf_counter()
        while True:
            tc = time.perf_counter()
            lane = step_c(params, lane, jnp.int32(chunk))
            k = np.asarray(lane.k)[:len(idx)]  # (padded lanes dropped)
            dt = time.perf_counter() - tc
            done_eps[idx] = k[:len(idx)]  # the batch may be padded (agent.pad_batch)
            progress.update(done_eps.sum(), extra=f"group of {len(idx)} runs")
            if bool(np.all(np.asarray(lane.phase) == agent.DONE)):
                break
            chunk = int(np.clip(chunk * 2.0 / max(dt, 1e-3), 64, 1 << 20))
        out = jax.block_until_ready(fin_b(lane))
        run_s += time.perf_counter() - t0
        out_np = jax.tree.map(np.asarray, out)
        for j, i in enumerate(idx):
            outs[i] = jax.tree.map(lambda x: x[j], out_np)
    progress.update(total_eps, force=True)
    return collect(cfg, runs, outs, compile_s, run_s)


def collect(cfg: dict, runs: list[dict], outs: list, compile_s: float, run_s: float) -> Results:
    """Stack per-run outputs into curves and final records."""
    curves = np.stack([o.curves for o in outs])  # [n, n_evals, 4] (ragged episodes -> equal here)
    finals, extra = [], []
    for o in outs:
        last = o.curves[-1]
        finals.append({"objective": float(last[0]), "expected_reward": float(last[1]),
                       "cost": float(last[2])})
        extra.append({"truncated_rollouts": int(o.truncations), "env_steps": int(o.env_steps),
                      "final_eval_truncated_fraction": float(last[3])})
    st = agent_static(runs[0], cfg)
    res = Results(
        finals=finals,
        curves={"objective": curves[..., 0], "expected_reward": curves[..., 1],
                "cost": curves[..., 2], "eval_truncated_fraction": curves[..., 3],
                "entropy_term": curves[..., 4],
                "q": np.stack([o.q for o in outs]), "sigma": np.stack([o.sigma for o in outs]),
                "truncated_rollouts": np.array([o.truncations for o in outs]),
                "env_steps": np.array([o.env_steps for o in outs])},
        arrays={"eval_episodes": st.eval_episodes},
        run_extra=extra,
        timing={"compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
                "env_steps": int(sum(int(o.env_steps) for o in outs)),
                "env_steps_per_s": round(sum(int(o.env_steps) for o in outs) / max(run_s, 1e-9)),
                "devices": [str(d) for d in jax.devices()]},
    )
    if st.snapshots:
        res.curves["snap_q"] = np.stack([o.snap_q for o in outs])
        res.curves["snap_sigma"] = np.stack([o.snap_sigma for o in outs])
        res.arrays["snapshot_episodes"] = np.asarray(st.snapshots)
    return res


@jax.jit
def _entropy_maps(key, q, sigma):
    """Normalized choice entropy (``policy.choice_entropy``) of a stack ``[..., S, A]``."""
    flat_q = q.reshape((-1,) + q.shape[-2:])
    flat_s = sigma.reshape((-1,) + sigma.shape[-2:])
    keys = jax.random.split(key, flat_q.shape[0])
    h = jax.lax.map(lambda a: policy.choice_entropy(a[0], a[1], a[2], 100_000), (keys, flat_q, flat_s))
    return h.reshape(q.shape[:-1])


def choice_entropy_maps(q: np.ndarray, sigma: np.ndarray, seed: int = 0) -> np.ndarray:
    """Normalized choice entropy from 100 000 hard-Thompson samples per state, for a stack of
    memory tables ``[..., S, A]`` -> ``[..., S]``."""
    return np.asarray(_entropy_maps(jax.random.key(seed), jnp.asarray(q), jnp.asarray(sigma)))


def episodes_to_converge(curve: np.ndarray, episodes: np.ndarray, tol: float = 0.05,
                         tail: float = 0.1) -> float:
    """First evaluation episode from which the curve stays within ``tol`` (relative) of its final
    plateau, the plateau being the mean of the last ``tail`` fraction of evaluations.

    "Stays": every later evaluation's running mean over a window of 5 is within the band, which
    keeps a single noisy evaluation from counting as convergence.
    """
    curve = np.asarray(curve, float)
    m = max(1, int(round(tail * len(curve))))
    plateau = curve[-m:].mean()
    w = min(5, len(curve))
    smooth = np.convolve(curve, np.ones(w) / w, mode="valid")
    band = tol * max(abs(plateau), 1e-12)
    inside = np.abs(smooth - plateau) <= band
    # last index where it is outside; convergence is the next one
    outside = np.nonzero(~inside)[0]
    first = 0 if len(outside) == 0 else outside[-1] + 1
    if first >= len(smooth):
        return float("nan")
    return float(episodes[first + w - 1])
