"""Multi-host runs: which process trains which runs, and gathering the finished runs."""
from __future__ import annotations

import jax
import numpy as np


def shares(groups: dict, n_proc: int) -> list[list[int]]:
    """The run indices each process trains (run ``i`` on process ``i % n_proc``), in the
    order it trains them."""
    return [[i for idx in groups.values() for i in idx if i % n_proc == p] for p in range(n_proc)]


def gather_runs(outs: list, shares: list[list[int]]) -> list:
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


def max_over_processes(*values: float) -> tuple[float, ...]:
    """The elementwise maximum of ``values`` over every process (wall times of a multi-host run)."""
    from jax.experimental import multihost_utils

    g = np.asarray(multihost_utils.process_allgather(np.asarray(values, np.float64)))
    return tuple(float(v) for v in g.max(axis=0))
