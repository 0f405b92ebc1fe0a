"""Batched training of planning runs: compiled groups, batches of at most ``max_batch`` runs,
checkpoints after every evaluation block and ``--resume``.

The runs of a static group (same M, n_traj, optimizer, ...) are ONE ``jit(vmap(...))`` program
(:func:`dra_jax.planning.trainer.advance`); groups that share an evaluation program advance in
lockstep over evaluation blocks, and one vmapped call evaluates all their runs after each block
(:func:`train_groups`). :func:`train_batches` splits the groups into batches of at most
``max_batch`` runs (the last batch of a group is padded to the batch size, so every batch of
a group reuses one compiled program) and checkpoints each batch's whole state (memories,
optimizer states, the curve so far, the block counter) atomically after every block with
the lane runner's checkpoint functions (:mod:`dra_jax.lane.runner`: the same file format, config
fingerprint and refusal of a checkpoint of another config). Keys come from the episode index
and the evaluation tag (:mod:`dra_jax.planning.trainer`), so a resumed run gives the very
same numbers as an uninterrupted one.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.planning.trainer import FINAL_TAG, PlanStatic, advance, evaluate, init, summarize
from dra_jax.runtime.checkpoint import load_checkpoint, save_checkpoint
from dra_jax.runtime.devices import devices_dividing, jit_over_runs


@functools.lru_cache(maxsize=64)
def _programs(st: PlanStatic, n_dev: int):
    """``init``, ``advance`` (``st.every`` episodes) and ``evaluate`` of a static group,
    vmapped over runs, the runs axis split over ``n_dev`` devices
    (:func:`dra_jax.runtime.devices.jit_over_runs`: runs never talk to each other)."""
    init_b = jit_over_runs(jax.vmap(lambda pp: init(st, pp)), n_dev)
    adv_b = jit_over_runs(jax.vmap(lambda pp, t: advance(st, pp, t, st.every)), n_dev, (1, 1))
    ev_b = jit_over_runs(jax.vmap(lambda pp, qq, ss, tag, n: evaluate(st, pp, qq, ss, tag, n),
                                  in_axes=(0, 0, 0, None, None)), n_dev, (1, 1, 1, 0, 0))
    return init_b, adv_b, ev_b


def eval_static(st: PlanStatic) -> PlanStatic:
    """The part of a group's static values the evaluation program depends on."""
    return PlanStatic(moves=st.moves, pin_last_move=st.pin_last_move, episodes=st.episodes,
                      every=st.every, n_rollouts=st.n_rollouts, final_rollouts=st.final_rollouts)


_COMPILED: dict = {}  # (program, static, batch shapes) -> compiled executable, for batches


def _compiled(name: str, fn, st, n_dev, *args):
    key = (name, st, n_dev, tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(args)))
    if key not in _COMPILED:
        _COMPILED[key] = fn.lower(*args).compile()
    return _COMPILED[key]


