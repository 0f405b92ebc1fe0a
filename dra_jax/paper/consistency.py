"""Consistency rows of the paper report: orders that mathematics fixes.

When one agent's family of solutions contains another's, its optimum is at least as good:
flexible precision contains equal precision (every memory at the same sigma), equal precision
at its optimum contains the shared sigma a gradient finds, and planning's gradient and CMA-ES
optimize over the same family. Each row states whether the measured order holds within noise
(the difference >= -2 SE, paired by seed where the runs share seeds). A violation is an
optimizer that did not reach its family's optimum, never a scientific result, and is flagged
as such; it does not change any claim's verdict.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

HOLDS, VIOLATION = "holds", "VIOLATION: an optimizer problem, not a result"

LANE_PAIRS = (("dra", "equal", "flexible precision contains equal precision"),
              ("dra", "equal_sgd", "flexible precision contains every shared sigma"),
              ("equal", "equal_sgd", "the optimal shared sigma is at least the one SGD finds"))


def _se(x: np.ndarray) -> float:
    """Standard error of the mean of ``x`` (nan for fewer than two values)."""
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else np.nan


def _row(config, where, larger, smaller, why, d, se, n) -> dict:
    """``d``: mean of F(larger) - F(smaller); ``se``: its standard error."""
    ok = bool(d >= -2 * se) if np.isfinite(se) else bool(d >= 0)
    return {"config": config, "where": where, "larger": larger, "smaller": smaller,
            "why": why, "diff": float(d), "se": float(se), "n": int(n),
            "status": HOLDS if ok else VIOLATION}


def lane_rows(name: str, res) -> list[dict]:
    """DRA against its equal-precision baselines on a lane task: the plateau F per seed, paired
    by seed (every variant runs on the same seeds)."""
    from dra_jax.paper.claims import plateau_per_seed

    names = [str(v) for v in dict(res.axes).get("variant", [])]
    p = plateau_per_seed(res, "objective")
    rows = []
    for a, b, why in LANE_PAIRS:
        if a in names and b in names:
            d = p[names.index(a)] - p[names.index(b)]
            rows.append(_row(name, "plateau F", a, b, why, d.mean(), _se(d), d.size))
    return rows


def planning_rows(name: str, res) -> list[dict]:
    """Planning, at each budget: every flexible variant (n_traj, baseline) against equal
    precision, paired by seed; CMA-ES (over the flexible family) against equal precision; and
    the gradient against CMA-ES, which search the same family, so the lower of the two beyond
    noise is flagged."""
    runs = res.runs
    col = {k: np.asarray([r.get(k, "none") for r in runs])
           for k in ("budget", "n_traj", "allocation", "baseline")}
    f = np.asarray([r["final"]["objective"] for r in runs], float)
    seed = np.asarray([r["seed"] for r in runs])
    cma = res.summary.get("cma") or {}
    cma_f = np.asarray(res.arrays["cma_objective"]) if "cma_objective" in res.arrays else None
    cma_at = {b: i for i, b in enumerate(cma.get("budgets", []))}
    eq = np.isin(col["allocation"], ("equal", "equal_sgd"))
    rows = []
    for b in sorted(set(col["budget"].tolist())):
        at = col["budget"] == b
        e_idx = np.flatnonzero(at & eq)
        e_by_seed = {int(seed[i]): f[i] for i in e_idx}
        flex = at & ~eq
        kinds = sorted({(int(n), str(bl)) for n, bl in zip(col["n_traj"][flex], col["baseline"][flex])})
        for n, bl in kinds:
            idx = np.flatnonzero(flex & (col["n_traj"] == n) & (col["baseline"] == bl))
            label = f"flexible (n_traj {n}, baseline {bl})"
            if e_by_seed:
                d = np.asarray([f[i] - e_by_seed[int(seed[i])] for i in idx
                                if int(seed[i]) in e_by_seed])
                if d.size:
                    rows.append(_row(name, f"b={b}", label, "equal", "flexible precision contains "
                                     "equal precision", d.mean(), _se(d), d.size))
            if cma_f is not None and b in cma_at:
                c = cma_f[cma_at[b]]
                g = f[idx]
                gap = g.mean() - c.mean()
                se = np.hypot(np.nan_to_num(_se(g)), np.nan_to_num(_se(c)))
                lo, hi = (label, "CMA-ES") if gap < 0 else ("CMA-ES", label)
                tol = max(2 * se, 0.02 * abs(c.mean()))
                r = _row(name, f"b={b}", hi, lo, "the gradient and CMA-ES search the same family",
                         abs(gap), se, g.size)
                r["status"] = HOLDS if abs(gap) <= tol else VIOLATION
                r["why"] += f" (they must agree within max(2 SE, 2% of |F_cma|) = {tol:.3g})"
                rows.append(r)
        if cma_f is not None and b in cma_at and e_idx.size:
            c, e = cma_f[cma_at[b]], f[e_idx]
            se = np.hypot(np.nan_to_num(_se(c)), np.nan_to_num(_se(e)))
            rows.append(_row(name, f"b={b}", "CMA-ES", "equal", "flexible precision contains "
                             "equal precision", c.mean() - e.mean(), se, e.size))
    return rows


LANE_CONFIGS = ("gridworld_baselines", "gridworld_baselines_authors", "mountain_car_baselines")
PLANNING_CONFIGS = ("planning", "planning_loo")


def consistency_rows(out: Path) -> list[dict]:
    """Every consistency row the outputs in ``out`` allow."""
    from dra_jax.paper.claims import Outputs

    outs = Outputs(Path(out))
    rows: list[dict] = []
    for name in LANE_CONFIGS + PLANNING_CONFIGS:
        res = outs(name)
        if res is None:
            continue
        rows += lane_rows(name, res) if name in LANE_CONFIGS else planning_rows(name, res)
    return rows


def consistency_section(rows: list[dict]) -> list[str]:
    bad = sum(r["status"] != HOLDS for r in rows)
    lines = ["## Consistency: orders that mathematics fixes", "",
             "Where one agent's family contains another's, its optimum is at least as good. A "
             "row holds when F(larger family) - F(smaller) >= -2 SE (paired by seed where the "
             "runs share seeds). A violation means an optimizer fell short of its family's "
             "optimum: it is flagged here and is not a result.", "",
             f"{len(rows)} rows, **{bad} violations**." if bad else f"{len(rows)} rows, no violations.",
             ""]
    if not rows:
        return lines + ["_No outputs with nested families in this run._", ""]
    lines += ["| config | where | larger family | smaller | F difference | SE | n | status |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r["status"] if r["status"] == HOLDS else f"**{r['status']}**"
        lines.append(f"| {r['config']} | {r['where']} | {r['larger']} | {r['smaller']} | "
                     f"{r['diff']:.3g} | {r['se']:.3g} | {r['n']} | {status} |")
    return lines + [""]
