"""Bandit regret runs in chunks: checkpointed, resumable, split into batches of ``max_batch``.

The same run as :func:`dra_jax.bandits.agents.make_run`, in the pieces of
:func:`dra_jax.bandits.agents.make_chunked` (``init -> advance(n points)* -> finish``), with the
whole state (the agent's carry, the bandit's means, the curves so far, the next point's index) in
one pytree. After each ``advance`` the batch's state is saved atomically
(:func:`dra_jax.runtime.checkpoint.save_checkpoint`) when an output folder is given, and
``--resume`` continues from it (:func:`dra_jax.runtime.checkpoint.load_checkpoint` refuses a
checkpoint of another config). A run interrupted and resumed gives the very numbers of an
uninterrupted one (tests/test_bandit_resume.py). ``advance`` takes the first and last point as
*unbatched traced* integers, so one compiled program serves every chunk size; the loop over points
is a ``fori_loop`` whose trip count is the same for every lane.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.bandits.agents import make_chunked
from dra_jax.runtime.checkpoint import CheckpointError, config_fingerprint, load_checkpoint, save_checkpoint
from dra_jax.runtime.devices import pad_batch
from dra_jax.runtime.execution import ExecOptions


def run_groups(cfg: dict, runs: list[dict], groups: dict, make_inputs, progress):
    """Train every group of bandit regret runs; ``groups``: ``{Static: [run indices]}``;
    ``make_inputs(i) -> (seed, Hyper, EnvParams)`` of run ``i``.

    Each group's runs are ordered by their hyperparameters (stable: the runs of one BLASTS
    ``beta`` stay together, in seed order) and split into batches of at most ``max_batch`` runs
    (``--max-batch``, else the config's ``max_batch``, 0: the whole group); BLASTS batches also
    end where ``beta`` changes: under ``vmap`` a step lasts as long as its slowest lane, and
    Blahut-Arimoto's iterations depend on ``beta``, so a batch of one ``beta`` waits only for
    its own slowest lane (with ``ba_loop = 'while'``). Batches are padded to one size (>= 2,
    so a run's numbers do not depend on its batch), compiled once, and advanced in chunks of
    curve points sized to about ``chunk_seconds`` each, checkpointed after each chunk.
    Returns ``(outs, compile_s, run_s, group_timing)`` with ``outs[i]`` run ``i``'s
    :class:`~dra_jax.bandits.agents.RunOut` (numpy).
    """
    opts: ExecOptions = getattr(progress, "options", None) or ExecOptions()
    ckpt_dir = Path(opts.out) / "checkpoint" if opts.out is not None else None
    fingerprint = config_fingerprint(cfg)
    notice = getattr(progress, "notice", progress.message)
    outs: list = [None] * len(runs)
    compile_s = run_s = 0.0
    done = np.zeros(len(runs))  # fraction of each run done
    group_timing = []
    for gi, (st, idx) in enumerate(groups.items()):
        init, advance, finish = make_chunked(st)
        n_points = st.steps // st.record_every
        mb = opts.max_batch or cfg.get("max_batch", 0) or len(idx)
        inputs = [make_inputs(i) for i in idx]
        order = sorted(range(len(idx)), key=lambda j: _hyper_key(inputs[j][1]))  # stable
        idx, inputs = [idx[j] for j in order], [inputs[j] for j in order]
        starts = _batch_starts([_hyper_key(x[1]) for x in inputs], mb, st.agent == "blasts")
        per = max(b - a for a, b in zip(starts, starts[1:]))
        size = max(2, per)
        progress.message(f"{st.agent} on {st.kind} K={st.arms}: {len(idx)} runs x {st.steps} pulls"
                         + (f" in {len(starts) - 1} batches of <= {per}" if per < len(idx) else ""))
        init_c = jax.jit(jax.vmap(init))
        adv_j = jax.jit(jax.vmap(advance, in_axes=(0, 0, 0, None, None)))
        fin_c = jax.jit(finish)
        g_compile = g_run = 0.0
        compiled = None
        for bi, (b0, b1) in enumerate(zip(starts, starts[1:])):
            bidx = idx[b0:b1]
            seeds = np.asarray([inputs[j][0] for j in range(b0, b0 + len(bidx))])
            args = {"k": np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s))))
                                   for s in seeds]),
                    "hp": _stack([inputs[j][1] for j in range(b0, b0 + len(bidx))]),
                    "ep": _stack([inputs[j][2] for j in range(b0, b0 + len(bidx))])}
            args, _ = pad_batch(args, 1, size)
            keys = jax.random.wrap_key_data(jnp.asarray(args["k"]))
            hp, ep = args["hp"], args["ep"]
            with jax.threefry_partitionable(False):
                t0 = time.perf_counter()
                state = init_c(keys, hp, ep)
                if compiled is None:
                    compiled = adv_j.lower(state, hp, ep, jnp.int32(0), jnp.int32(1)).compile()
                    c_s = time.perf_counter() - t0
                    g_compile += c_s
            meta = {"fingerprint": fingerprint, "group": gi, "batch": bi, "kind": "bandits",
                    "runs": [int(i) for i in bidx]}
            path = ckpt_dir / f"bandits_group{gi}_batch{bi}.npz" if ckpt_dir is not None else None
            if opts.resume and path is not None and path.exists():
                state, got = load_checkpoint(path, meta, jax.tree.map(np.asarray, state))
                if got.get("runs") != meta["runs"]:  # e.g. another --max-batch, same shapes
                    raise CheckpointError(f"checkpoint {path} holds runs {got.get('runs')}, this "
                                          f"batch is runs {meta['runs']} (another --max-batch?); "
                                          "resume with the same options, or run without --resume")
                state = jax.tree.map(jnp.asarray, state)
                notice(f"resumed bandit group {gi} batch {bi} from {path} "
                       f"({int(np.asarray(state.point)[0])}/{n_points} curve points done)")
            t0 = time.perf_counter()
            chunk = 1
            pos = int(np.asarray(state.point)[0])
            while pos < n_points:
                stop = min(n_points, pos + chunk)
                tc = time.perf_counter()
                state = jax.block_until_ready(compiled(state, hp, ep, jnp.int32(pos), jnp.int32(stop)))
                dt = time.perf_counter() - tc
                chunk = int(np.clip((stop - pos) * opts.chunk_seconds / max(dt, 1e-3), 1, n_points))
                pos = stop
                if path is not None:
                    save_checkpoint(path, meta, state)
                done[bidx] = pos / n_points
                progress.update(done.sum(), extra=f"{st.agent}/{st.kind}: runs {b0 + 1}-"
                                f"{b0 + len(bidx)} of {len(idx)}, pull {pos * st.record_every}")
            out = jax.tree.map(np.asarray, fin_c(state))
            g_run += time.perf_counter() - t0
            for j, i in enumerate(bidx):
                outs[i] = jax.tree.map(lambda a: a[j], out)
        compile_s += g_compile
        run_s += g_run
        group_timing.append({"agent": st.agent, "kind": st.kind, "runs": len(idx),
                             "batches": len(starts) - 1, "compile_s": g_compile,
                             "run_s": g_run, "agent_steps_per_s": len(idx) * st.steps / max(g_run, 1e-9)})
        progress.update(done.sum(), extra=f"{st.agent}/{st.kind}: compile {g_compile:.1f}s "
                        f"run {g_run:.1f}s", force=True)
    if ckpt_dir is not None and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # finished: the results are written next
    return outs, compile_s, run_s, group_timing


def _batch_starts(keys: list, max_batch: int, split_keys: bool) -> list[int]:
    """Batch boundaries ``[0, ..., len(keys)]`` over runs ordered by ``keys``: pieces of at most
    ``max_batch``, and (``split_keys``) a new batch wherever the key changes."""
    starts, b0 = [0], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or i - b0 == max_batch or (split_keys and keys[i] != keys[b0]):
            starts.append(i)
            b0 = i
    return starts


def _hyper_key(hp) -> tuple:
    return tuple(float(np.asarray(x)) for x in hp)


def _stack(items):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)
