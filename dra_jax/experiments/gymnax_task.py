"""Task ``gymnax``: DRA on any gymnax environment with a Box observation and Discrete actions,
through :class:`dra_jax.envs.discretized.DiscretizedTask` (e.g. ``configs/cartpole.toml``).

Config:

* ``[task_params]`` (all static: they size the memory table or shape the program):
  ``env_id`` (a gymnax id, ``gymnax.make``), ``cells`` (one count per observation dimension),
  ``low`` / ``high`` (discretizer bounds, one per dimension; ``[]`` = the observation space's,
  which must then be finite: CartPole's velocities are not), ``scale`` (``[]`` = ``(cells - 1) /
  (high - low)``), ``start_state`` (``[]`` = gymnax's random start ``reset_env``; else a fixed
  start, one value per scalar field of the env's state other than ``time``, in the state's order:
  ``[-0.5, 0.0]`` is mountain car's paper start ``position, velocity``);
* ``[dra]``: defaults below; ``max_steps`` (default 500: CartPole-v1's and Acrobot-v1's episode
  limit) is the truncation, which bootstraps; ``q_init = "optimal"`` is rejected (no tabular q*).

Every bad value is a ConfigError naming its key, raised while the config is validated (before
anything compiles): an unknown id, a non-Box observation or non-Discrete action space, list
lengths that are not the observation's dimension, cells < 1, an unbounded dimension without
bounds, high <= low, unknown start fields.

Runs go through the lane engine unchanged (:func:`dra_jax.experiments.tabular.run_lane_sweep`). The summary
adds the uniformly random policy's mean return (same start, same ``max_steps``) as the yardstick
of the learning curves. Figures: the shared ``convergence`` and ``baselines`` (objective and
expected reward against episodes, one curve per variant: the learning curves).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.envs.discretized import DiscretizedTask, check_args, state_fields
from dra_jax.experiments.tabular import run_lane_sweep
from dra_jax.figures import lane as plots

TASK_PARAMS = {
    "env_id": Field(str, "CartPole-v1", "gymnax environment id (Box observation, Discrete "
                    "actions), made with gymnax.make", static=True, sweepable=False),
    "cells": Field(list, [], "cells per observation dimension (required)", item_kind=int, lo=1,
                   static=True, sweepable=False),
    "low": Field(list, [], "lower discretizer bound per observation dimension ([]: the "
                 "observation space's)", item_kind=float, static=True, sweepable=False),
    "high": Field(list, [], "upper discretizer bound per observation dimension ([]: the "
                  "observation space's)", item_kind=float, static=True, sweepable=False),
    "scale": Field(list, [], "cells per unit per dimension ([]: (cells - 1) / (high - low))",
                   item_kind=float, lo=0, lo_open=True, static=True, sweepable=False),
    "start_state": Field(list, [], "fixed start: one value per scalar state field except time, "
                         "in the state's order ([]: gymnax's random reset_env)", item_kind=float,
                         static=True, sweepable=False),
}

DRA_DEFAULTS = {"lam": 0.1, "sigma_base": 5.0, "sigma0": 3.0, "beta": 10.0, "gamma": 1.0,
                "alpha_q": 0.1, "alpha_sigma": 0.1, "n_traj": 10, "episodes": 1000, "psi": "A",
                "max_steps": 500}

FIGURES = ("convergence", "baselines")
RANDOM_POLICY_ROLLOUTS = 1000


def _args(tp: dict, prefix: str = "task_params.") -> dict:
    """The :class:`DiscretizedTask` arguments of a ``[task_params]`` table, checked (no compile)."""
    kw = dict(env=tp["env_id"], cells=tuple(tp["cells"]), low=tuple(tp["low"]) or None,
              high=tuple(tp["high"]) or None, scale=tuple(tp["scale"]) or None)
    r = check_args(**kw, prefix=prefix, env_key="env_id")
    kw["start"] = None
    if tp["start_state"]:
        names = state_fields(r["env"], r["params"])
        if len(tp["start_state"]) != len(names):
            raise ConfigError(prefix + "start_state", f"expected one value per scalar state field "
                              f"of {r['name']} except time ({', '.join(names)}), got "
                              f"{len(tp['start_state'])}")
        kw["start"] = dict(zip(names, tp["start_state"]))
    return kw


@functools.lru_cache(maxsize=None)
def _task(env_id, cells, low, high, scale, start_items) -> DiscretizedTask:
    return DiscretizedTask(env_id, cells, low=low, high=high, scale=scale,
                           start=dict(start_items) if start_items else None)


def make_task(tp: dict) -> DiscretizedTask:
    kw = _args(tp)
    return _task(kw["env"], kw["cells"], kw["low"], kw["high"], kw["scale"],
                 tuple((kw["start"] or {}).items()))


def task_run_params(tp: dict) -> dict:
    return {}


def _check(cfg: dict) -> None:
    _args(cfg["task_params"])
    if cfg["dra"]["q_init"] == "optimal":
        raise ConfigError("dra.q_init", "'optimal' needs a tabular q*, which a discretized gymnax "
                          "environment does not have; use 'zero' or 'uniform'")
    for name, over in cfg["variants"].items():
        if over.get("q_init") == "optimal":
            raise ConfigError(f"variants.{name}.q_init", "'optimal' is not available for a "
                              "discretized gymnax environment")
    if "optimal" in cfg["sweep"].get("q_init", []):
        raise ConfigError("sweep.q_init", "'optimal' is not available for a discretized gymnax "
                          "environment")
    if "baselines" in cfg["figures"] and len(cfg["variants"]) < 2:
        raise ConfigError("figures", "'baselines' needs at least two [variants.NAME] tables")


def run(cfg: dict, runs: list[dict], progress):
    res = run_lane_sweep(cfg, runs, progress, make_task, task_run_params, final_entropy_for=())
    task = make_task(cfg["task_params"])
    horizon = max(r["dra"]["max_steps"] for r in runs)
    rets = np.asarray(jax.jit(task.random_policy_returns, static_argnums=(1, 2))(
        jax.random.key(cfg["seed"]), RANDOM_POLICY_ROLLOUTS, horizon))
    res.summary["random_policy"] = {
        "definition": "undiscounted return of the uniformly random policy from the task's start, "
                      f"each rollout cut at {horizon} steps (max_steps)",
        "n_rollouts": RANDOM_POLICY_ROLLOUTS, "mean_return": float(rets.mean()),
        "sd_return": float(rets.std())}
    res.summary["task"] = {"env_id": task.env_id, "cells": list(task.cells),
                           "low": task.obs_low.tolist(), "high": task.obs_high.tolist(),
                           "scale": task.obs_scale.tolist(), "n_states": task.n_states,
                           "n_actions": task.n_actions, "stochastic": task.stochastic}
    return res


@register_task("gymnax")
def spec() -> TaskSpec:
    return TaskSpec(
        name="gymnax", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS, figures=FIGURES,
        run=run, plot=plots.plot_lane_figures, psi_choices=("A", "Q", "R"), check=_check,
        eval_defaults={"every": 50, "n_rollouts": 50}, multi_process=True,
    )
