"""Task ``gridworld``: the Fig. 1 maze (Sec. 3.1), optionally with the environment switch.

The maze is a :class:`dra_jax.envs.tabular.TabularTask` (:func:`dra_jax.envs.gridworld.GridTask`);
runs and figures are those of the ``tabular`` task (:mod:`dra_jax.experiments.tabular`).
"""
from __future__ import annotations

import functools

import numpy as np

from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.envs.gridworld import GridTask, Layout
from dra_jax.experiments.tabular import run_lane_sweep
from dra_jax.figures import lane

TASK_PARAMS = {
    "switch": Field(bool, False, "switch the maze (obstacle (0,7) removed, goal to (0,6))",
                    static=True),
    "switch_episode": Field(int, 3000, "the maze switches after this many episodes", lo=1),
}

# Table B.1, grid-world column
DRA_DEFAULTS = {"lam": 0.2, "sigma_base": 5.0, "sigma0": 3.0, "beta": 10.0, "gamma": 1.0,
                "alpha_q": 0.1, "alpha_sigma": 0.1, "n_traj": 10, "episodes": 5000, "psi": "A",
                "max_steps": 500}


@functools.lru_cache(maxsize=None)
def _task(switch: bool):
    return GridTask(Layout(), with_switch=switch)


def make_task(tp: dict):
    return _task(bool(tp["switch"]))


def task_run_params(tp: dict) -> dict:
    return {"switch_episode": np.int32(tp["switch_episode"])}


def _check(cfg: dict) -> None:
    if "baselines" in cfg["figures"] and len(cfg["variants"]) < 2:
        raise ConfigError("figures", "'baselines' needs at least two [variants.NAME] tables")


def run(cfg, runs, progress):
    return run_lane_sweep(cfg, runs, progress, make_task, task_run_params)


def plot(cfg, res, fig_dir):
    return lane.plot_lane_figures(cfg, res, fig_dir, mazes=_task(True).maze)


@register_task("gridworld")
def spec() -> TaskSpec:
    return TaskSpec(
        name="gridworld", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
        figures=("convergence", "choice_entropy", "baselines", "allocation"),
        run=run, plot=plot, psi_choices=("A", "Q", "R"), check=_check,
        eval_defaults={"every": 100, "n_rollouts": 100, "plot_return": "undiscounted"},
        multi_process=True,
    )
