"""Batches of runs on the lane engine (:mod:`dra_jax.lane.agent`): compiled, vmapped and sharded.

:func:`make_batched` compiles ``init`` / ``advance`` / ``finish`` of Algorithm 1 for a batch of
runs (one lane each), split over this process's devices with ``shard_map``
(:func:`dra_jax.runtime.devices.jit_over_runs`); :func:`train_batch` runs a whole batch (public
as ``dra_jax.train``), padded so that a run's numbers never depend on its batch
(:func:`dra_jax.runtime.devices.pad_batch`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dra_jax.lane.agent import DONE, AgentStatic, RunOutput, advance, finish, init
from dra_jax.runtime.devices import jit_over_runs, pad_batch


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


def train_batch(task, st: AgentStatic, params: dict, chunk_superblocks: int | None = None,
                on_chunk=None) -> RunOutput:
    """Algorithm 1 for a batch of runs (``params`` stacked, leading axis = runs) in one
    compiled, vmapped program, advanced in chunks of blocks (public as ``dra_jax.train``).

    ``task`` follows :class:`dra_jax.Task`; ``st`` is the :class:`~dra_jax.lane.static.AgentStatic`
    (everything that shapes the program); ``params`` the traced per-run parameters
    (:func:`~dra_jax.lane.static.make_run_params`, :func:`~dra_jax.lane.static.stack_params`). Returns a
    :class:`~dra_jax.lane.agent.RunOutput` of arrays with the runs first: ``q``, ``sigma`` ``[runs,
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
