"""Importing this module registers every built-in task with :func:`dra_jax.config.register_task`."""
from dra_jax.experiments import gridworld  # noqa: F401
from dra_jax.experiments import planning  # noqa: F401
from dra_jax.experiments import bandits  # noqa: F401
from dra_jax.experiments import mountain_car  # noqa: F401
