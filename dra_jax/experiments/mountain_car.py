"""Task ``mountain_car``: DRA on gymnax's MountainCar-v0 (Sec. 3.2, Fig. 2), an instance of
:class:`dra_jax.envs.discretized.DiscretizedTask` (:func:`dra_jax.envs.mountain_car.MountainCarTask`).

Config (``configs/mountain_car.toml``, ``configs/mountain_car_baselines.toml``):

* ``[task_params]``: ``cells`` and ``scale`` of the discretizer ``round((obs - low) * scale)``
  (static: they size the memory table; ``cells`` must be what ``scale`` spans, 19 x 15 for the
  paper's (10, 100)), ``random_start`` (traced: gym's start ``x ~ U[-0.6, -0.4)`` instead of
  the paper's ``x = -0.5``);
* ``[dra]``: Table B.1 defaults (mountain-car column), ``max_steps = 200`` (gymnax's limit, a
  truncation that bootstraps); ``q_init = "optimal"`` is rejected (no tabular q*).

Runs go through the lane engine unchanged (:func:`dra_jax.experiments.tabular.run_lane_sweep`). After
training, every run's means are rolled out greedily (``argmax_a q``) with gymnax from
``x = -0.5, v = 0`` for ``max_steps`` steps; whether and when the car reaches the flag goes into
each run's record (``greedy_reached_flag``, ``greedy_steps``) and ``summary["greedy_rollout"]``.

Figures: ``fig2b`` (value function ``max_a q`` over position x velocity with the greedy path),
``fig2c`` (normalized choice entropy per cell of the final memories), ``fig2d`` (final objective
per grid point, e.g. per gradient R / Q / A: mean and SD over seeds), and the shared
``convergence``, ``baselines``, ``allocation``, ``choice_entropy`` (snapshots).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.envs.discretized import DiscretizedTask
from dra_jax.envs.mountain_car import MountainCarTask, cells_for, paper_start_state
from dra_jax.experiments.tabular import run_lane_sweep
from dra_jax.figures import lane as plots
from dra_jax.figures import mountain_car as mc_figures
from dra_jax.results import GridResults


def _two(v):
    return None if len(v) == 2 else f"expected 2 values (position, velocity), got {len(v)}"


TASK_PARAMS = {
    "cells": Field(list, [19, 15], "cells per observation dimension (position, velocity); must be "
                   "round((high - low) * scale) + 1", item_kind=int, lo=1, static=True,
                   sweepable=False, check=_two),
    "scale": Field(list, [10.0, 100.0], "discretizer cell index = round((obs - low) * scale)",
                   item_kind=float, lo=0, lo_open=True, static=True, sweepable=False, check=_two),
    "random_start": Field(bool, False, "gym's random start x ~ U[-0.6, -0.4) instead of the "
                          "paper's x = -0.5 (v = 0 either way)"),
}

# Table B.1, mountain-car column; max_steps = gymnax MountainCar-v0's episode limit
DRA_DEFAULTS = {"lam": 0.1, "sigma_base": 5.0, "sigma0": 3.0, "beta": 10.0, "gamma": 1.0,
                "alpha_q": 0.1, "alpha_sigma": 0.1, "n_traj": 10, "episodes": 5000, "psi": "A",
                "max_steps": 200}

FIGURES = ("fig2b", "fig2c", "fig2d", "convergence", "baselines", "allocation", "choice_entropy")


@functools.lru_cache(maxsize=None)
def _task(cells: tuple, scale: tuple) -> DiscretizedTask:
    return MountainCarTask(cells=cells, scale=scale)


def make_task(tp: dict) -> DiscretizedTask:
    return _task(tuple(int(c) for c in tp["cells"]), tuple(float(s) for s in tp["scale"]))


def task_run_params(tp: dict) -> dict:
    return {"random_start": np.bool_(tp["random_start"])}


def _check(cfg: dict) -> None:
    tp = cfg["task_params"]
    spanned = cells_for(tp["scale"])
    if tuple(tp["cells"]) != spanned:
        raise ConfigError("task_params.cells", f"scale {tp['scale']} spans {list(spanned)} cells "
                          f"(round((high - low) * scale) + 1), got {tp['cells']}")
    if cfg["dra"]["q_init"] == "optimal":
        raise ConfigError("dra.q_init", "'optimal' needs a tabular q*, which mountain car (a "
                          "discretized continuous state) does not have; use 'zero' or 'uniform'")
    for name, over in cfg["variants"].items():
        if over.get("q_init") == "optimal":
            raise ConfigError(f"variants.{name}.q_init", "'optimal' is not available for mountain car")
    if "optimal" in cfg["sweep"].get("q_init", []):
        raise ConfigError("sweep.q_init", "'optimal' is not available for mountain car")
    if "baselines" in cfg["figures"] and len(cfg["variants"]) < 2:
        raise ConfigError("figures", "'baselines' needs at least two [variants.NAME] tables")


# ------------------------------------------------------------------ greedy rollout


@functools.lru_cache(maxsize=None)
def _greedy_batch(task: DiscretizedTask, max_steps: int):
    return jax.jit(jax.vmap(lambda q: task.greedy_rollout(q, max_steps, paper_start_state())))


def greedy_rollouts(task: DiscretizedTask, q: np.ndarray, max_steps: int):
    """Greedy rollouts of the means ``q [runs, S, A]`` from the paper's start, with gymnax.
    Returns numpy ``(path [runs, max_steps + 1, 2], reached [runs], steps [runs])``."""
    path, reached, steps = _greedy_batch(task, int(max_steps))(jnp.asarray(q, jnp.float32))
    return np.asarray(path), np.asarray(reached), np.asarray(steps)


# ------------------------------------------------------------------ run


def run(cfg: dict, runs: list[dict], progress) -> GridResults:
    res = run_lane_sweep(cfg, runs, progress, make_task, task_run_params,
                         final_entropy_for=("fig2c", "allocation"))
    task = make_task(cfg["task_params"])
    horizon = max(r["dra"]["max_steps"] for r in runs)
    path, reached, steps = greedy_rollouts(task, res.curves["q"], horizon)
    limits = np.array([r["dra"]["max_steps"] for r in runs])
    reached = reached & (steps <= limits)
    res.curves["greedy_path"] = path
    res.curves["greedy_reached"] = reached
    res.curves["greedy_steps"] = np.where(reached, steps, -1)
    for i, extra in enumerate(res.run_extra):
        extra["greedy_reached_flag"] = bool(reached[i])
        extra["greedy_steps"] = int(steps[i]) if reached[i] else None
    greedy = []
    for g, pt in enumerate(plots.grid_points(cfg)):
        r = plots.by_point(cfg, reached)[g]
        s = plots.by_point(cfg, steps)[g]
        greedy.append({"point": pt["point"], "label": pt["label"],
                       "reached_fraction": float(r.mean()),
                       "steps_per_seed": [int(x) if ok else None for x, ok in zip(s, r)],
                       "mean_steps_when_reached": float(s[r].mean()) if r.any() else None})
    res.summary["greedy_rollout"] = {
        "definition": "argmax_a of the final means q, from x = -0.5, v = 0, stepped by gymnax "
                      "MountainCar-v0 for at most max_steps steps; steps = steps to the flag",
        "points": greedy}
    return res


# ------------------------------------------------------------------ figures (dra_jax.figures.mountain_car)


def _with_task(fn):
    return lambda cfg, res, fig_dir: fn(cfg, res, fig_dir, make_task(cfg["task_params"]))


plots.register_figure("fig2b", _with_task(mc_figures.fig2b))
plots.register_figure("fig2c", _with_task(mc_figures.fig2c))
plots.register_figure("fig2d", mc_figures.fig2d)


@register_task("mountain_car")
def spec() -> TaskSpec:
    return TaskSpec(
        name="mountain_car", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS, figures=FIGURES,
        run=run, plot=plots.plot_lane_figures, psi_choices=("A", "Q", "R"), check=_check,
        eval_defaults={"every": 100, "n_rollouts": 100}, multi_process=True,
    )
