"""Tabular tasks for the DRA lane engine, from arrays, an ``.npz`` file or a text maze.

A :class:`TabularTask` is a deterministic finite MDP given by tables over ``S`` states and
``A`` actions: ``next_state[S, A]``, ``reward[S, A]``, ``terminal[S]`` and a start state or a
start distribution. It may have several *stages* (tables with a leading axis ``M``) that
switch at traced episode indices: stage ``m = #{j : episode >= switch_episode[j]}``, so the
paper's environment switch (Fig. 1c) happens inside compiled code and a sweep over the switch
episode never recompiles. The paper's grid-world is ``TabularTask.from_maze`` of its text
(:mod:`dra_jax.envs.gridworld`).

Text mazes: one string per row, ``S`` start (several: a uniform start distribution), ``G``
goal (terminal), ``#`` obstacle, ``.`` free; any other character is a free cell whose reward
is given in ``rewards``. Actions are up, down, left, right; a move off the grid or into an
obstacle leaves the agent in place. The reward of a move is ``rewards[c]`` for the character
``c`` of the cell the agent is in after it (default ``.`` and ``S``: -1, ``G``: +10, the
paper's). Goal cells are absorbing.

Learned memories (those that pay the KL cost, ``learnable``): the actions of every state that
is reachable from a start and not terminal, in some stage. Obstacles, unreachable cells and
goals are never read by the policy and carry no cost.

The gymnax face of any tabular task is :class:`dra_jax.envs.tabular_gymnax.TabularEnv` (a
module of its own: importing gymnax takes seconds, which the lane engine does not need).

Bad tables raise :class:`dra_jax.config.ConfigError` naming the argument (or config key) and
what is allowed, before anything is compiled.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from dra_jax.config import ConfigError

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
MAZE_ACTIONS = ("up", "down", "left", "right")
DEFAULT_REWARDS = {".": -1.0, "S": -1.0, "G": 10.0}


@dataclass(frozen=True, eq=False)
class Tables:
    """``next_state[M, S, A]`` (int32), ``reward[M, S, A]`` (float32), ``terminal[M, S]``
    (bool) for stages ``m``; ``start_probs[S]`` and ``start`` (its most probable state);
    ``obstacle[M, S]`` (mazes only, else all False)."""

    next_state: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    start_probs: np.ndarray
    obstacle: np.ndarray

    @property
    def start(self) -> int:
        return int(np.argmax(self.start_probs))


def _err(prefix: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{prefix}{key}", msg)


def check_tables(next_state, reward, terminal, start=None, start_probs=None, *,
                 key_prefix: str = "") -> Tables:
    """Validate and normalize tables (one stage ``[S, A]`` or stages ``[M, S, A]``)."""
    ns = np.asarray(next_state)
    rw = np.asarray(reward)
    te = np.asarray(terminal)
    if ns.ndim == 2:
        ns, rw = ns[None], rw[None] if rw.ndim == 2 else rw
        te = te[None] if te.ndim == 1 else te
    if ns.ndim != 3:
        raise _err(key_prefix, "next_state", f"expected an integer array [S, A] or [stages, S, A], "
                                             f"got shape {np.shape(next_state)}")
    M, S, A = ns.shape
    if S < 1 or A < 2:
        raise _err(key_prefix, "next_state", f"expected at least 1 state and 2 actions, got S={S}, A={A}")
    if not np.issubdtype(ns.dtype, np.integer):
        raise _err(key_prefix, "next_state", f"expected integers (state indices), got dtype {ns.dtype}")
    if ns.min() < 0 or ns.max() >= S:
        bad = np.argwhere((ns < 0) | (ns >= S))[0]
        raise _err(key_prefix, "next_state", f"next states must be in [0, {S - 1}]; entry "
                                             f"{tuple(int(i) for i in bad)} is {int(ns[tuple(bad)])}")
    if rw.ndim == 2:
        rw = rw[None]
    if rw.shape != (M, S, A):
        raise _err(key_prefix, "reward", f"expected shape {(S, A) if M == 1 else (M, S, A)} like "
                                         f"next_state, got {np.shape(reward)}")
    if not (np.issubdtype(rw.dtype, np.floating) or np.issubdtype(rw.dtype, np.integer)) \
            or np.issubdtype(rw.dtype, np.bool_):
        raise _err(key_prefix, "reward", f"expected numbers, got dtype {rw.dtype}")
    if not np.all(np.isfinite(rw)):
        raise _err(key_prefix, "reward", "expected finite numbers")
    if te.ndim == 1:
        te = te[None]
    if te.shape != (M, S):
        raise _err(key_prefix, "terminal", f"expected shape {(S,) if M == 1 else (M, S)}, got "
                                           f"{np.shape(terminal)}")
    if te.dtype != np.bool_:
        raise _err(key_prefix, "terminal", f"expected booleans, got dtype {te.dtype}")
    if (start is None) == (start_probs is None):
        raise _err(key_prefix, "start", "give exactly one of a start state or a start distribution")
    if start is not None:
        if isinstance(start, (bool, np.bool_)) or not isinstance(start, (int, np.integer)) \
                or not 0 <= int(start) < S:
            raise _err(key_prefix, "start", f"expected a state index in [0, {S - 1}], got {start!r}")
        probs = np.zeros(S)
        probs[int(start)] = 1.0
    else:
        probs = np.asarray(start_probs, float)
        if probs.shape != (S,) or np.any(probs < 0) or not np.isfinite(probs).all() \
                or abs(probs.sum() - 1.0) > 1e-6:
            raise _err(key_prefix, "start_probs", f"expected {S} non-negative numbers summing to 1")
    if np.any(te[0] & (probs > 0)):
        s = int(np.argmax(te[0] & (probs > 0)))
        raise _err(key_prefix, "start", f"state {s} is a start and terminal")
    return Tables(ns.astype(np.int32), rw.astype(np.float32), te, probs,
                  np.zeros((M, S), bool))


def parse_maze(maze: str | Sequence[str], *, key: str = "maze") -> list[str]:
    """Rows of a text maze (blank lines and surrounding spaces dropped); all rows equally long."""
    rows = maze.splitlines() if isinstance(maze, str) else list(maze)
    rows = [r.strip() for r in rows if r.strip()]
    if not rows:
        raise ConfigError(key, "the maze is empty")
    if len({len(r) for r in rows}) != 1:
        raise ConfigError(key, f"rows of unequal length: {[len(r) for r in rows]}")
    return rows


def maze_tables(rows: list[str], rewards: dict[str, float], *, key: str = "maze"):
    """``(next_state [S, 4], reward [S, 4], terminal [S], obstacle [S], starts)`` of one maze."""
    R, C = len(rows), len(rows[0])
    S = R * C
    cells = np.array([list(r) for r in rows])
    for ch in np.unique(cells):
        if ch not in ("#", "S", "G", ".") and ch not in rewards:
            raise ConfigError(key, f"character {ch!r} is not '#', 'S', 'G' or '.', and has no "
                                   "reward in rewards")
    obst = (cells == "#").reshape(-1)
    term = (cells == "G").reshape(-1)
    starts = np.flatnonzero((cells == "S").reshape(-1))
    nxt = np.zeros((S, 4), np.int32)
    rew = np.zeros((S, 4), np.float32)
    for r in range(R):
        for c in range(C):
            s = r * C + c
            for a, (dr, dc) in enumerate(MOVES):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < R and 0 <= cc < C) or cells[rr, cc] == "#":
                    rr, cc = r, c
                nxt[s, a] = rr * C + cc
                # ('#' only from an obstacle cell, never visited: the plain step reward)
                rew[s, a] = rewards.get(cells[rr, cc], rewards.get(".", 0.0))
            if term[s]:  # goals are absorbing (never stepped from within an episode)
                nxt[s] = s
                rew[s] = 0.0
    return nxt, rew, term, obst, starts


def _reachable(nxt: np.ndarray, term: np.ndarray, starts: np.ndarray) -> np.ndarray:
    seen = np.zeros(nxt.shape[0], bool)
    dq = deque(int(s) for s in starts)
    seen[starts] = True
    while dq:
        s = dq.popleft()
        if term[s]:
            continue
        for s2 in nxt[s]:
            if not seen[s2]:
                seen[s2] = True
                dq.append(int(s2))
    return seen


@dataclass(frozen=True, eq=False)
class TabularTask:
    """A deterministic tabular task for the lane engine (the :class:`dra_jax.Task` protocol).

    Build it with :meth:`from_arrays`, :meth:`from_npz` or :meth:`from_maze`. Per-run traced
    parameter (several stages only): ``tparams["switch_episode"]``, the episode index (scalar,
    or one per switch) from which the next stage's tables apply.

    Example::

        >>> from dra_jax.envs.tabular import TabularTask
        >>> task = TabularTask.from_maze(["S..", ".#.", "..G"])
        >>> task.n_states, task.n_actions, int(task.learnable.sum())
        (9, 4, 28)
    """

    tables: Tables
    maze: tuple[tuple[str, ...], ...] | None = None  # the text of each stage, when built from one
    name: str = "tabular"
    _packed: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        t = self.tables
        term_next = np.take_along_axis(t.terminal[:, :, None], t.next_state, axis=1)
        # one gather a step: next state, reward, whether the next state is terminal
        packed = np.stack([t.next_state.astype(np.float32), t.reward,
                           term_next.astype(np.float32)], axis=-1)
        object.__setattr__(self, "_packed", packed)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_arrays(cls, next_state, reward, terminal, start=None, start_probs=None,
                    name: str = "tabular") -> "TabularTask":
        """From tables ``next_state[S, A]``, ``reward[S, A]``, ``terminal[S]`` (or with a
        leading stage axis) and ``start`` (a state) or ``start_probs[S]``."""
        return cls(check_tables(next_state, reward, terminal, start, start_probs), name=name)

    @classmethod
    def from_npz(cls, path: str | Path, *, key: str = "npz") -> "TabularTask":
        """From an ``.npz`` file with arrays ``next_state``, ``reward``, ``terminal`` and
        ``start`` (a 0-d integer) or ``start_probs``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(key, f"no such file: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:
            raise ConfigError(key, f"{path} is not a readable .npz file ({e})") from None
        missing = [k for k in ("next_state", "reward", "terminal") if k not in arrays]
        if missing:
            raise ConfigError(key, f"{path} lacks array(s) {', '.join(missing)}")
        extra = set(arrays) - {"next_state", "reward", "terminal", "start", "start_probs"}
        if extra:
            raise ConfigError(key, f"{path} has unknown array(s) {', '.join(sorted(extra))}")
        start = arrays.get("start")
        if start is not None:
            if start.ndim != 0 or not np.issubdtype(start.dtype, np.integer):
                raise ConfigError(f"{key}:start", "expected a 0-d integer array")
            start = int(start)
        return cls(check_tables(arrays["next_state"], arrays["reward"], arrays["terminal"], start,
                                arrays.get("start_probs"), key_prefix=f"{key}:"), name=path.stem)

    @classmethod
    def from_maze(cls, maze: str | Sequence[str], *stages: str | Sequence[str],
                  rewards: dict[str, float] | None = None, name: str = "maze",
                  key: str = "maze") -> "TabularTask":
        """From a text maze (``S``, ``G``, ``#``, ``.``; see the module docstring); further
        mazes of the same size are later stages (all with the first maze's start cells)."""
        rw = dict(DEFAULT_REWARDS)
        rw.update(rewards or {})
        texts = [parse_maze(maze, key=key)] + [parse_maze(m, key=f"{key}[{i + 1}]")
                                                for i, m in enumerate(stages)]
        shape = (len(texts[0]), len(texts[0][0]))
        built = []
        for i, rows in enumerate(texts):
            k = key if i == 0 else f"{key}[{i}]"
            if (len(rows), len(rows[0])) != shape:
                raise ConfigError(k, f"{len(rows)} x {len(rows[0])} maze, expected {shape[0]} x "
                                     f"{shape[1]} like the first")
            built.append(maze_tables(rows, rw, key=k))
        starts = built[0][4]
        if len(starts) == 0:
            raise ConfigError(key, "no start cell 'S'")
        for i, b in enumerate(built[1:], 1):
            if not np.array_equal(b[4], starts):
                raise ConfigError(f"{key}[{i}]", "start cells 'S' differ from the first maze's")
        if not built[0][2].any():
            raise ConfigError(key, "no goal cell 'G'")
        probs = np.zeros(shape[0] * shape[1])
        probs[starts] = 1.0 / len(starts)
        t = Tables(np.stack([b[0] for b in built]), np.stack([b[1] for b in built]),
                   np.stack([b[2] for b in built]), probs, np.stack([b[3] for b in built]))
        return cls(t, maze=tuple(tuple(r) for r in texts), name=name)

    # ---------------------------------------------------------------- the Task protocol

    @property
    def n_states(self) -> int:
        return int(self.tables.next_state.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.tables.next_state.shape[2])

    @property
    def n_stages(self) -> int:
        return int(self.tables.next_state.shape[0])

    @property
    def grid_shape(self) -> tuple[int, int] | None:
        """``(rows, cols)`` of a maze-built task, else None."""
        return None if self.maze is None else (len(self.maze[0]), len(self.maze[0][0]))

    @property
    def learnable(self) -> np.ndarray:
        t = self.tables
        starts = np.flatnonzero(t.start_probs > 0)
        free = np.zeros(self.n_states, bool)
        for m in range(self.n_stages):
            free |= _reachable(t.next_state[m], t.terminal[m], starts) & ~t.terminal[m]
        return np.repeat(free[:, None], self.n_actions, axis=1)

    def reset(self, u, tparams, episode):
        probs = self.tables.start_probs
        if np.count_nonzero(probs) == 1:
            return jnp.asarray(self.tables.start, jnp.int32)
        cdf = jnp.asarray(np.cumsum(probs)[:-1], jnp.float32)
        return jnp.sum(jnp.asarray(u, jnp.float32) >= cdf).astype(jnp.int32)

    def stage(self, tparams, episode):
        """The stage index of an episode (0 for a one-stage task)."""
        if self.n_stages == 1:
            return jnp.int32(0)
        se = jnp.atleast_1d(jnp.asarray(tparams["switch_episode"]))
        return jnp.sum(episode >= se).astype(jnp.int32)

    def step(self, state, action, tparams, episode):
        m = self.stage(tparams, episode)
        row = jnp.asarray(self._packed)[m, state, action]
        return row[0].astype(jnp.int32), row[1], row[2] > 0.5

    def row(self, state, tparams):
        return state

    def q_star(self, gamma: float = 1.0, stage: int = 0) -> np.ndarray:
        """q* of one stage by value iteration (terminal memories 0). Raises if it does not
        converge in ``4 S`` sweeps (e.g. gamma = 1 with a reachable loop of positive reward)."""
        t = self.tables
        nxt, rew, term = t.next_state[stage], t.reward[stage], t.terminal[stage]
        v = np.zeros(nxt.shape[0])
        for _ in range(4 * nxt.shape[0]):
            q = rew + gamma * np.where(term[nxt], 0.0, v[nxt])
            v_new = np.where(term, 0.0, q.max(axis=1))
            if np.allclose(v_new, v):
                break
            v = v_new
        else:
            raise ValueError(f"value iteration of {self.name!r} did not converge in "
                             f"{4 * nxt.shape[0]} sweeps (gamma {gamma})")
        return np.where(term[:, None], 0.0, q).astype(np.float32)

    def distance_to_goal(self, stage: int = 0) -> np.ndarray:
        """Fewest steps from each state to a terminal state (inf where none is reachable)."""
        t = self.tables
        nxt, term = t.next_state[stage], t.terminal[stage]
        dist = np.where(term, 0.0, np.inf)
        dq = deque(np.flatnonzero(term).tolist())
        while dq:
            s2 = dq.popleft()
            for s in np.flatnonzero((nxt == s2).any(axis=1)):
                if not np.isfinite(dist[s]) and not t.obstacle[stage, s]:
                    dist[s] = dist[s2] + 1
                    dq.append(int(s))
        return dist
