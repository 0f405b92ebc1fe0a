"""Equal precision of planning at its optimum: the shared sigma of each grid point maximizing F
with q = q* (Fig. 3d; the search itself: :mod:`dra_jax.runtime.equal_search`)."""
from __future__ import annotations

import numpy as np

from dra_jax.runtime.equal_search import SEARCH_SEED0, equal_points, pin, search


def resolve_planning(cfg: dict, runs: list[dict], static_of, budget_of, progress=None):
    """Planning's equal precision (Fig. 3d): the shared sigma of each grid point maximizing F
    with q = q*, every candidate table (``sigma`` on the learned memories, pinned ones 1) scored
    on the same ``final.n_rollouts`` trials of each search seed
    (:func:`dra_jax.planning.trainer.population_objective`, as CMA-ES scores its candidates).
    The authors found this sigma by Bayesian optimization of F; a 1-D grid refined is as good
    and needs no extra library. ``static_of(run)`` / ``budget_of(run)``: the run's
    :class:`PlanStatic` and search budget. Returns ``(runs, records)`` as :func:`resolve_lane`."""
    import jax
    import jax.numpy as jnp

    from dra_jax.planning.trainer import population_objective, vec_to_table

    eq, by_point = equal_points(runs)
    if not eq:
        return runs, []
    keys = list(by_point)
    first = [runs[by_point[k][0]] for k in keys]
    d0 = first[0]["dra"]
    seeds = [SEARCH_SEED0 + j for j in range(d0["equal_seeds"])]
    n = cfg["final"]["n_rollouts"]
    fns: dict = {}

    def evaluate(batch):
        f = np.zeros((len(batch), len(seeds)))
        # one vmapped call per static program and (beta, lam, sigma_base): every budget and
        # candidate of the round at once, on the same trials
        groups: dict = {}
        for j, (i, s) in enumerate(batch):
            r = first[i]
            gk = (static_of(r), r["dra"]["beta"], r["dra"]["lam"], r["dra"]["sigma_base"])
            groups.setdefault(gk, []).append(j)
        for (st, beta, lam, sb), js in groups.items():
            p = {"beta": jnp.float32(beta), "lam": jnp.float32(lam), "sigma_base": jnp.float32(sb)}
            dim = int(st.learn_mask.sum())
            tables = vec_to_table(st, np.asarray([[batch[j][1]] * dim for j in js]))
            budgets = jnp.asarray([budget_of(first[batch[j][0]]) for j in js], jnp.int32)
            if st not in fns:
                fns[st] = jax.jit(lambda t, b, k, p, st=st: population_objective(st, p, t, b, k, n))
            for c, seed in enumerate(seeds):
                key = jax.random.key(seed)
                f[js, c] = np.asarray(fns[st](jnp.asarray(tables), budgets, key, p))
        return f

    points = [{"dra": r["dra"], "point": {k: v for k, v in r["point"].items() if k != "seed"},
               "label": None} for r in first]
    records = search(points, evaluate, d0["equal_rounds"], d0["equal_points"], progress)
    for rec in records:
        rec["search_seeds"] = seeds
        rec["definition"] = ("the shared sigma maximizing F with q = q* (Fig. 3's protocol), by a "
                             "log-spaced grid refined around its best value; F of a candidate on "
                             f"final.n_rollouts = {n} trials per search seed, the same trials for "
                             "every candidate; the reported run is evaluated at the best sigma on "
                             "its own seed")
    return pin(runs, eq, keys, records), records
