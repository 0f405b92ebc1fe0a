"""Equal precision of a lane task at its optimum: every candidate sigma trains the means as the
agent would, scored by its plateau objective (the search itself:
:mod:`dra_jax.runtime.equal_search`)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from dra_jax.runtime.equal_search import (  # noqa: F401
    DEFINITION,
    SEARCH_SEED0,
    equal_points,
    first_round,
    next_round,
    pin,
    pinned_run,
    point_key,
    search,
    search_range,
)


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


# the candidates' engine layout: a pinned candidate's steps are its acting episodes (no
# gradient rollouts; evaluations only in the plateau window), which run on one lane, so wider
# runs would only add idle sub-lanes, and longer blocks only longer waits for the sync
CANDIDATE_LAYOUT = {"sub_lanes": 1, "block": 16}


def candidate_run(run: dict, sigma: float, seed: int) -> dict:
    """A search candidate of ``run``: sigma pinned at ``sigma`` on every memory, on a search
    seed; the means learn as the run's do. Pinned, it runs no gradient rollouts
    (:attr:`dra_jax.lane.static.AgentStatic.pinned`), on :data:`CANDIDATE_LAYOUT` (the layout changes
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
    from dra_jax.lane.runner import agent_static

    return {**cfg, "eval": {**cfg["eval"], "from": plateau_from(agent_static(cand, cfg))}}


def resolve_lane(cfg: dict, runs: list[dict], progress, make_task, task_run_params):
    """Search the shared sigma of every grid point whose runs have ``allocation = "equal"``
    and return ``(runs, records)``: the runs with each equal run pinned at its point's best
    sigma, and the points' records (empty when no run is equal). With an output folder the
    records are written to ``OUT/equal_search.json`` and ``--resume`` reads them back."""
    from dra_jax.config import grid_points
    from dra_jax.lane.runner import run_lane_task
    from dra_jax.runtime.checkpoint import config_fingerprint
    from dra_jax.runtime.execution import ExecOptions

    eq, by_point = equal_points(runs)
    if not eq:
        return runs, []
    opts = getattr(progress, "options", None) or ExecOptions()
    labels = {point_key(p["point"]): p["label"] for p in grid_points(cfg)}
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
    return pin(runs, eq, keys, records), records


# ------------------------------------------------------------------ planning
