"""Batches of runs on the lane engine (:mod:`dra_jax.agent`): compiled, vmapped and sharded.

:func:`make_batched` compiles ``init`` / ``advance`` / ``finish`` of Algorithm 1 for a batch of
runs (one lane each), split over this process's devices with ``shard_map``; :func:`train_batch`
runs a whole batch (public as ``dra_jax.train``); :func:`pad_batch` pads a batch so that a run's
numbers never depend on its batch.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.agent import DONE, AgentStatic, RunOutput, advance, finish, init


@functools.lru_cache(maxsize=64)
def make_batched(task, st: AgentStatic, n_devices: int = 1):
    """Compiled, vmapped ``init``, ``advance`` and ``finish`` for a (task, static) pair.

    With ``n_devices > 1`` the batch axis is split over the first ``n_devices`` of
    ``jax.local_devices()`` (this process's devices) with ``shard_map`` (:func:`jit_over_runs`;
    the batch must be a multiple of ``n_devices``, see :func:`pad_batch`). Lanes never talk to
    each other, so each device runs its own loop and the results equal the single-device ones
    bit for bit.

    Cached, so a second sweep with other traced values (sigma0, lam, seeds, ...) reuses the
    compiled program; only a new shape (batch size) compiles again.
    """
    init_v = jax.vmap(lambda p: init(task, st, p))
    # (the runs axis is named so that a block end with no run waiting skips the sync's work)
    adv_v = jax.vmap(lambda p, c, n: advance(task, st, p, c, n, axis_name="lanes"),
                     in_axes=(0, 0, None), axis_name="lanes")
    fin_v = jax.vmap(finish)
    return (jit_over_runs(init_v, n_devices), jit_over_runs(adv_v, n_devices, batched=(1, 1, 0)),
            jit_over_runs(fin_v, n_devices))


def jit_over_runs(f, n_devices: int = 1, batched: tuple[int, ...] = (1,)):
    """``jit(f)`` for a function already vmapped over runs, its batch axis split over the first
    ``n_devices`` of this process's devices with ``shard_map`` (mesh axis ``runs``) when
    ``n_devices > 1``; ``batched[i]`` says whether argument i has the runs axis (else it is
    replicated). Lanes never talk to each other, so the numbers equal one device's."""
    if n_devices == 1:
        return jax.jit(f)
    from jax.sharding import Mesh, PartitionSpec as P

    mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("runs",))
    specs = tuple(P("runs") if b else P() for b in batched)
    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=P("runs"),
                                 check_vma=False))


def train_batch(task, st: AgentStatic, params: dict, chunk_superblocks: int | None = None,
                on_chunk=None) -> RunOutput:
    """Algorithm 1 for a batch of runs (``params`` stacked, leading axis = runs) in one
    compiled, vmapped program, advanced in chunks of blocks (public as ``dra_jax.train``).

    ``task`` follows :class:`dra_jax.Task`; ``st`` is the :class:`~dra_jax.agent.AgentStatic`
    (everything that shapes the program); ``params`` the traced per-run parameters
    (:func:`~dra_jax.agent.make_run_params`, :func:`~dra_jax.agent.stack_params`). Returns a
    :class:`~dra_jax.agent.RunOutput` of arrays with the runs first: ``q``, ``sigma`` ``[runs,
    S, A]``, ``curves`` ``[runs, evaluations, 6]`` (objective, expected return, cost, truncated
    fraction, entropy term, undiscounted return), counters. ``on_chunk(lane_batch)`` is called
    after every chunk (progress, checkpoints). Chunking does not change any number.

    Example::

        >>> import dra_jax
        >>> task = dra_jax.TabularTask.from_maze(["S..G"])
        >>> static = dra_jax.AgentStatic(episodes=20, n_traj=2, eval_every=10, n_rollouts=4)
        >>> dra = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2,
        ...            sigma_base=5.0, sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A",
        ...            allocation="flexible", learn_q=True, learn_sigma=True)
        >>> params = dra_jax.stack_params([dra_jax.make_run_params(dra, seed) for seed in range(3)])
        >>> out = dra_jax.train(task, static, params)
        >>> out.sigma.shape, out.curves.shape
        ((3, 4, 4), (3, 3, 6))
    """
    init_b, adv_b, fin_b = make_batched(task, st)
    params, n_runs = pad_batch(params, 2)
    c = init_b(params)
    n = jnp.int32(chunk_superblocks if chunk_superblocks else 2**31 - 2)
    while True:
        c = adv_b(params, c, n)
        done = bool(jnp.all(c.phase == DONE))
        if on_chunk is not None:
            on_chunk(c)
        if done:
            break
    return jax.tree.map(lambda x: x[:n_runs], fin_b(c))


def devices_dividing(counts) -> int:
    """The devices to split batches of these run ``counts`` over: all of this process's
    (:func:`jit_over_runs`) when each count is a multiple of them, else one (no padding)."""
    n = len(jax.local_devices())
    return n if n > 1 and all(c % n == 0 for c in counts) else 1


def pad_batch(params: dict, multiple: int = 2, minimum: int = 2) -> tuple[dict, int]:
    """Pad a stacked batch (repeating its last run) to a multiple of ``multiple`` and at least
    ``minimum`` runs; returns the padded batch and the true number of runs.

    XLA compiles a batch of one run to scalar code whose exp/log round differently from the
    vectorized code of larger batches; with every batch >= 2 a run gives the same bits
    whatever else is in its batch (tests/test_agent.py checks this).
    """
    n = int(jax.tree.leaves(params)[0].shape[0])
    size = max(minimum, -(-n // multiple) * multiple)
    if size == n:
        return params, n
    idx = np.minimum(np.arange(size), n - 1)
    return jax.tree.map(lambda x: np.asarray(x)[idx], params), n
