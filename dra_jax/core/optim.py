"""The one optax optimizer factory of every sigma ascent (the lane engine, planning, the
fitter's models)."""
from __future__ import annotations

import optax

OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam, "rmsprop": optax.rmsprop}
SCHEDULES = ("constant", "cosine")


def make_optimizer(name: str, lr, schedule: str = "constant",
                   steps: int = 1) -> optax.GradientTransformation:
    """``optax.<name>(lr)``; ``schedule = "cosine"`` decays ``lr`` to 0 over ``steps`` updates
    (``optax.cosine_decay_schedule``: a step size that goes to zero lets a noisy ascent settle
    at its optimum instead of jittering around it, Robbins-Monro)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: one of {', '.join(OPTIMIZERS)}")
    if schedule == "cosine":
        lr = optax.cosine_decay_schedule(lr, max(int(steps), 1))
    elif schedule != "constant":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: one of "
                         f"{', '.join(SCHEDULES)}")
    return OPTIMIZERS[name](lr)
