"""The task protocol of the DRA lane engine: what a task must provide, and a checker.

The engine (:func:`dra_jax.train`) steps any object with these members; the built-in tasks
(:class:`dra_jax.TabularTask`, :class:`dra_jax.DiscretizedTask`, the grid-world, mountain car)
are instances. Everything a method receives is a JAX value inside ``jit(vmap(...))``: use
``jnp``, no Python control flow on traced values, no side effects. The task object itself is a
static argument of the compiled program: make it hashable (``@dataclass(frozen=True,
eq=False)`` hashes by identity) and keep its arrays as NumPy constants.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Task(Protocol):
    """A task for the DRA lane engine (Algorithm 1).

    * ``n_states``, ``n_actions``: the memory table is ``[n_states, n_actions]``.
    * ``learnable``: bool ``[n_states, n_actions]``, the memories that are learned and pay the
      KL cost (memories the policy never reads should be False).
    * ``reset(u, tparams, episode) -> state``: the start state of an episode; ``u`` is a
      uniform float32 in [0, 1) from the engine's noise (the only randomness a task gets: a
      stochastic task keeps a PRNG key in its state, seeded from ``u``); ``tparams`` the run's
      traced task parameters (a dict of arrays); ``episode`` the int32 episode index.
    * ``step(state, action, tparams, episode) -> (state, reward, terminated)``: reward a
      float32 scalar, terminated a bool scalar (a real end; time limits are the engine's
      ``max_steps`` truncation, which bootstraps).
    * ``row(state, tparams) -> int32``: the memory row of a state.
    * optional ``q_star() -> [n_states, n_actions]``: the optimal values (``q_init = "optimal"``).
    """

    n_states: int
    n_actions: int

    @property
    def learnable(self) -> np.ndarray: ...

    def reset(self, u, tparams: dict, episode) -> Any: ...

    def step(self, state, action, tparams: dict, episode) -> tuple[Any, Any, Any]: ...

    def row(self, state, tparams: dict) -> Any: ...


class TaskError(TypeError):
    """A task does not follow the :class:`Task` protocol; the message says what is wrong."""


def check_task(task, tparams: dict | None = None) -> None:
    """Check ``task`` against the :class:`Task` protocol: run one jitted ``reset`` and ``step``
    (with ``tparams``, the traced task parameters of a run) and raise :class:`TaskError`
    naming what is missing or of the wrong shape or dtype.

    Example::

        >>> import dra_jax
        >>> dra_jax.check_task(dra_jax.TabularTask.from_maze(["S.G"]))
    """
    import jax
    import jax.numpy as jnp

    name = type(task).__name__
    missing = [m for m in ("n_states", "n_actions", "learnable", "reset", "step", "row")
               if not hasattr(task, m)]
    if missing:
        raise TaskError(f"{name} lacks {', '.join(missing)} (see dra_jax.Task)")
    for attr in ("n_states", "n_actions"):
        v = getattr(task, attr)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise TaskError(f"{name}.{attr} must be a positive int, got {v!r}")
    S, A = int(task.n_states), int(task.n_actions)
    if A < 2:
        raise TaskError(f"{name}.n_actions must be >= 2, got {A}")
    for m in ("reset", "step", "row"):
        if not callable(getattr(task, m)):
            raise TaskError(f"{name}.{m} must be a method")
    learn = np.asarray(task.learnable)
    if learn.shape != (S, A) or learn.dtype != np.bool_:
        raise TaskError(f"{name}.learnable must be a bool array of shape {(S, A)}, got "
                        f"{learn.dtype} {learn.shape}")
    try:
        hash(task)
    except TypeError:
        raise TaskError(f"{name} must be hashable (it is a static argument of the compiled "
                        "program): use @dataclass(frozen=True, eq=False)") from None
    tp = {k: jnp.asarray(v) for k, v in (tparams or {}).items()}

    def probe(u, a):
        s0 = task.reset(u, tp, jnp.int32(0))
        r0 = task.row(s0, tp)
        s1, rew, term = task.step(s0, a, tp, jnp.int32(0))
        return r0, task.row(s1, tp), rew, term, s0, s1

    try:
        out = jax.jit(probe)(jnp.float32(0.5), jnp.int32(0))
    except Exception as e:
        raise TaskError(f"{name}: one jitted reset + step failed: {type(e).__name__}: {e}") from None
    r0, r1, rew, term, s0, s1 = out
    if jax.tree.structure(s0) != jax.tree.structure(s1) or any(
            np.shape(a) != np.shape(b) or a.dtype != b.dtype
            for a, b in zip(jax.tree.leaves(s0), jax.tree.leaves(s1))):
        raise TaskError(f"{name}.step must return a state of the same structure, shapes and "
                        "dtypes as reset's (the engine carries it in a loop)")
    for label, v in (("row(reset(...))", r0), ("row(step(...)[0])", r1)):
        if np.shape(v) != () or not jnp.issubdtype(v.dtype, jnp.integer):
            raise TaskError(f"{name}.{label} must be an integer scalar, got {v.dtype} {np.shape(v)}")
        if not 0 <= int(v) < S:
            raise TaskError(f"{name}.{label} = {int(v)} is outside [0, {S - 1}]")
    if np.shape(rew) != () or not jnp.issubdtype(rew.dtype, jnp.floating):
        raise TaskError(f"{name}.step reward must be a float scalar, got {rew.dtype} {np.shape(rew)}")
    if np.shape(term) != () or term.dtype != jnp.bool_:
        raise TaskError(f"{name}.step terminated must be a bool scalar, got {term.dtype} {np.shape(term)}")
    if hasattr(task, "q_star"):
        try:
            qs = np.asarray(task.q_star())
        except NotImplementedError:
            return
        if qs.shape != (S, A):
            raise TaskError(f"{name}.q_star() must have shape {(S, A)}, got {qs.shape}")
