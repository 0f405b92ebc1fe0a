"""Any gymnax environment with a Box observation and Discrete actions as a DRA lane task.

:class:`DiscretizedTask` wraps a gymnax ``Environment`` (by id through ``gymnax.make``, or an
instance) in the lane-task interface of the engine (:mod:`dra_jax.lane.agent`): ``n_states``,
``n_actions``, ``learnable``, ``reset``, ``step``, ``row``. The dynamics are gymnax's own
``step_env``; this module only adds what a tabular agent needs:

* **memory row** (Sec. 3.2 of Patel et al. 2020 for mountain car, generalized): per
  observation dimension ``d`` the cell index ``i_d = clip(round((obs_d - low_d) * scale_d), 0,
  cells_d - 1)``, with ``scale_d = (cells_d - 1) / (high_d - low_d)`` unless given (mountain car's
  ``scale = (10, 100)`` is the same formula); the row is the row-major index of
  ``(i_0, i_1, ...)`` (``i_0 * cells_1 + i_1`` for two dimensions), so a vector over rows
  reshapes to ``cells``. Bounds come from the environment's observation space where it is
  finite and must be given where it is not (CartPole's velocities);
* **termination vs truncation** (gymnax 1.0): ``terminated`` is the environment's own
  termination (``is_terminated``; for an environment without it, ``is_terminal`` evaluated at
  ``time = 0``, i.e. without the time limit). gymnax's episode limit is a *truncation*: it is
  not applied here; the engine truncates every rollout at ``dra.max_steps`` and bootstraps there;
* **reset** from the engine's uniform ``u``: a PRNG key is derived from ``u``'s 32 bits and
  gymnax's ``reset_env`` draws the start (gym's random start); ``start`` replaces it by fixed
  values of state fields (``{"position": -0.5, "velocity": 0.0}``: mountain car's paper start)
  or by a function ``start(u, tparams, episode) -> env state``;
* **stochastic dynamics**: if ``step_env`` uses its key (detected from its jaxpr, or
  ``stochastic=True``), the task's state is ``(env_state, key)``: the key is seeded at reset from
  ``u`` and split at every step (the engine passes no key to ``step``).

There is no tabular q* for a discretized continuous task: :meth:`DiscretizedTask.q_star` raises.
Bad arguments raise :class:`dra_jax.config.ConfigError` naming the argument, before anything is
compiled (:func:`check_args`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment as gx_env
from gymnax.environments import spaces

from dra_jax.config import ConfigError

UNBOUNDED = 1e30  # a space bound at or beyond this (gymnax writes float32's max) is no bound
EXAMPLE_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")


# ------------------------------------------------------------------ checks (before any compile)


def _make_env(env, env_params, key: str):
    """``(env, params, name)`` from an id or an instance; ConfigError naming ``key`` if unknown."""
    if isinstance(env, str):
        if env not in gymnax.registered_envs:
            raise ConfigError(key, f"unknown gymnax environment {env!r}; expected an id with a Box "
                              f"observation and Discrete actions, e.g. {', '.join(map(repr, EXAMPLE_IDS))} "
                              f"(all gymnax ids: {', '.join(gymnax.registered_envs)})")
        inst, default = gymnax.make(env)
        return inst, env_params if env_params is not None else default, env
    if not isinstance(env, gx_env.Environment):
        raise ConfigError(key, f"expected a gymnax environment id (a string) or a "
                          f"gymnax.environments.environment.Environment, got {type(env).__name__}")
    return env, env_params if env_params is not None else env.default_params, env.name


def _per_dim(key: str, values, n: int, allow_none: bool) -> list | None:
    if values is None:
        return None
    values = list(np.atleast_1d(np.asarray(values, object)))
    if len(values) != n:
        raise ConfigError(key, f"expected one value per observation dimension ({n}), got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if v is None and allow_none:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            raise ConfigError(f"{key}[{i}]", f"expected a finite number, got {v!r}")
        out.append(float(v))
    return out


def check_args(env, cells, low=None, high=None, scale=None, start=None, env_params=None, *,
               prefix: str = "", env_key: str = "env") -> dict:
    """Check a :class:`DiscretizedTask`'s arguments and resolve them (no compile). Returns
    ``{"env", "params", "name", "cells", "low", "high", "scale", "start"}`` (bounds and scale as
    float32 arrays). Raises ConfigError naming ``prefix + argument`` (``env_key`` for the env)."""
    inst, params, name = _make_env(env, env_params, prefix + env_key)
    obs_space = inst.observation_space(params)
    act_space = inst.action_space(params)
    if not isinstance(act_space, spaces.Discrete):
        raise ConfigError(prefix + env_key, f"{name} has a {type(act_space).__name__} action space; "
                          "a DiscretizedTask needs Discrete actions")
    if not isinstance(obs_space, spaces.Box):
        raise ConfigError(prefix + env_key, f"{name} has a {type(obs_space).__name__} observation "
                          "space; a DiscretizedTask needs a Box")
    n = int(np.prod(obs_space.shape))
    space_lo = np.broadcast_to(np.asarray(obs_space.low, np.float64), obs_space.shape).reshape(-1)
    space_hi = np.broadcast_to(np.asarray(obs_space.high, np.float64), obs_space.shape).reshape(-1)

    cells_l = list(np.atleast_1d(np.asarray(cells, object))) if cells is not None else []
    if len(cells_l) != n:
        raise ConfigError(prefix + "cells", f"expected one cell count per observation dimension "
                          f"of {name} ({n}), got {len(cells_l)}")
    for i, c in enumerate(cells_l):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise ConfigError(f"{prefix}cells[{i}]", f"expected an integer >= 1, got {c!r}")
    cells_t = tuple(int(c) for c in cells_l)
    if math.prod(cells_t) * act_space.n >= 2**31:
        raise ConfigError(prefix + "cells", f"{' x '.join(map(str, cells_t))} cells x "
                          f"{act_space.n} actions is too large a memory table (>= 2**31 entries)")

    bounds = {}
    for bname, given, space in (("low", low, space_lo), ("high", high, space_hi)):
        vals = _per_dim(prefix + bname, given, n, allow_none=True) or [None] * n
        out = np.empty(n, np.float64)
        for d, v in enumerate(vals):
            if v is None:
                s = space[d]
                if not np.isfinite(s) or abs(s) >= UNBOUNDED:
                    raise ConfigError(prefix + bname, f"observation dimension {d} of {name} is "
                                      f"unbounded in its observation space ({bname} {s:g}): give "
                                      f"{bname} for every dimension")
                out[d] = s
            else:
                out[d] = v
        bounds[bname] = out
    for d in range(n):
        if not bounds["high"][d] > bounds["low"][d]:
            raise ConfigError(prefix + "high", f"dimension {d}: high ({bounds['high'][d]:g}) must "
                              f"be > low ({bounds['low'][d]:g})")
    sc = _per_dim(prefix + "scale", scale, n, allow_none=False)
    if sc is None:
        sc = [(c - 1) / (h - lo) for c, lo, h in zip(cells_t, bounds["low"], bounds["high"])]
    elif any(s <= 0 for s in sc):
        i = next(i for i, s in enumerate(sc) if s <= 0)
        raise ConfigError(f"{prefix}scale[{i}]", f"expected a number > 0, got {sc[i]!r}")

    fields = state_fields(inst, params)
    if start is not None and not callable(start):
        if not isinstance(start, Mapping):
            raise ConfigError(prefix + "start", "expected None, a mapping of state field -> value "
                              "or a function start(u, tparams, episode) -> env state")
        for f, v in start.items():
            if f not in fields:
                raise ConfigError(prefix + "start", f"{name}'s state has no scalar field {f!r}; "
                                  f"fields: {', '.join(fields)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{prefix}start.{f}", f"expected a finite number, got {v!r}")
        start = tuple((f, float(v)) for f, v in start.items())
    return {"env": inst, "params": params, "name": name, "cells": cells_t,
            "low": bounds["low"].astype(np.float32), "high": bounds["high"].astype(np.float32),
            "scale": np.asarray(sc, np.float32), "start": start}


def state_fields(env, params) -> tuple[str, ...]:
    """The scalar fields of the env's state other than ``time`` (what a fixed start may set)."""
    _, st = jax.eval_shape(lambda k: env.reset_env(k, params), jax.random.key(0))
    return tuple(f for f in st.__dataclass_fields__ if f != "time" and np.ndim(getattr(st, f)) == 0)