def train_groups(groups: list[tuple[PlanStatic, list[dict]]], progress=None, done0: float = 0.0,
                 checkpoint: tuple[Path, dict, bool] | None = None):
    """Train static groups of runs that share an evaluation program (same M, episodes, ...),
    in lockstep over evaluation blocks: per block, ONE compiled ``jit(vmap(...))`` call per
    group advances all its runs ``every`` episodes (a ``lax.fori_loop`` over episodes inside),
    then ONE vmapped call evaluates every run of every group. The final evaluation is the same
    compiled program with ``final.n_rollouts`` trials. Same numbers as
    :func:`dra_jax.planning.trainer.train`.

    ``checkpoint = (path, meta, resume)``: after every block the state is saved to ``path``
    (:func:`dra_jax.runtime.checkpoint.save_checkpoint`); with ``resume`` an existing file is loaded
    first (:func:`dra_jax.runtime.checkpoint.load_checkpoint`, which raises
    :class:`dra_jax.runtime.checkpoint.CheckpointError` for a checkpoint of another config or shape).

    Returns per group ``(summary, curve [R, n_evals, 4], final [R, 4])``, compile and run time.
    """
    st_eval = eval_static(groups[0][0])
    assert all(eval_static(st) == st_eval for st, _ in groups)
    stacked = [{k: jnp.asarray(np.stack([pp[k] for pp in params])) for k in params[0]}
               for _, params in groups]
    p_all = {k: jnp.concatenate([sp[k] for sp in stacked]) for k in stacked[0]}
    n_runs = int(p_all["budget"].shape[0])
    n_dev = devices_dividing([len(params) for _, params in groups])
    t0 = time.perf_counter()
    ts = [_programs(st, n_dev)[0](sp) for (st, _), sp in zip(groups, stacked)]
    adv = [_compiled("advance", _programs(st, n_dev)[1], st, n_dev, sp, t)
           for (st, _), sp, t in zip(groups, stacked, ts)]

    def cat(ts):
        return (jnp.concatenate([t.q for t in ts]), jnp.concatenate([t.sigma for t in ts]))

    q0, s0 = cat(ts)
    n0 = jnp.int32(st_eval.n_rollouts)
    ev_c = _compiled("eval", _programs(st_eval, n_dev)[2], st_eval, n_dev, p_all, q0, s0,
                     jnp.int32(0), n0)
    jax.block_until_ready(ts)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_blocks = st_eval.episodes // st_eval.every
    curves = np.full((n_blocks + 1, n_runs, 4), np.nan, np.float32)
    first = 0
    path, meta, resume = checkpoint if checkpoint is not None else (None, None, False)
    if resume and path is not None and Path(path).exists():
        (ts, curves, blk), _ = load_checkpoint(path, meta, (ts, curves, np.int32(0)))
        first = int(blk)
        if progress is not None:
            getattr(progress, "notice", progress.message)(
                f"resumed planning batch {meta.get('batch')} from {path} "
                f"({first * st_eval.every} of {st_eval.episodes} episodes done)")
    else:
        curves[0] = np.asarray(ev_c(p_all, q0, s0, jnp.int32(0), n0))
    for i in range(first, n_blocks):
        ts = [f(sp, t) for f, sp, t in zip(adv, stacked, ts)]
        curves[i + 1] = np.asarray(ev_c(p_all, *cat(ts), jnp.int32((i + 1) * st_eval.every), n0))
        if path is not None:
            save_checkpoint(path, meta, (ts, curves, np.int32(i + 1)))
        if progress is not None:
            progress.update(done0 + (i + 1) * st_eval.every * n_runs,
                            extra=f"M={st_eval.moves}: mean F {float(curves[i + 1][:, 2].mean()):.1f}")
    final = np.asarray(ev_c(p_all, *cat(ts), jnp.int32(FINAL_TAG),
                            jnp.int32(st_eval.final_rollouts)))
    curve = np.swapaxes(curves, 0, 1)  # [R_all, n_evals, 4]
    out, start = [], 0
    for (st, params), t in zip(groups, ts):
        n = len(params)
        summ = jax.tree.map(np.asarray, summarize(st, jnp.asarray(t.q), jnp.asarray(t.sigma)))
        out.append((summ, curve[start:start + n], final[start:start + n]))
        start += n
    run_s = time.perf_counter() - t0
    return out, compile_s, run_s


def make_batches(groups: list[tuple[PlanStatic, list[int]]], max_batch: int):
    """Split static groups (``(static, run indices)``, sharing one evaluation program) into
    batches: ``max_batch = 0`` gives ONE batch of every group (all in lockstep); otherwise each
    group is cut into pieces of ``size = min(max_batch, its runs)`` runs, the last piece padded
    by repeating its last run (``pad`` counts the copies, whose results are dropped), one
    batch per piece. Returns ``[[(static, indices, pad), ...], ...]``."""
    if max_batch <= 0:
        return [[(st, list(idx), 0) for st, idx in groups]]
    out = []
    for st, idx in groups:
        size = min(max_batch, len(idx))
        for a in range(0, len(idx), size):
            piece = list(idx[a:a + size])
            out.append([(st, piece + [piece[-1]] * (size - len(piece)), size - len(piece))])
    return out


def train_batches(groups: list[tuple[PlanStatic, list[int]]], params: list[dict], max_batch: int,
                  progress=None, ckpt_dir: Path | None = None, fingerprint: str = "",
                  resume: bool = False, set_index: int = 0, done0: float = 0.0):
    """Train the runs of ``groups`` (static value, run indices into ``params``) batch by batch
    (:func:`make_batches`, :func:`train_groups`), checkpointing each batch to
    ``ckpt_dir/planning_set<set_index>_batch<b>.npz`` when ``ckpt_dir`` is given; progress
    counts on from ``done0`` run-episodes.

    Returns ``{run index: (summary of that run, curve [n_evals, 4], final [4])}``, compile and
    run time, and the run-episodes done."""
    results, compile_s, run_s, done = {}, 0.0, 0.0, 0.0
    for bi, batch in enumerate(make_batches(groups, max_batch)):
        ck = None
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            meta = {"fingerprint": fingerprint, "group": set_index, "batch": bi,
                    "kind": "planning", "runs": [int(i) for _, idx, _ in batch for i in idx]}
            ck = (ckpt_dir / f"planning_set{set_index}_batch{bi}.npz", meta, resume)
        out, cs, rs = train_groups([(st, [params[i] for i in idx]) for st, idx, _ in batch],
                                   progress, done0 + done, ck)
        compile_s, run_s = compile_s + cs, run_s + rs
        for (st, idx, pad), (summ, curve, final) in zip(batch, out):
            keep = len(idx) - pad
            for j, i in enumerate(idx[:keep]):
                results[i] = (jax.tree.map(lambda x: x[j], summ), curve[j], final[j])
            done += st.episodes * len(idx)
    return results, compile_s, run_s, done
