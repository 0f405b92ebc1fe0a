"""Flexible >= equal precision on the planning task with the variance-reduced gradient, at a
small size (issue 11): the optimum of flexible precision includes equal precision, so a
converged optimizer never ends below it."""
from __future__ import annotations

import numpy as np
import pytest

from dra_jax import config as config_mod
from dra_jax.envs import planning as env
from dra_jax.experiments import planning as px


def test_flexible_ge_equal_with_loo_start_where_the_paper_estimator_fails():
    """Full budget (b = 24): every path is found, so F* = E* = 66.667 at sigma = sigma_base for
    flexible and equal precision alike (the evaluation is exact over the start states). After
    1000 Adam steps with the leave-one-out-within-start-state baseline, flexible reaches E*
    and is not below equal; with the paper's estimator (same optimizer, same noise) flexible
    stays far below, the audit's finding at b = 24 (F 60.9 vs 66.7)."""
    raw = {"task": "planning", "n_seeds": 1, "figures": [],
           "dra": {"episodes": 1000, "n_traj": 10, "optimizer": "adam", "alpha_sigma": 0.5,
                   "lr_schedule": "cosine"},
           "eval": {"every": 500, "n_rollouts": 6}, "final": {"n_rollouts": 6},
           "sweep": {"budget": [24], "allocation": ["flexible", "equal"],
                     "baseline": ["none", "loo_start"]},
           "cma": {"enabled": False}}
    cfg = config_mod.validate(raw)
    runs = list(config_mod.iter_run_params(cfg))
    res = px.run(cfg, runs, None)
    f = {(r["dra"]["allocation"], r["dra"]["baseline"]): fin["objective"]
         for r, fin in zip(runs, res.finals)}
    e_star = float(env.best_paths(3).mean())
    assert f["flexible", "loo_start"] == pytest.approx(e_star, abs=0.01)
    assert f["flexible", "loo_start"] >= f["equal", "loo_start"] - 1e-3
    assert f["flexible", "none"] < e_star - 2.0  # the paper's estimator has not converged
    assert np.isfinite(list(f.values())).all()
