"""Every shipped config validates; bad configs exit 2, name the key and write nothing."""
import subprocess
import sys
from pathlib import Path

import pytest

from dra_jax import config
from dra_jax.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# sweep configs (the fit_*.toml configs of `python -m dra_jax.fit` are checked in test_fit_cli.py)
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.toml") if not p.name.startswith("fit_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    cfg = config.load(path)
    runs = list(config.iter_run_params(cfg))
    assert len(runs) == int(__import__("numpy").prod(config.grid_shape(cfg)))


def test_there_are_configs():
    assert {"gridworld.toml", "gridworld_switch.toml", "gridworld_baselines.toml"} <= {p.name for p in CONFIGS}


def _raw(**over):
    raw = {"task": "gridworld", "_name": "t", "dra": {"episodes": 10}}
    for k, v in over.items():
        sec, _, key = k.partition("__")
        if key:
            raw.setdefault(sec, {})[key] = v
        else:
            raw[sec] = v
    return raw


@pytest.mark.parametrize("over,key", [
    ({"dra__bogus": 1}, "dra.bogus"),
    ({"dra__sigma0": -1.0}, "dra.sigma0"),
    ({"dra__sigma0": 0.0}, "dra.sigma0"),
    ({"dra__beta": 0.0}, "dra.beta"),
    ({"dra__beta": "ten"}, "dra.beta"),
    ({"dra__episodes": 2.5}, "dra.episodes"),
    ({"dra__psi": "max"}, "dra.psi"),
    ({"sweep__sigma0": []}, "sweep.sigma0"),
    ({"sweep__sigma0": [1.0, -2.0]}, "sweep.sigma0[1]"),
    ({"sweep__nonsense": [1]}, "sweep.nonsense"),
    ({"eval__every": 0}, "eval.every"),
    ({"n_seeds": 0}, "n_seeds"),
    ({"colour": "red"}, "colour"),
    ({"task": "chess"}, "task"),
    ({"figures": ["fig9"]}, "figures"),
    ({"dra__sigma_min": 5.0, "dra__sigma_max": 1.0}, "dra.sigma_min"),
])
def test_bad_values_name_the_key(over, key):
    with pytest.raises(ConfigError) as e:
        config.validate(_raw(**over))
    assert e.value.key == key
    assert key in str(e.value)


def test_set_overrides_parse_as_toml_literals(tmp_path):
    cfg = config.load(ROOT / "configs/gridworld.toml",
                      ["dra.lam=0.1", "dra.psi=Q", "seed=3", "sweep.sigma0=[2.0, 4.0]"])
    assert cfg["dra"]["lam"] == 0.1 and cfg["dra"]["psi"] == "Q" and cfg["seed"] == 3
    assert cfg["sweep"]["sigma0"] == [2.0, 4.0]


@pytest.mark.parametrize("args,key", [
    (["--set", "dra.sigma0=-1"], "dra.sigma0"),
    (["--set", "dra.beta=0"], "dra.beta"),
    (["--set", "dra.unknown=3"], "dra.unknown"),
    (["--set", "sweep.sigma0=[]"], "sweep.sigma0"),
    (["--set", "dra.episodes=ten"], "dra.episodes"),
])
def test_cli_rejects_bad_config_with_status_2_and_writes_nothing(tmp_path, args, key):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "dra_jax.sweep", "--config",
                           str(ROOT / "configs/gridworld.toml"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_missing_config_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dra_jax.sweep", "--config", str(tmp_path / "nope.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--config" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_end_to_end_writes_the_contract(tmp_path):
    import json

    import numpy as np

    out = tmp_path / "gw"
    proc = subprocess.run([sys.executable, "-m", "dra_jax.sweep", "--config",
                           str(ROOT / "configs/gridworld.toml"), "--out", str(out),
                           "--set", "dra.episodes=20", "--set", "n_seeds=1", "--set", "eval.every=10",
                           "--set", "sweep.sigma0=[1.0, 3.0, 5.0]",  # 3 runs: an odd, padded batch
                           "--set", "eval.n_rollouts=5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ETA" in proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert [a["name"] for a in s["grid_axes"]] == ["sigma0", "seed"]
    assert len(s["runs"]) == 3
    for r in s["runs"]:
        assert set(r["final"]) >= {"objective", "expected_reward", "cost"}
        assert r["final"]["objective"] == pytest.approx(r["final"]["expected_reward"] - r["final"]["cost"], abs=1e-4)
    assert {"compile_s", "run_s", "env_steps", "devices"} <= set(s["timing"])
    c = np.load(out / "curves.npz")
    assert c["objective"].shape == (3, 1, 3)
    assert c["sigma"].shape == (3, 1, 54, 4)
    assert (out / "figures" / "convergence.png").stat().st_size > 10_000
