"""The grid-world of Fig. 1 (adapted from Mattar & Daw 2018), with the environment switch.

A 6 x 9 maze. Start (row 2, col 0), goal (0, 8), obstacles (1,2) (2,2) (3,2) (0,7) (1,7) (2,7)
(4,5). Actions up, down, left, right; a move into an obstacle or off the grid leaves the agent
in place. Reward +10 on reaching the goal, -1 otherwise; the episode terminates at the goal.
Switched maze (Fig. 1c): obstacle (0,7) removed and the goal moved to (0,6).

Two faces of the same task:

* :class:`GridWorld`, a gymnax ``Environment`` (``reset_env`` / ``step_env`` with an
  ``EnvParams`` dataclass) for anyone using gymnax; the maze in use is chosen by the traced
  ``EnvParams.maze`` (0 = original, 1 = switched), so a switch happens inside compiled code.
* :class:`GridTask`, the table-driven form the DRA lane engine steps (``dra_jax.agent``): the
  maze is selected per step from the episode index, ``maze = episode >= switch_episode``.

Both read the same transition tables (:func:`build_tables`), which tests check against the
rules above.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

ROWS, COLS = 6, 9
START = (2, 0)
GOAL = (0, 8)
OBSTACLES = ((1, 2), (2, 2), (3, 2), (0, 7), (1, 7), (2, 7), (4, 5))
SWITCH_REMOVED = (0, 7)
SWITCH_GOAL = (0, 6)
ACTIONS = ("up", "down", "left", "right")
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))
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


@dataclass(frozen=True)
class Tables:
    """``next_state[m, s, a]``, ``reward[m, s, a]``, ``terminal[m, s]`` for mazes m; all
    states are flat indices ``row * cols + col``."""

    next_state: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    obstacle: np.ndarray  # [m, S] bool
    start: int


def build_tables(layouts: tuple[Layout, ...]) -> Tables:
    """Transition tables of each layout (all layouts share size and start)."""
    rows, cols = layouts[0].rows, layouts[0].cols
    n = rows * cols
    nxt = np.zeros((len(layouts), n, 4), np.int32)
    rew = np.full((len(layouts), n, 4), STEP_REWARD, np.float32)
    term = np.zeros((len(layouts), n), bool)
    obst = np.zeros((len(layouts), n), bool)
    for m, lay in enumerate(layouts):
        blocked = set(lay.obstacles)
        for o in blocked:
            obst[m, lay.index(o)] = True
        term[m, lay.index(lay.goal)] = True
        for r in range(rows):
            for c in range(cols):
                s = r * cols + c
                for a, (dr, dc) in enumerate(_MOVES):
                    rr, cc = r + dr, c + dc
                    if not (0 <= rr < rows and 0 <= cc < cols) or (rr, cc) in blocked:
                        rr, cc = r, c
                    s2 = rr * cols + cc
                    nxt[m, s, a] = s2
                    if (rr, cc) == lay.goal:
                        rew[m, s, a] = GOAL_REWARD
                # the goal is absorbing (never stepped from in an episode)
                if (r, c) == lay.goal:
                    nxt[m, s, :] = s
                    rew[m, s, :] = 0.0
    return Tables(nxt, rew, term, obst, layouts[0].index(layouts[0].start))


def shortest_path_q(layout: Layout, gamma: float = 1.0) -> np.ndarray:
    """q* of a layout (deterministic, -1 a step, +10 at the goal) by value iteration."""
    t = build_tables((layout,))
    nxt, rew, term = t.next_state[0], t.reward[0], t.terminal[0]
    v = np.zeros(nxt.shape[0])
    for _ in range(4 * nxt.shape[0]):
        q = rew + gamma * np.where(term[nxt], 0.0, v[nxt])
        v_new = np.where(term, 0.0, q.max(axis=1))
        if np.allclose(v_new, v):
            break
        v = v_new
    return np.where(term[:, None], 0.0, q).astype(np.float32)


def bfs_distance(layout: Layout) -> np.ndarray:
    """Steps from every cell to the goal (inf for obstacles)."""
    t = build_tables((layout,))
    n = t.next_state.shape[1]
    dist = np.full(n, np.inf)
    g = layout.index(layout.goal)
    dist[g] = 0
    dq = deque([g])
    while dq:
        s2 = dq.popleft()
        for s in range(n):
            if t.obstacle[0, s] or np.isfinite(dist[s]):
                continue
            if (t.next_state[0, s] == s2).any():
                dist[s] = dist[s2] + 1
                dq.append(s)
    return dist


# ------------------------------------------------------------------ gymnax environment


@struct.dataclass
class EnvState(environment.EnvState):
    pos: jax.Array  # flat cell index
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    maze: int = 0  # 0: original maze, 1: switched maze (traced)
    max_steps_in_episode: int = 500


class GridWorld(environment.Environment[EnvState, EnvParams]):
    """The Fig. 1 maze as a gymnax environment. Observation: the flat cell index."""

    def __init__(self, layout: Layout = Layout()):
        super().__init__()
        self.layout = layout
        t = build_tables((layout, layout.switched()))
        self._next = jnp.asarray(t.next_state)
        self._rew = jnp.asarray(t.reward)
        self._term = jnp.asarray(t.terminal)
        self._start = t.start

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        m = jnp.asarray(params.maze, jnp.int32)
        pos = self._next[m, state.pos, action]
        reward = self._rew[m, state.pos, action]
        state = EnvState(pos=pos, time=state.time + 1)
        done = self.is_terminal(state, params)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward,
                done, {"discount": self.discount(state, params)})

    def reset_env(self, key, params: EnvParams):
        state = EnvState(pos=jnp.asarray(self._start, jnp.int32), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params=None, key=None):
        return state.pos

    def is_terminated(self, state: EnvState, params: EnvParams):
        return self._term[jnp.asarray(params.maze, jnp.int32), state.pos]

    def is_terminal(self, state: EnvState, params: EnvParams):
        return jnp.logical_or(self.is_terminated(state, params), self.is_truncated(state, params))

    @property
    def name(self) -> str:
        return "GridWorld-DRA"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params=None):
        return spaces.Discrete(4)

    def observation_space(self, params: EnvParams):
        return spaces.Discrete(self.layout.rows * self.layout.cols)

    def state_space(self, params: EnvParams):
        return spaces.Dict({"pos": spaces.Discrete(self.layout.rows * self.layout.cols),
                            "time": spaces.Discrete(params.max_steps_in_episode)})


# ------------------------------------------------------------------ the lane-engine task


@dataclass(frozen=True, eq=False)
class GridTask:
    """Table-driven grid-world for :mod:`dra_jax.agent`.

    The per-run traced parameter is ``switch_episode`` (``tparams["switch_episode"]``): episodes
    with index >= it use the switched maze. Learned memories: every non-obstacle, non-goal cell
    of the original maze (4 actions each); obstacle and goal memories are never read and carry
    no cost.
    """

    layout: Layout = Layout()
    with_switch: bool = False
    tables: Tables = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "tables", build_tables((self.layout, self.layout.switched())))

    @property
    def n_states(self) -> int:
        return self.layout.rows * self.layout.cols

    n_actions = 4

    @property
    def learnable(self) -> np.ndarray:
        t = self.tables
        free = ~(t.obstacle[0] & t.obstacle[1]) & ~(t.terminal[0] & t.terminal[1])
        return np.repeat(free[:, None], 4, axis=1)

    def reset(self, u, tparams, episode):
        return jnp.asarray(self.tables.start, jnp.int32)

    def _maze(self, tparams, episode):
        if not self.with_switch:
            return jnp.int32(0)
        return (episode >= tparams["switch_episode"]).astype(jnp.int32)

    def step(self, state, action, tparams, episode):
        m = self._maze(tparams, episode)
        row = jnp.asarray(self._packed)[m, state, action]  # one gather: next, reward, terminal
        return row[0].astype(jnp.int32), row[1], row[2] > 0.5

    @property
    def _packed(self) -> np.ndarray:
        """``[m, S, A, 3]`` float32: next state, reward, whether the next state is terminal."""
        t = self.tables
        term_next = np.take_along_axis(t.terminal[:, :, None], t.next_state, axis=1)
        return np.stack([t.next_state.astype(np.float32), t.reward,
                         term_next.astype(np.float32)], axis=-1)

    def row(self, state, tparams):
        return state

    def q_star(self) -> np.ndarray:
        return shortest_path_q(self.layout)
