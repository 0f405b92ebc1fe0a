"""Equal precision at its optimum: the best shared sigma by a 1-D search of F.

``allocation = "equal"`` means one sigma shared by every memory, at the value that maximizes
the objective F. That is a one-dimensional optimization over sigma, and it is done here
before training, instead of by a stochastic gradient on the shared sigma (that is
``allocation = "equal_sgd"``, whose step and noise depend on the number of memories):

1. **Candidates.** Round 1 takes ``equal_points`` values log-spaced over ``equal_range``
   (``[]`` = ``[sigma_min, sigma_max]``, both ends included), plus ``sigma0`` and
   ``sigma_base`` when they lie inside. Each later round puts ``equal_points`` new values
   log-spaced strictly inside the bracket of the best value so far (its two neighbours among
   all values tried), so each round narrows the spacing by a factor ``equal_points + 1``.
2. **F of a candidate.** The lane tasks train the means under the candidate sigma exactly as
   the agent would (sigma pinned at the candidate, ``learn_sigma = false``, the run's own
   alpha_q, beta, lam, episodes, evaluation), on ``equal_seeds`` search seeds shared by every
   candidate of a grid point (common random numbers: the same episodes' noise for every
   sigma), and score it by the plateau objective (the mean of the last 10% of evaluations,
   the summary's definition). Planning scores a candidate table with q = q* on the same
   trials for every candidate (its Fig. 3 protocol, as CMA-ES does).
3. **The reported run.** Every equal-precision run of the grid point then trains with sigma
   pinned at the best value found, on its own seed: the search seeds (``2**31 + j``) never
   meet the grid's seeds, so the reported F carries no selection bias.

The record of every grid point (all candidates' F per search seed, the best sigma, whether it
lies on an end of the range) goes into ``summary["equal_search"]``. A searched sigma can only be
as good as the range it was searched in: a best sigma on an end of ``equal_range`` is flagged
(``at_range_edge``).
"""
from __future__ import annotations

import json

import numpy as np

SEARCH_SEED0 = 2**31  # search seeds are SEARCH_SEED0 + j: never a config seed (those are < 2**31)

DEFINITION = ("the shared sigma maximizing F, by a log-spaced grid refined around its best "
              "value (equal_points per round, equal_rounds rounds); F of a candidate = the "
              "plateau objective of a run with sigma pinned at it (the means trained as the "
              "agent trains them), averaged over equal_seeds search seeds shared by every "
              "candidate (common random numbers); the reported run trains at the best sigma "
              "on its own seed")


def search_range(d: dict) -> tuple[float, float]:
    """The interval of the search: ``equal_range`` or ``[sigma_min, sigma_max]``."""
    r = d.get("equal_range") or [d["sigma_min"], d["sigma_max"]]
    return float(r[0]), float(r[1])


def first_round(d: dict) -> np.ndarray:
    """Round 1: ``equal_points`` log-spaced values over the range, ends included, plus
    ``sigma0`` and ``sigma_base`` when inside; sorted, unique."""
    lo, hi = search_range(d)
    vals = list(np.exp(np.linspace(np.log(lo), np.log(hi), d["equal_points"])))
    for extra in (d["sigma0"], d["sigma_base"]):
        if lo <= extra <= hi:
            vals.append(float(extra))
    return _unique(vals)


def next_round(tried: np.ndarray, f: np.ndarray, points: int) -> np.ndarray:
    """``points`` log-spaced values strictly inside the bracket of the best tried value (its
    neighbours among the sorted tried values; at an end, the end and its neighbour)."""
    order = np.argsort(tried)
    x, y = np.asarray(tried)[order], np.asarray(f)[order]
    b = int(np.nanargmax(y))
    a, c = x[max(b - 1, 0)], x[min(b + 1, len(x) - 1)]
    inner = np.exp(np.linspace(np.log(a), np.log(c), points + 2))[1:-1]
    return _unique([v for v in inner if not np.any(np.isclose(v, x, rtol=1e-6, atol=0))])


def _unique(vals) -> np.ndarray:
    out: list[float] = []
    for v in sorted(float(v) for v in vals):
        if not out or not np.isclose(v, out[-1], rtol=1e-6, atol=0):
            out.append(v)
    return np.asarray(out, np.float64)


