"""Mountain car (Sec. 3.2, Fig. 2) for the DRA lane engine, on top of gymnax's ``MountainCar-v0``.

The car is moved by gymnax's own ``MountainCar.step_env`` (no physics here); this module only
adds what the tabular agent needs:

* **start**: ``x = -0.5, v = 0`` as in the paper, or gym's random start ``x ~ U[-0.6, -0.4)``
  (``tparams["random_start"]``, traced), drawn from the uniform ``u`` the engine passes to
  :meth:`MountainCarTask.reset` (the same distribution as gymnax's ``reset_env``);
* **termination**: reaching the flag (gymnax's ``is_terminated``: ``x >= 0.5`` and ``v >= 0``).
  gymnax's 200-step limit is a *truncation*: the ``done`` of ``step_env`` (which includes it) is
  not used; the engine truncates at ``max_steps`` and bootstraps there (DESIGN.md, STYLE.md 5);
* **memory row**: the observation ``(x, v)`` discretized per dimension as
  ``clip(round((obs - low) * scale), 0, cells - 1)`` with ``low = (-1.2, -0.07)``; with the
  paper's ``scale = (10, 100)`` that is 19 x 15 cells, row ``= i_x * cells_v + i_v``, so a
  vector over rows reshapes to ``[cells_x, cells_v]`` (position first).

There is no tabular q* for a discretized continuous task, so :meth:`MountainCarTask.q_star`
raises.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control.mountain_car import EnvParams, EnvState, MountainCar

PAPER_START = -0.5  # x at the start of every episode (Sec. 3.2); v = 0
RANDOM_START = (-0.6, -0.4)  # gym's (and gymnax's reset_env's) start interval


def obs_bounds(params: EnvParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of gymnax's observation ``(x, v)`` as float32 arrays."""
    params = params or EnvParams()
    return (np.array([params.min_position, -params.max_speed], np.float32),
            np.array([params.max_position, params.max_speed], np.float32))


def cells_for(scale, params: EnvParams | None = None) -> tuple[int, ...]:
    """Cells per dimension that ``round((obs - low) * scale)`` spans: ``round((high - low) * scale) + 1``."""
    low, high = obs_bounds(params)
    return tuple(int(np.round((h - lo) * s)) + 1 for lo, h, s in zip(low, high, scale))


@dataclass(frozen=True, eq=False)
class MountainCarTask:
    """gymnax ``MountainCar-v0`` as a lane task (the ``GridTask`` interface of
    :mod:`dra_jax.envs.gridworld`): ``reset``, ``step``, ``row``, ``learnable``.

    ``cells`` and ``scale`` are static (they size the memory table); the start is chosen per run
    by the traced ``tparams["random_start"]``. Every memory is learned and costs (the paper's
    19 x 15 x 3 table).
    """

    cells: tuple[int, int] = (19, 15)
    scale: tuple[float, float] = (10.0, 100.0)
    env: MountainCar = field(default_factory=MountainCar, repr=False)
    params: EnvParams = field(default_factory=EnvParams, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple(int(c) for c in self.cells))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        if len(self.cells) != 2 or len(self.scale) != 2:
            raise ValueError("cells and scale need one entry per observation dimension (x, v)")

    # ---------------------------------------------------------------- the lane-task interface

    @property
    def n_states(self) -> int:
        return self.cells[0] * self.cells[1]

    n_actions = 3  # push left, no push, push right

    @property
    def learnable(self) -> np.ndarray:
        return np.ones((self.n_states, self.n_actions), bool)

    def reset(self, u, tparams, episode) -> EnvState:
        """Start state: ``x = -0.5`` or, with ``tparams["random_start"]``, ``x = -0.6 + 0.2 u``; v = 0."""
        lo, hi = RANDOM_START
        x_rand = lo + (hi - lo) * jnp.asarray(u, jnp.float32)
        rand = jnp.asarray(tparams.get("random_start", False), bool)
        x = jnp.where(rand, x_rand, jnp.float32(PAPER_START)).astype(jnp.float32)
        return EnvState(position=x, velocity=jnp.float32(0.0), time=jnp.int32(0))

    def step(self, state: EnvState, action, tparams, episode):
        """gymnax's ``step_env``; ``terminated`` = reached the flag (never the time limit)."""
        _, state2, reward, _, _ = self.env.step_env(_key(), state, action, self.params)
        terminated = self.env.is_terminated(state2, self.params)
        return state2, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool)

    def row(self, state: EnvState, tparams) -> jax.Array:
        return self.discretize(self.env.get_obs(state))

    def q_star(self) -> np.ndarray:
        raise NotImplementedError(
            "mountain car has no tabular optimal q (the state is continuous, discretized only "
            "for the memory table): q_init = 'optimal' is not available for this task")

    # ---------------------------------------------------------------- the discretizer

    def cell_index(self, obs) -> jax.Array:
        """``[..., 2]`` observations -> ``[..., 2]`` int32 cell indices, clipped into range."""
        low, _ = obs_bounds(self.params)
        idx = jnp.round((jnp.asarray(obs, jnp.float32) - low) * jnp.asarray(self.scale, jnp.float32))
        return jnp.clip(idx, 0, jnp.asarray(self.cells) - 1).astype(jnp.int32)

    def discretize(self, obs) -> jax.Array:
        """``[..., 2]`` observations -> memory rows ``i_x * cells_v + i_v``."""
        idx = self.cell_index(obs)
        return idx[..., 0] * self.cells[1] + idx[..., 1]

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Observation value at the centre of each cell, per dimension (for plots)."""
        low, _ = obs_bounds(self.params)
        return tuple(low[d] + np.arange(self.cells[d]) / self.scale[d] for d in range(2))

    # ---------------------------------------------------------------- greedy rollout

    def greedy_rollout(self, q, max_steps: int, start_x: float = PAPER_START):
        """Act greedily on the means ``q [S, A]`` from ``(start_x, 0)`` with gymnax for at most
        ``max_steps`` steps. Returns ``(path [max_steps + 1, 2], reached, steps)``; after the
        flag the path repeats the final state. Pure JAX: ``vmap`` it over runs."""
        s0 = EnvState(position=jnp.float32(start_x), velocity=jnp.float32(0.0), time=jnp.int32(0))

        def body(carry, _):
            st, done, n = carry
            a = jnp.argmax(q[self.row(st, {})]).astype(jnp.int32)
            st2, _, term = self.step(st, a, {}, 0)
            st = jax.tree.map(lambda new, old: jnp.where(done, old, new), st2, st)
            n = n + (~done).astype(jnp.int32)
            done = done | term
            return (st, done, n), self.env.get_obs(st)

        (_, reached, steps), path = jax.lax.scan(body, (s0, jnp.bool_(False), jnp.int32(0)),
                                                 None, length=max_steps)
        path = jnp.concatenate([self.env.get_obs(s0)[None], path], axis=0)
        return path, reached, steps


def _key():
    """MountainCar.step_env takes a key but draws nothing from it."""
    return jax.random.key(0)
