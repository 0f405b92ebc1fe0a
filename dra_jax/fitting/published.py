"""The published RLWM fits (Collins 2024, "RL or not RL?"; Collins & Frank 2012's data) as
parameter vectors of the ``rlwm`` model, to check the model against the authors' likelihoods.

A fits table has one row per subject x model with ``loglik`` and ``params`` as
``name=value;...``. The model IDs: ``WM``/``WM0``/``WM1`` and ``RL``/``RL0``/``RL1`` say whether
``bias_wm`` and ``bias_rl`` (the learning rate after a reward of 0 as a fraction of the one
after a reward of 1) are free, 0 or 1; ``WM=RL`` shares one free bias; the trailing ``0`` is
``r0 = 0``. ``beta = 25`` throughout.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dra_jax.fitting import models

NAMES = {"alphaRL": "alpha_q", "stick": "stick", "rho": "rho", "forget": "forget",
         "epsilon": "epsilon", "biasWM": "bias_wm", "biasRL": "bias_rl", "K": "capacity"}
FIXED = {"WM0": {"bias_wm": 0.0}, "WM1": {"bias_wm": 1.0}, "RL0": {"bias_rl": 0.0},
         "RL1": {"bias_rl": 1.0}}


def parameters(model: str, params: str) -> dict:
    """The ``rlwm`` parameters (this package's names) of one published row."""
    kv = {k: float(v) for k, v in (x.split("=") for x in params.split(";"))}
    if model.startswith("WM=RL"):  # one shared bias; the table stores K in the biasRL slot
        if "K" not in kv:
            kv["K"] = kv.pop("biasRL")
        kv["biasRL"] = kv["biasWM"]
    out = {NAMES[k]: v for k, v in kv.items()}
    for part in model.split()[:2]:
        out.update(FIXED.get(part, {}))
    out.setdefault("bias_wm", 1.0)
    out.setdefault("bias_rl", 1.0)
    return {"beta": 25.0, "r0": 0.0, **out}


def thetas(fits: pd.DataFrame, model: str, subjects: list[str], base: np.ndarray) -> np.ndarray:
    """``theta [N, len(PARAMS)]`` of ``subjects`` (in that order) under published ``model``,
    the other entries from ``base``."""
    rows = fits[fits["model"] == model]
    rows = rows.set_index(rows["subject"].astype(str))
    out = np.tile(np.asarray(base, np.float64), (len(subjects), 1))
    for i, s in enumerate(subjects):
        for k, v in parameters(model, rows.loc[s, "params"]).items():
            out[i, models.PARAMS.index(k)] = v
    return out
