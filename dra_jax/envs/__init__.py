"""gymnax-style environments of the paper's tasks, registered the gymnax way.

    >>> import dra_jax.envs
    >>> env, params = dra_jax.envs.make("GridWorldDRA-v0")
    >>> obs, state = env.reset(jax.random.key(0), params)          # doctest: +SKIP

:func:`make` returns ``(env, env.default_params)`` like ``gymnax.make``; :data:`registered_envs`
lists the ids. The lane engine's task protocol is :class:`dra_jax.Task`; every
:class:`~dra_jax.envs.tabular.TabularTask` also has a gymnax face,
:class:`~dra_jax.envs.tabular_gymnax.TabularEnv`.
"""
from __future__ import annotations

import importlib

# id -> (module, factory name, keyword arguments); modules are imported on first use
_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "GridWorldDRA-v0": ("dra_jax.envs.tabular_gymnax", "GridWorld", {}),
    "PlanningHuys-v0": ("dra_jax.envs.planning", "PlanningEnv", {}),
    "GaussianBandit10-v0": ("dra_jax.envs.bandits", "Bandit", {"arms": 10, "kind": "gaussian"}),
    "BernoulliBandit10-v0": ("dra_jax.envs.bandits", "Bandit", {"arms": 10, "kind": "bernoulli"}),
}

registered_envs: list[str] = list(_REGISTRY)


def register(env_id: str, module: str, factory: str, **kwargs) -> None:
    """Register ``module.factory(**kwargs)`` under ``env_id`` (imported when first made)."""
    _REGISTRY[env_id] = (module, factory, dict(kwargs))
    if env_id not in registered_envs:
        registered_envs.append(env_id)


def make(env_id: str, **kwargs):
    """``(env, default_params)`` of a registered environment; extra keyword arguments go to its
    constructor (e.g. ``make("GaussianBandit10-v0", arms=5)``)."""
    if env_id not in _REGISTRY:
        raise ValueError(f"{env_id!r} is not a registered dra_jax environment; registered: "
                         f"{', '.join(registered_envs)}")
    module, factory, kw = _REGISTRY[env_id]
    env = getattr(importlib.import_module(module), factory)(**{**kw, **kwargs})
    return env, env.default_params
