"""The planning runner's execution machinery (issue 11): checkpoints, --resume, max_batch;
exact start-state expectations in the evaluation; the baseline key's validation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dra_jax import config as config_mod
from dra_jax.config import ConfigError
from dra_jax.envs import planning as env
from dra_jax.experiments import planning as px
from dra_jax.runtime.checkpoint import CheckpointError
from dra_jax.runtime.execution import ExecOptions

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**over):
    raw = {"task": "planning", "n_seeds": 2, "figures": [],
           "dra": {"episodes": 6, "n_traj": 4, "baseline": "loo"},
           "eval": {"every": 2, "n_rollouts": 12}, "final": {"n_rollouts": 24},
           "sweep": {"budget": [3, 24], "baseline": ["loo", "loo_start"]},
           "cma": {"enabled": False}}
    for k, v in over.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    return config_mod.validate(raw)


class _Progress:
    """A progress object carrying the sweep's options; raises at the ``stop_at``-th update."""

    def __init__(self, out, resume=False, max_batch=0, stop_at=None):
        self.options = ExecOptions(out=out, resume=resume, max_batch=max_batch)
        self.stop_at, self.updates, self.notices = stop_at, 0, []

    def update(self, done, extra="", force=False):
        self.updates += 1
        if self.stop_at is not None and self.updates >= self.stop_at:
            raise KeyboardInterrupt

    def message(self, text):
        pass

    def notice(self, text):
        self.notices.append(text)


def _numbers(res):
    return (np.asarray([[f[k] for k in ("objective", "expected_reward", "cost")]
                        for f in res.finals]),
            res.curves["curve_objective"], res.curves["sigma"])


def test_interrupted_run_resumes_to_the_same_numbers_and_refuses_other_configs(tmp_path):
    cfg = _cfg()
    runs = list(config_mod.iter_run_params(cfg))
    res0 = px.run(cfg, runs, None)  # uninterrupted, no checkpoints
    ref = _numbers(res0)
    # the evaluation is exact over the six start states: at the full budget every path is
    # found, so the expected reward is the mean best-path reward E* = 66.667 whatever sigma is
    e_star = float(env.best_paths(3).mean())
    full = np.asarray([px.resolve_budget(cfg, r) == 24 for r in runs])
    np.testing.assert_allclose(ref[0][full, 1], e_star, rtol=1e-6)
    np.testing.assert_allclose(res0.curves["curve_reward"][full], e_star, rtol=1e-6)
    assert "converged_definition" in res0.summary and "unconverged_runs" in res0.summary
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # stopped after the first block's checkpoint
        px.run(cfg, runs, _Progress(out, stop_at=1))
    ckpts = sorted((out / "checkpoint").glob("*.npz"))
    assert len(ckpts) == 1
    # a checkpoint of another config (lam differs) is refused, naming the reason
    other = _cfg(dra={"lam": 0.5})
    with pytest.raises(CheckpointError, match="another config"):
        px.run(other, list(config_mod.iter_run_params(other)), _Progress(out, resume=True))
    prog = _Progress(out, resume=True)
    res = px.run(cfg, runs, prog)
    assert any("resumed planning batch 0" in t and "2 of 6 episodes" in t for t in prog.notices)
    assert prog.updates == 2  # the two blocks left, not three
    for a, b in zip(ref, _numbers(res)):
        np.testing.assert_array_equal(a, b)
    assert not (out / "checkpoint").exists()  # removed once finished
    # batches of at most 3 runs (8 runs: 3 + 3 + 2 padded to 3) give the same numbers
    res_b = px.run(cfg, runs, _Progress(None, max_batch=3))
    for a, b in zip(ref, _numbers(res_b)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("over,key,text", [
    ({"dra": {"baseline": "mean"}}, "dra.baseline", "none"),
    ({"dra": {"baseline": "loo", "n_traj": 1}}, "dra.baseline", "n_traj >= 2"),
    ({"dra": {"baseline": "loo_start"}, "variants": {"one": {"n_traj": 1}, "ten": {"n_traj": 10}}},
     "dra.baseline", "variants.one.n_traj"),
    ({"dra": {"lr_schedule": "linear"}}, "dra.lr_schedule", "cosine"),
])
def test_bad_baseline_is_rejected_naming_the_key(over, key, text):
    raw = {"task": "planning", "dra": {"episodes": 4}, "eval": {"every": 2}}
    for sec, v in over.items():
        raw.setdefault(sec, {}).update(v)
    with pytest.raises(ConfigError) as e:
        config_mod.validate(raw)
    assert e.value.key == key and text in str(e.value)


def test_baseline_is_a_planning_key_only():
    with pytest.raises(ConfigError) as e:
        config_mod.validate({"task": "gridworld", "dra": {"baseline": "loo"}})
    assert e.value.key == "dra.baseline" and "unknown key" in str(e.value)


def test_cli_bad_baseline_exits_2_and_writes_nothing(tmp_path, capsys):
    from dra_jax import sweep

    out = tmp_path / "out"
    rc = sweep.main(["--config", str(ROOT / "configs" / "planning.toml"), "--out", str(out),
                     "--set", "dra.baseline=mean", "--no-compile-cache"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "dra.baseline" in err and "loo" in err
    assert not out.exists()