def search(points: list[dict], evaluate, rounds: int, n_points: int, progress=None) -> list[dict]:
    """Grid-refine every point's shared sigma at once.

    ``points``: one dict per grid point with ``dra`` (its ``[dra]`` values); ``evaluate(batch)``
    takes ``[(point_index, sigma), ...]`` (every point's candidates of one round) and returns
    F per candidate and search seed ``[len(batch), n_seeds]``. Returns one record per point.
    """
    tried = [np.zeros(0) for _ in points]
    fvals = [np.zeros((0, 0)) for _ in points]
    hist: list[list[dict]] = [[] for _ in points]
    for r in range(rounds):
        cands = [first_round(pt["dra"]) if r == 0 else
                 next_round(tried[i], fvals[i].mean(axis=1), n_points)
                 for i, pt in enumerate(points)]
        batch = [(i, float(s)) for i, c in enumerate(cands) for s in c]
        if not batch:
            break
        f = np.asarray(evaluate(batch), np.float64)
        k = 0
        for i, c in enumerate(cands):
            fi = f[k:k + len(c)]
            k += len(c)
            tried[i] = np.concatenate([tried[i], c])
            fvals[i] = fi if fvals[i].size == 0 else np.concatenate([fvals[i], fi])
            hist[i].append({"sigma": c.tolist(), "F_mean": fi.mean(axis=1).tolist(),
                            "F_per_seed": fi.tolist()})
        if progress is not None:
            best = [float(tried[i][np.nanargmax(fvals[i].mean(axis=1))]) for i in range(len(points))]
            progress.message(f"equal precision: search round {r + 1}/{rounds}, {len(batch)} "
                             f"candidates; best sigma by point: "
                             + ", ".join(f"{b:.3g}" for b in best))
    out = []
    for i, pt in enumerate(points):
        fm = fvals[i].mean(axis=1)
        b = int(np.nanargmax(fm))
        lo, hi = search_range(pt["dra"])
        s_best = float(tried[i][b])
        # the paired (common random numbers) SE of F(best) - F(each candidate)
        diff = fvals[i][b][None, :] - fvals[i]
        n_s = diff.shape[1]
        se = (diff.std(axis=1, ddof=1) / np.sqrt(n_s)) if n_s > 1 else np.full(len(fm), np.nan)
        out.append({"point": pt.get("point"), "label": pt.get("label"), "range": [lo, hi],
                    "rounds": hist[i], "best_sigma": s_best, "F_best_search": float(fm[b]),
                    "paired_se_best_minus": [None if not np.isfinite(v) else float(v) for v in se],
                    "at_range_edge": bool(np.isclose(s_best, lo) or np.isclose(s_best, hi)),
                    "definition": DEFINITION})
    return out


def point_key(point: dict) -> str:
    return json.dumps({k: v for k, v in point.items() if k != "seed"}, sort_keys=True, default=str)


def equal_points(runs: list[dict]) -> tuple[list[int], dict[str, list[int]]]:
    """The indices of the equal-precision runs, and those indices by grid point (seed aside)."""
    eq = [i for i, r in enumerate(runs) if r["dra"]["allocation"] == "equal"]
    by_point: dict[str, list[int]] = {}
    for i in eq:
        by_point.setdefault(point_key(runs[i]["point"]), []).append(i)
    return eq, by_point


def pin(runs: list[dict], eq: list[int], keys: list[str], records: list[dict]) -> list[dict]:
    """The runs with every equal run pinned at its grid point's searched sigma."""
    best = {k: rec["best_sigma"] for k, rec in zip(keys, records)}
    out = list(runs)
    for i in eq:
        out[i] = pinned_run(runs[i], best[point_key(runs[i]["point"])])
    return out


def pinned_run(run: dict, sigma: float) -> dict:
    """The reported equal-precision run: the run on its own seed with sigma pinned at the
    searched value (``allocation`` stays ``"equal"`` for the readers)."""
    return {**run, "dra": {**run["dra"], "learn_sigma": False, "sigma0": float(sigma)}}
