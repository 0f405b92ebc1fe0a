"""dra_jax: a JAX-accelerated, vectorized simulator of capacity-limited RL agents.

The Dynamic Resource Allocator (DRA, Patel, Acerbi & Pouget, NeurIPS 2020): Gaussian memories
``N(q, sigma^2)``, soft Thompson sampling, expected-SARSA means and sigma allocated by stochastic
gradient ascent on expected reward minus ``lam * KL(memories || base)``.

The public API (everything else is internal and may change):

* sweeps: :func:`run` (a config -> :class:`Results`, labelled as a pandas DataFrame or an
  xarray Dataset), :func:`load` (a written output folder -> :class:`Results`),
  :func:`load_config`, :class:`ConfigError`;
* the engine for your own batches: :func:`train` (Algorithm 1 over a batch of runs),
  :class:`AgentStatic`, :func:`make_run_params`, :func:`stack_params`;
* tasks: the :class:`Task` protocol and :func:`check_task`, :class:`TabularTask` (arrays,
  ``.npz``, text mazes), :class:`DiscretizedTask` (any gymnax Box/Discrete environment),
  :mod:`dra_jax.envs` (``dra_jax.envs.make("GridWorldDRA-v0")``, the gymnax way);
* fitting agents to choice data: :func:`fit` (particle-filter likelihoods, CMA-ES;
  ``python -m dra_jax.fit``) -> :class:`FitResults`.

Heavy modules (JAX programs, gymnax, matplotlib) load on first use of a name.
"""
from dra_jax.config import ConfigError

__version__ = "0.2.0"

_LAZY = {
    "run": ("dra_jax.api", "run"),
    "load": ("dra_jax.api", "load"),
    "load_config": ("dra_jax.api", "load_config"),
    "Results": ("dra_jax.api", "Results"),
    "train": ("dra_jax.lane.batching", "train_batch"),
    "AgentStatic": ("dra_jax.lane.static", "AgentStatic"),
    "RunOutput": ("dra_jax.lane.agent", "RunOutput"),
    "make_run_params": ("dra_jax.lane.static", "make_run_params"),
    "stack_params": ("dra_jax.lane.static", "stack_params"),
    "Task": ("dra_jax.tasks", "Task"),
    "TaskError": ("dra_jax.tasks", "TaskError"),
    "check_task": ("dra_jax.tasks", "check_task"),
    "TabularTask": ("dra_jax.envs.tabular", "TabularTask"),
    "DiscretizedTask": ("dra_jax.envs.discretized", "DiscretizedTask"),
    "fit": ("dra_jax.fitting", "fit"),
    "FitResults": ("dra_jax.fitting.api", "FitResults"),
}

__all__ = ["ConfigError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dra_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