def _uses_key(env, params, state) -> bool:
    """Whether ``step_env`` reads its key (then the dynamics are stochastic)."""
    closed = jax.make_jaxpr(lambda k, s: env.step_env(k, s, jnp.int32(0), params))(
        jax.random.key(0), state)
    kvar = closed.jaxpr.invars[0]
    return any(x is kvar for e in closed.jaxpr.eqns for x in e.invars) or \
        any(x is kvar for x in closed.jaxpr.outvars)


# ------------------------------------------------------------------ the task


@dataclass(frozen=True, eq=False)
class DiscretizedTask:
    """A gymnax environment (Box observation, Discrete actions) as a DRA lane task.

    ``env``: a gymnax id (``gymnax.make``) or an ``Environment`` instance; ``cells``: cells per
    observation dimension; ``low`` / ``high``: discretizer bounds per dimension (``None`` or a
    ``None`` entry: the observation space's bound, which must then be finite); ``scale``: cells per
    unit per dimension (default ``(cells - 1) / (high - low)``); ``start``: ``None`` (gymnax's
    ``reset_env`` from a key derived from the engine's uniform ``u``), a mapping of state fields
    to fixed values (applied over ``reset_env``'s state), or ``start(u, tparams, episode) -> env
    state``; ``env_params``: the env's ``EnvParams`` (default its ``default_params``);
    ``stochastic``: keep and split a PRNG key for ``step_env`` (default: detected).

    Hashable by identity (a static argument of the engine's jit). Every memory is learned.

    Example::

        task = DiscretizedTask("CartPole-v1", cells=(3, 3, 8, 6), low=(-2.4, -3, -0.21, -3.5),
                               high=(2.4, 3, 0.21, 3.5))
    """

    env: Any
    cells: tuple[int, ...]
    low: Any = None
    high: Any = None
    scale: Any = None
    start: Any = None
    env_params: Any = field(default=None, repr=False)
    stochastic: bool | None = None

    def __post_init__(self):
        r = check_args(self.env, self.cells, self.low, self.high, self.scale, self.start,
                       self.env_params)
        env, params = r["env"], r["params"]
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("env", env)
        set_("env_params", params)
        set_("env_id", r["name"])
        set_("cells", r["cells"])
        set_("start", r["start"])
        set_("obs_low", r["low"])
        set_("obs_high", r["high"])
        set_("obs_scale", r["scale"])
        set_("obs_shape", tuple(env.observation_space(params).shape))
        set_("n_actions", int(env.action_space(params).n))
        # canonical dtypes of the env state: those step_env returns (reset is cast to them)
        _, st0 = jax.eval_shape(lambda k: env.reset_env(k, params), jax.random.key(0))
        st0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(x.dtype)), st0)
        st1 = jax.eval_shape(lambda k, s: env.step_env(k, s, jnp.int32(0), params)[1],
                             jax.random.key(0), st0)
        set_("_dtypes", jax.tree.map(lambda x: jnp.dtype(x.dtype), st1))
        if self.stochastic is None:
            set_("stochastic", bool(_uses_key(env, params, st0)))
        own = type(env).is_terminated is not gx_env.Environment.is_terminated
        set_("_own_terminated", own)
        set_("_own_obs", type(env).get_obs is not gx_env.Environment.get_obs)

    # ---------------------------------------------------------------- the lane-task interface

    @property
    def n_states(self) -> int:
        return math.prod(self.cells)

    @property
    def learnable(self) -> np.ndarray:
        return np.ones((self.n_states, self.n_actions), bool)

    def _canon(self, env_state):
        return jax.tree.map(lambda x, d: jnp.asarray(x, d), env_state, self._dtypes)

    def env_state(self, state):
        """The gymnax state inside a task state (which adds a key for stochastic dynamics)."""
        return state[0] if self.stochastic else state

    def reset(self, u, tparams, episode):
        """Start state from the engine's uniform ``u`` (see the module docstring)."""
        u = jnp.asarray(u, jnp.float32)
        key = jax.random.PRNGKey(jax.lax.bitcast_convert_type(u, jnp.uint32))
        k_reset, k_step = jax.random.split(key) if self.stochastic else (key, None)
        if callable(self.start):
            st = self.start(u, tparams, episode)
        else:
            _, st = self.env.reset_env(k_reset, self.env_params)
            if self.start:
                st = st.replace(**{f: jnp.asarray(v, getattr(self._dtypes, f))
                                   for f, v in self.start})
        st = self._canon(st)
        return (st, k_step) if self.stochastic else st

    def step(self, state, action, tparams, episode):
        """gymnax's ``step_env``; ``terminated`` = the env's own termination, never its time limit."""
        if self.stochastic:
            st, key = state
            key, sub = jax.random.split(key)
        else:
            st, sub = state, jax.random.key(0)  # step_env draws nothing from it
        _, st2, reward, _, _ = self.env.step_env(sub, st, action, self.env_params)
        st2 = self._canon(st2)
        if self._own_terminated:
            term = self.env.is_terminated(st2, self.env_params)
        else:  # legacy envs: is_terminal includes the time limit; evaluate it at time 0
            term = self.env.is_terminal(st2.replace(time=jnp.zeros_like(st2.time)), self.env_params)
        out = (st2, key) if self.stochastic else st2
        return out, jnp.asarray(reward, jnp.float32), jnp.asarray(term, bool)

    def row(self, state, tparams) -> jax.Array:
        return self.discretize(self.observe(state))

    def q_star(self) -> np.ndarray:
        raise NotImplementedError(
            f"{self.env_id} has no tabular optimal q (the state is continuous, discretized only "
            "for the memory table): q_init = 'optimal' is not available for this task")

    # ---------------------------------------------------------------- the discretizer

    def observe(self, state) -> jax.Array:
        """The flat float32 observation of a task state."""
        st = self.env_state(state)
        if self._own_obs:
            obs = self.env.get_obs(st, self.env_params)
        else:
            obs = self.env.observe(jax.random.key(0), st, None, self.env_params)
        return jnp.asarray(obs, jnp.float32).reshape(-1)

    def cell_index(self, obs) -> jax.Array:
        """``[..., D]`` observations -> ``[..., D]`` int32 cell indices,
        ``clip(round((obs - low) * scale), 0, cells - 1)``."""
        idx = jnp.round((jnp.asarray(obs, jnp.float32) - self.obs_low) * jnp.asarray(self.obs_scale))
        return jnp.clip(idx, 0, jnp.asarray(self.cells) - 1).astype(jnp.int32)

    def discretize(self, obs) -> jax.Array:
        """``[..., D]`` observations -> memory rows (row-major over ``cells``)."""
        idx = self.cell_index(obs)
        row = idx[..., 0]
        for d in range(1, len(self.cells)):
            row = row * self.cells[d] + idx[..., d]
        return row

    def cell_centers(self) -> tuple[np.ndarray, ...]:
        """Observation value at the centre of each cell, per dimension (for plots)."""
        return tuple(self.obs_low[d] + np.arange(c) / self.obs_scale[d] if self.obs_scale[d] > 0
                     else np.full(c, self.obs_low[d]) for d, c in enumerate(self.cells))

    def cell_edges(self) -> tuple[np.ndarray, ...]:
        """Cell edges per dimension: cell i covers ``low + (i -+ 0.5) / scale``."""
        return tuple(self.obs_low[d] + (np.arange(c + 1) - 0.5) / self.obs_scale[d]
                     for d, c in enumerate(self.cells))

    # ---------------------------------------------------------------- rollouts (pure JAX)

    def greedy_rollout(self, q, max_steps: int, state0):
        """Act greedily on the means ``q [S, A]`` from the task state ``state0`` for at most
        ``max_steps`` steps. Returns ``(path [max_steps + 1, D] observations, reached, steps)``
        (``reached``: terminated; after it the path repeats the final state). ``vmap`` it over runs."""
        def body(carry, _):
            st, done, n = carry
            a = jnp.argmax(q[self.row(st, {})]).astype(jnp.int32)
            st2, _, term = self.step(st, a, {}, 0)
            st = jax.tree.map(lambda new, old: jnp.where(done, old, new), st2, st)
            n = n + (~done).astype(jnp.int32)
            done = done | term
            return (st, done, n), self.observe(st)

        (_, reached, steps), path = jax.lax.scan(body, (state0, jnp.bool_(False), jnp.int32(0)),
                                                 None, length=max_steps)
        path = jnp.concatenate([self.observe(state0)[None], path], axis=0)
        return path, reached, steps

    def random_policy_returns(self, key, n: int, max_steps: int, tparams: Mapping | None = None):
        """Undiscounted returns ``[n]`` of the uniformly random policy from ``reset``, each
        rollout cut at ``max_steps`` steps (the yardstick a learned policy is compared with)."""
        tparams = {} if tparams is None else tparams

        def one(k):
            ku, ka = jax.random.split(k)
            st0 = self.reset(jax.random.uniform(ku), tparams, 0)
            acts = jax.random.randint(ka, (max_steps,), 0, self.n_actions)

            def body(carry, a):
                st, done, ret = carry
                st2, r, term = self.step(st, a, tparams, 0)
                ret = ret + jnp.where(done, 0.0, r)
                st = jax.tree.map(lambda new, old: jnp.where(done, old, new), st2, st)
                return (st, done | term, ret), None

            (_, _, ret), _ = jax.lax.scan(body, (st0, jnp.bool_(False), jnp.float32(0.0)), acts)
            return ret

        return jax.vmap(one)(jax.random.split(key, n))

