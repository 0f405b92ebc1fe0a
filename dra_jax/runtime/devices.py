"""Programs over a batch of runs on this process's devices: one ``jit`` split over devices with
``shard_map`` (:func:`jit_over_runs`), how many devices a batch splits over
(:func:`devices_dividing`), and padding that keeps a run's bits independent of its batch
(:func:`pad_batch`). Every engine (lane, planning, bandits, episodic, the fitter) runs through
these."""
from __future__ import annotations

import jax
import numpy as np


def jit_over_runs(f, n_devices: int = 1, batched: tuple[int, ...] = (1,)):
    """``jit(f)`` for a function already vmapped over runs, its batch axis split over the first
    ``n_devices`` of this process's devices with ``shard_map`` (mesh axis ``runs``) when
    ``n_devices > 1``; ``batched[i]`` says whether argument i has the runs axis (else it is
    replicated). Lanes never talk to each other, so the numbers equal one device's."""
    if n_devices == 1:
        return jax.jit(f)
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("runs",))
    specs = tuple(P("runs") if b else P() for b in batched)
    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=P("runs"),
                                 check_vma=False))


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
