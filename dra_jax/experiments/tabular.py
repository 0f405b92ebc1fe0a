"""Task ``tabular``: DRA on any deterministic tabular task, from a text maze or an ``.npz`` file.

Config (``configs/tabular_maze.toml``)::

    task = "tabular"
    [task_params]
    maze = '''
    S..#....G
    ...#.....
    .........
    '''                     # or maze_file = "my_maze.txt", or npz = "my_task.npz"
    goal_reward = 10.0      # reward on entering a goal 'G'
    step_reward = -1.0      # reward of every other move
    switch_maze = ""        # optional second maze (same size and start): the environment switch
    switch_episode = 3000   # ... used from this episode on (traced: sweep it freely)

Paths are relative to the working directory. The ``.npz`` holds ``next_state [S, A]`` (or
``[stages, S, A]``), ``reward``, ``terminal [S]`` and ``start`` or ``start_probs``
(:meth:`dra_jax.envs.tabular.TabularTask.from_npz`). The task is built and checked while the
config is validated, so a bad maze or table is a config error naming the key, before anything
is compiled. Figures: ``convergence``, ``baselines``, ``allocation``, ``choice_entropy`` (state
maps drawn on the maze).
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.core.stats import choice_entropy_maps
from dra_jax.envs.tabular import TabularTask
from dra_jax.figures import lane
from dra_jax.lane import equal_search
from dra_jax.lane.runner import run_lane_task

TASK_PARAMS = {
    "maze": Field(str, "", "text maze: rows of S (start), G (goal), # (obstacle), . (free)",
                  static=True, sweepable=False),
    "maze_file": Field(str, "", "path of a text maze file (instead of maze)", static=True,
                       sweepable=False),
    "npz": Field(str, "", "path of an .npz file with next_state, reward, terminal, start or "
                 "start_probs (instead of a maze)", static=True, sweepable=False),
    "switch_maze": Field(str, "", "a second maze of the same size and start, used from "
                         "switch_episode on (mazes only)", static=True, sweepable=False),
    "switch_episode": Field(int, 3000, "episode from which the switch maze applies", lo=1),
    "goal_reward": Field(float, 10.0, "reward on entering a goal cell G (mazes)", static=True),
    "step_reward": Field(float, -1.0, "reward of every other move (mazes)", static=True),
}

DRA_DEFAULTS = {"lam": 0.2, "sigma_base": 5.0, "sigma0": 3.0, "beta": 10.0, "gamma": 1.0,
                "alpha_q": 0.1, "alpha_sigma": 0.1, "n_traj": 10, "episodes": 1000, "psi": "A",
                "max_steps": 500}

FIGURES = ("convergence", "choice_entropy", "baselines", "allocation")


@functools.lru_cache(maxsize=32)
def _build(maze: str, maze_file: str, npz: str, switch_maze: str, goal: float,
           step: float) -> TabularTask:
    given = [k for k, v in (("maze", maze), ("maze_file", maze_file), ("npz", npz)) if v]
    if len(given) != 1:
        raise ConfigError("task_params.maze", "give exactly one of task_params.maze, "
                          f"task_params.maze_file, task_params.npz (got {given or 'none'})")
    if npz:
        if switch_maze:
            raise ConfigError("task_params.switch_maze", "only for mazes (put stages into the "
                                                         ".npz arrays instead)")
        return TabularTask.from_npz(npz, key="task_params.npz")
    key = "task_params.maze"
    if maze_file:
        path = Path(maze_file)
        if not path.is_file():
            raise ConfigError("task_params.maze_file", f"no such file: {path}")
        maze, key = path.read_text(), "task_params.maze_file"
    rewards = {".": step, "S": step, "G": goal}
    stages = (switch_maze,) if switch_maze else ()
    return TabularTask.from_maze(maze, *stages, rewards=rewards, key=key,
                                 name=Path(maze_file).stem if maze_file else "maze")


def make_task(tp: dict) -> TabularTask:
    return _build(tp["maze"], tp["maze_file"], tp["npz"], tp["switch_maze"],
                  float(tp["goal_reward"]), float(tp["step_reward"]))


def task_run_params(tp: dict) -> dict:
    return {"switch_episode": np.int32(tp["switch_episode"])}


def _check(cfg: dict) -> None:
    task = make_task(cfg["task_params"])  # builds and validates the tables now
    for name, values in cfg["sweep"].items():
        if name in ("goal_reward", "step_reward"):
            for v in values:
                make_task({**cfg["task_params"], name: v})
    if cfg["dra"]["q_init"] == "optimal":
        try:
            task.q_star()
        except ValueError as e:
            raise ConfigError("dra.q_init", f"'optimal' needs q*: {e}") from None
    if "baselines" in cfg["figures"] and len(cfg["variants"]) < 2:
        raise ConfigError("figures", "'baselines' needs at least two [variants.NAME] tables")


def run_lane_sweep(cfg, runs, progress, make_task, task_run_params,
                   final_entropy_for: tuple[str, ...] = ("allocation",)):
    """The lane engine over the grid, plus the choice-entropy maps the figures draw (of the
    snapshots, and of the final memories when a figure in ``final_entropy_for`` is asked for)
    and the per-point summary. Shared by the maze tasks, mountain car and the gymnax tasks.
    Equal-precision runs (``allocation = "equal"``) first get their shared sigma from
    :func:`dra_jax.lane.equal_search.resolve_lane`; its record is ``summary["equal_search"]``."""
    t0 = time.perf_counter()
    runs, searched = equal_search.resolve_lane(cfg, runs, progress, make_task, task_run_params)
    search_s = time.perf_counter() - t0
    res = run_lane_task(cfg, runs, progress, make_task, task_run_params)
    if searched:
        res.summary["equal_search"] = searched
        res.timing["equal_search_s"] = round(search_s, 3)  # compile and run, all rounds
        for i, r in enumerate(runs):
            if r["dra"]["allocation"] == "equal":
                res.run_extra[i]["equal_sigma"] = r["dra"]["sigma0"]
    if "snap_q" in res.curves:
        res.curves["choice_entropy"] = choice_entropy_maps(res.curves["snap_q"],
                                                           res.curves["snap_sigma"])
    if set(final_entropy_for) & set(cfg["figures"]):
        res.curves["final_choice_entropy"] = choice_entropy_maps(res.curves["q"], res.curves["sigma"])
    res.summary.update(lane.summarize_lane_sweep(cfg, res))
    return res


def run(cfg, runs, progress):
    return run_lane_sweep(cfg, runs, progress, make_task, task_run_params)


def plot(cfg, res, fig_dir):
    task = make_task(cfg["task_params"])
    return lane.plot_lane_figures(cfg, res, fig_dir, mazes=task.maze)


@register_task("tabular")
def spec() -> TaskSpec:
    return TaskSpec(name="tabular", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
                    figures=FIGURES, run=run, plot=plot, psi_choices=("A", "Q", "R"), check=_check,
                    eval_defaults={"every": 50, "n_rollouts": 50}, multi_process=True)
