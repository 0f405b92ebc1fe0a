"""The grid-world of Fig. 1 (adapted from Mattar & Daw 2018), with the environment switch.

A 6 x 9 maze. Start (row 2, col 0), goal (0, 8), obstacles (1,2) (2,2) (3,2) (0,7) (1,7) (2,7)
(4,5). Actions up, down, left, right; a move into an obstacle or off the grid leaves the agent
in place. Reward +10 on reaching the goal, -1 otherwise; the episode terminates at the goal.
Switched maze (Fig. 1c): obstacle (0,7) removed and the goal moved to (0,6).

The task is a :class:`dra_jax.envs.tabular.TabularTask` built from the maze's text
(:meth:`Layout.to_maze`), with no table code of its own:

* :func:`GridTask` for the lane engine (``dra_jax.lane.agent``): the switched maze is the task's
  second stage, used from episode ``tparams["switch_episode"]`` on;
* :class:`dra_jax.envs.tabular_gymnax.GridWorld`, the gymnax ``Environment`` face
  (``EnvParams.stage`` selects the maze; kept apart so that the lane engine never imports
  gymnax), also ``dra_jax.envs.make("GridWorldDRA-v0")``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dra_jax.config import ConfigError
from dra_jax.envs.tabular import Tables, TabularTask

ROWS, COLS = 6, 9
START = (2, 0)
GOAL = (0, 8)
OBSTACLES = ((1, 2), (2, 2), (3, 2), (0, 7), (1, 7), (2, 7), (4, 5))
SWITCH_REMOVED = (0, 7)
SWITCH_GOAL = (0, 6)
ACTIONS = ("up", "down", "left", "right")
GOAL_REWARD = 10.0
STEP_REWARD = -1.0


@dataclass(frozen=True)
class Layout:
    """A maze: size, start, goal and obstacle cells (row, col)."""

    rows: int = ROWS
    cols: int = COLS
    start: tuple[int, int] = START
    goal: tuple[int, int] = GOAL
    obstacles: tuple[tuple[int, int], ...] = OBSTACLES

    def switched(self, removed=SWITCH_REMOVED, goal=SWITCH_GOAL) -> "Layout":
        return Layout(self.rows, self.cols, self.start, goal,
                      tuple(o for o in self.obstacles if o != removed))

    def index(self, rc) -> int:
        return rc[0] * self.cols + rc[1]

    def to_maze(self) -> list[str]:
        """The layout as a text maze (``S``, ``G``, ``#``, ``.``) for :class:`TabularTask`."""
        for name, rc in (("start", self.start), ("goal", self.goal)):
            if not (0 <= rc[0] < self.rows and 0 <= rc[1] < self.cols):
                raise ConfigError(name, f"cell {rc} is outside the {self.rows} x {self.cols} grid")
            if rc in self.obstacles:
                raise ConfigError(name, f"cell {rc} is an obstacle")
        if self.start == self.goal:
            raise ConfigError("start", f"cell {self.start} is also the goal")
        grid = [["."] * self.cols for _ in range(self.rows)]
        for r, c in self.obstacles:
            grid[r][c] = "#"
        grid[self.start[0]][self.start[1]] = "S"
        grid[self.goal[0]][self.goal[1]] = "G"
        return ["".join(row) for row in grid]


def build_tables(layouts: tuple[Layout, ...]) -> Tables:
    """Transition tables of each layout, one stage per layout (all layouts share size and
    start): those of :meth:`TabularTask.from_maze`."""
    return grid_task_of(layouts).tables


def grid_task_of(layouts: tuple[Layout, ...]) -> TabularTask:
    """The :class:`TabularTask` whose stages are the given layouts' mazes."""
    texts = [lay.to_maze() for lay in layouts]
    return TabularTask.from_maze(*texts, rewards={".": STEP_REWARD, "S": STEP_REWARD,
                                                  "G": GOAL_REWARD}, name="gridworld")


def GridTask(layout: Layout = Layout(), with_switch: bool = False) -> TabularTask:
    """The Fig. 1 grid-world as a :class:`TabularTask` for :mod:`dra_jax.lane.agent`; with the switch
    the switched maze is a second stage, used from episode ``tparams["switch_episode"]`` on.

    Learned memories: every cell reachable from the start and not a goal, in some stage (with
    the switch that includes the cells of the removed obstacle (0,7) and the old goal (0,8)).
    """
    return grid_task_of((layout, layout.switched()) if with_switch else (layout,))


def shortest_path_q(layout: Layout, gamma: float = 1.0) -> np.ndarray:
    """q* of a layout (deterministic, -1 a step, +10 at the goal) by value iteration."""
    return grid_task_of((layout,)).q_star(gamma)


def bfs_distance(layout: Layout) -> np.ndarray:
    """Steps from every cell to the goal (inf for obstacles)."""
    return grid_task_of((layout,)).distance_to_goal()
