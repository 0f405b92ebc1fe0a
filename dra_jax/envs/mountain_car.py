"""Mountain car (Sec. 3.2, Fig. 2): gymnax's ``MountainCar-v0`` as a :class:`DiscretizedTask`.

Everything generic (gymnax's ``step_env`` for the dynamics, termination = reaching the flag,
gymnax's 200-step limit a truncation left to the engine, the memory row
``clip(round((obs - low) * scale), 0, cells - 1)``) is :mod:`dra_jax.envs.discretized`. This
module only fixes the paper's choices:

* **discretizer**: ``low = (-1.2, -0.07)`` (the observation space's), ``scale = (10, 100)``:
  19 x 15 cells, row ``= i_x * cells_v + i_v`` (a vector over rows reshapes to
  ``[cells_x, cells_v]``, position first);
* **start**: ``x = -0.5, v = 0`` as in the paper, or gym's random start ``x ~ U[-0.6, -0.4)``
  (``tparams["random_start"]``, traced), drawn from the engine's uniform ``u`` as
  ``-0.6 + 0.2 u`` (the distribution of gymnax's ``reset_env``).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control.mountain_car import EnvParams, EnvState

from dra_jax.envs.discretized import DiscretizedTask

ENV_ID = "MountainCar-v0"
PAPER_START = -0.5  # x at the start of every episode (Sec. 3.2); v = 0
RANDOM_START = (-0.6, -0.4)  # gym's (and gymnax's reset_env's) start interval
PAPER_SCALE = (10.0, 100.0)


def obs_bounds(params: EnvParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of gymnax's observation ``(x, v)`` as float32 arrays."""
    params = params or EnvParams()
    return (np.array([params.min_position, -params.max_speed], np.float32),
            np.array([params.max_position, params.max_speed], np.float32))


def cells_for(scale, params: EnvParams | None = None) -> tuple[int, ...]:
    """Cells per dimension that ``round((obs - low) * scale)`` spans: ``round((high - low) * scale) + 1``."""
    low, high = obs_bounds(params)
    return tuple(int(np.round((h - lo) * s)) + 1 for lo, h, s in zip(low, high, scale))


def paper_or_random_start(u, tparams, episode) -> EnvState:
    """Start state: ``x = -0.5`` or, with ``tparams["random_start"]``, ``x = -0.6 + 0.2 u``; v = 0."""
    lo, hi = RANDOM_START
    x_rand = lo + (hi - lo) * jnp.asarray(u, jnp.float32)
    rand = jnp.asarray(tparams.get("random_start", False), bool)
    x = jnp.where(rand, x_rand, jnp.float32(PAPER_START)).astype(jnp.float32)
    return EnvState(position=x, velocity=jnp.float32(0.0), time=jnp.int32(0))


def paper_start_state() -> EnvState:
    """The paper's start ``(x, v) = (-0.5, 0)`` as a gymnax state."""
    return EnvState(position=jnp.float32(PAPER_START), velocity=jnp.float32(0.0), time=jnp.int32(0))


def MountainCarTask(cells=(19, 15), scale=PAPER_SCALE) -> DiscretizedTask:
    """The paper's mountain car: ``DiscretizedTask("MountainCar-v0", cells, scale=scale)`` with the
    paper's (or gym's random) start. ``cells`` must be what ``scale`` spans (:func:`cells_for`)
    for the bounds to be the observation space's; the index is clipped into range either way."""
    cells = tuple(int(c) for c in cells)
    scale = tuple(float(s) for s in scale)
    if len(cells) != 2 or len(scale) != 2:
        raise ValueError("cells and scale need one entry per observation dimension (x, v)")
    return DiscretizedTask(ENV_ID, cells, scale=scale, start=paper_or_random_start,
                           stochastic=False)
