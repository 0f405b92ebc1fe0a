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
import shutil
from pathlib import Path

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


# ------------------------------------------------------------------ the lane tasks


class _Quiet:
    """Progress for the search's training calls: their messages pass, their episode counts do
    not (the sweep's progress line counts the reported runs); checkpoints go to their own
    folder."""

    def __init__(self, progress, options):
        self._p, self.options = progress, options

    def update(self, done, extra="", force=False):
        pass

    def message(self, text):
        if self._p is not None:
            self._p.message(text)

    def notice(self, text):
        if self._p is not None:
            getattr(self._p, "notice", self._p.message)(text)


def _point_key(point: dict) -> str:
    return json.dumps({k: v for k, v in point.items() if k != "seed"}, sort_keys=True, default=str)


def _equal_points(runs: list[dict]) -> tuple[list[int], dict[str, list[int]]]:
    """The indices of the equal-precision runs, and those indices by grid point (seed aside)."""
    eq = [i for i, r in enumerate(runs) if r["dra"]["allocation"] == "equal"]
    by_point: dict[str, list[int]] = {}
    for i in eq:
        by_point.setdefault(_point_key(runs[i]["point"]), []).append(i)
    return eq, by_point


def _pin(runs: list[dict], eq: list[int], keys: list[str], records: list[dict]) -> list[dict]:
    """The runs with every equal run pinned at its grid point's searched sigma."""
    best = {k: rec["best_sigma"] for k, rec in zip(keys, records)}
    out = list(runs)
    for i in eq:
        out[i] = pinned_run(runs[i], best[_point_key(runs[i]["point"])])
    return out


# the candidates' engine layout: a pinned candidate's steps are its acting episodes (no
# gradient rollouts; evaluations only in the plateau window), which run on one lane, so wider
# runs would only add idle sub-lanes, and longer blocks only longer waits for the sync
CANDIDATE_LAYOUT = {"sub_lanes": 1, "block": 16}


def candidate_run(run: dict, sigma: float, seed: int) -> dict:
    """A search candidate of ``run``: sigma pinned at ``sigma`` on every memory, on a search
    seed; the means learn as the run's do. Pinned, it runs no gradient rollouts
    (:attr:`dra_jax.agent.AgentStatic.pinned`), on :data:`CANDIDATE_LAYOUT` (the layout changes
    which random numbers a run draws, not their distribution)."""
    d = {**run["dra"], "allocation": "flexible", "learn_sigma": False, "sigma0": float(sigma),
         **CANDIDATE_LAYOUT}
    return {**run, "dra": d, "seed": int(seed)}


def plateau_from(st) -> int:
    """The first episode of the plateau window of ``st``'s evaluation schedule: its last 10%
    of evaluations (at least one), where the plateau objective is read."""
    eps = st.eval_episodes
    return int(eps[-max(1, int(round(0.1 * len(eps))))])


def candidate_config(cfg: dict, cand: dict) -> dict:
    """The config the candidates train under: the run's evaluation schedule from the start of
    its plateau window on (``eval.from``, internal), since a candidate is scored by the
    plateau objective alone; the evaluations before it would be thrown away."""
    from dra_jax.runner import agent_static

    return {**cfg, "eval": {**cfg["eval"], "from": plateau_from(agent_static(cand, cfg))}}


def pinned_run(run: dict, sigma: float) -> dict:
    """The reported equal-precision run: the run on its own seed with sigma pinned at the
    searched value (``allocation`` stays ``"equal"`` for the readers)."""
    return {**run, "dra": {**run["dra"], "learn_sigma": False, "sigma0": float(sigma)}}


def resolve_lane(cfg: dict, runs: list[dict], progress, make_task, task_run_params):
    """Search the shared sigma of every grid point whose runs have ``allocation = "equal"``
    and return ``(runs, records)``: the runs with each equal run pinned at its point's best
    sigma, and the points' records (empty when no run is equal). With an output folder the
    records are written to ``OUT/equal_search.json`` and ``--resume`` reads them back."""
    from dra_jax.figures.lane import grid_points
    from dra_jax.runner import ExecOptions, config_fingerprint, run_lane_task

    eq, by_point = _equal_points(runs)
    if not eq:
        return runs, []
    opts = getattr(progress, "options", None) or ExecOptions()
    labels = {_point_key(p["point"]): p["label"] for p in grid_points(cfg)}
    keys = list(by_point)
    fingerprint = config_fingerprint(cfg)
    path = Path(opts.out) / "equal_search.json" if opts.out is not None else None
    records = None
    if opts.resume and path is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") == fingerprint:
            records = saved["points"]
            getattr(progress, "notice", progress.message)(f"equal precision: search read from {path}")
    if records is None:
        d0 = runs[eq[0]]["dra"]
        seeds = [SEARCH_SEED0 + j for j in range(d0["equal_seeds"])]
        points = [{"dra": runs[by_point[k][0]]["dra"], "point": {kk: v for kk, v in
                   runs[by_point[k][0]]["point"].items() if kk != "seed"}, "label": labels.get(k)}
                  for k in keys]
        n_round = 0

        def evaluate(batch):
            nonlocal n_round
            # each round checkpoints into its own folder (an interrupted round resumes)
            sub = ExecOptions(out=None if opts.out is None
                              else Path(opts.out) / "equal_search" / f"round{n_round}",
                              resume=opts.resume, max_batch=opts.max_batch,
                              n_devices=opts.n_devices, chunk_seconds=opts.chunk_seconds)
            n_round += 1
            cand = [candidate_run(runs[by_point[keys[i]][0]], s, seed)
                    for i, s in batch for seed in seeds]
            res = run_lane_task(candidate_config(cfg, cand[0]), cand, _Quiet(progress, sub),
                                make_task, task_run_params)
            obj = np.asarray(res.curves["objective"], np.float64)  # [n, plateau evaluations]
            return obj.mean(axis=1).reshape(len(batch), len(seeds))

        records = search(points, evaluate, d0["equal_rounds"], d0["equal_points"], progress)
        for rec in records:
            rec["search_seeds"] = seeds
        if path is not None:
            from dra_jax.results import atomic_write_json

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"fingerprint": fingerprint, "points": records})
            shutil.rmtree(Path(opts.out) / "equal_search", ignore_errors=True)
    return _pin(runs, eq, keys, records), records


# ------------------------------------------------------------------ planning


def resolve_planning(cfg: dict, runs: list[dict], static_of, budget_of, progress=None):
    """Planning's equal precision (Fig. 3d): the shared sigma of each grid point maximizing F
    with q = q*, every candidate table (``sigma`` on the learned memories, pinned ones 1) scored
    on the same ``final.n_rollouts`` trials of each search seed
    (:func:`dra_jax.planning_trainer.population_objective`, as CMA-ES scores its candidates).
    The authors found this sigma by Bayesian optimization of F; a 1-D grid refined is as good
    and needs no extra library. ``static_of(run)`` / ``budget_of(run)``: the run's
    :class:`PlanStatic` and search budget. Returns ``(runs, records)`` as :func:`resolve_lane`."""
    import jax
    import jax.numpy as jnp

    from dra_jax.planning_trainer import _vec_to_table, population_objective

    eq, by_point = _equal_points(runs)
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
            tables = _vec_to_table(st, np.asarray([[batch[j][1]] * dim for j in js]))
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
    return _pin(runs, eq, keys, records), records
