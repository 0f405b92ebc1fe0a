"""A seeded fuzz of every shipped config and of the fitter's CSV: a mutated input either validates
or raises ConfigError / DataError naming the key or column, never another exception, and nothing
accepted holds a NaN, an infinity, a negative scale or a count past int32."""
import copy
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dra_jax import config
from dra_jax.config import INT_MAX, ConfigError
from dra_jax.fitting import data as data_mod
from dra_jax.fitting import spec as fit_spec
from dra_jax.fitting.data import DataError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
MUTATIONS_PER_CONFIG = 40

HOSTILE = [2**63, 2**63 - 1, 2**31, INT_MAX, -(2**63), -1, 0, 1, 2**40, -0.0, 0.5, -1e-300,
           1e308, -1e308, math.nan, math.inf, -math.inf, "", " ", "\x00", "nan", "x" * 5000,
           "../" * 50, "é", True, False, [], [math.nan], [-1], [2**63], ["a"], {}, {"a": 1}]
# keys whose accepted values must be scales (> 0 or >= 0): a negative one is a bug
SCALES = re.compile(r"^(sigma\w*|beta|lam|alpha\w*|gamma|step|fd_step|tol|epsilon|ess_threshold|burn)$")


def _paths(raw, prefix=()):
    """Every (path, value) of a raw TOML dict, tables included."""
    for k, v in raw.items():
        yield prefix + (k,), v
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


def _mutate(raw: dict, rng) -> tuple[dict, str]:
    raw = copy.deepcopy(raw)
    paths = [p for p, _ in _paths(raw) if p[0] != "task"]
    what = rng.integers(4)
    if what == 3 or not paths:  # an unknown key in a random table
        tables = [()] + [p for p, v in _paths(raw) if isinstance(v, dict)]
        t = tables[rng.integers(len(tables))]
        node = raw
        for k in t:
            node = node[k]
        node["bogus_key"] = 1
        return raw, ".".join(t + ("bogus_key",))
    p = paths[rng.integers(len(paths))]
    node = raw
    for k in p[:-1]:
        node = node[k]
    if what == 2:  # a list value: one hostile element
        node[p[-1]] = [HOSTILE[rng.integers(len(HOSTILE))]] * int(rng.integers(1, 3))
    else:
        node[p[-1]] = copy.deepcopy(HOSTILE[rng.integers(len(HOSTILE))])
    return raw, ".".join(p)


def _check_accepted(cfg, where):
    """Nothing accepted is non-finite, a negative scale, or an integer past int32."""
    def walk(v, key):
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, float):
            assert math.isfinite(v), (where, key, v)
            leaf = key.split(".")[-1].split("[")[0]
            if SCALES.match(leaf):
                assert v >= 0, (where, key, v)
        elif isinstance(v, int):
            assert -(2**31) <= v <= INT_MAX, (where, key, v)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}.{k}")
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{key}[{i}]")
    walk(cfg, "")


def _validate(path: Path, raw: dict):
    if path.name.startswith("fit_"):
        return fit_spec.validate({**raw, "_name": path.stem})
    return config.validate({**raw, "_name": path.stem})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_mutated_configs_raise_only_config_errors(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an accepted `out` is never created: validation writes nothing
    raw = tomllib.loads(path.read_text())
    _check_accepted(_validate(path, raw), path.name)  # the shipped config itself
    rng = np.random.default_rng([7, len(path.name), sum(path.name.encode())])
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(MUTATIONS_PER_CONFIG):
        bad, key = _mutate(raw, rng)
        try:
            cfg = _validate(path, bad)
        except ConfigError as e:
            assert e.key and str(e).startswith("config error: "), (path.name, key, e)
            outcomes["refused"] += 1
            continue
        _check_accepted(cfg, f"{path.name}: {key}")
        outcomes["accepted"] += 1
    assert outcomes["refused"] > MUTATIONS_PER_CONFIG // 2, outcomes  # the fuzz does bite
    assert list(tmp_path.iterdir()) == []


CSV = ROOT / "tests" / "data" / "rlwm_cf2012_subset.csv"
BAD_CELLS = ["", "nan", "NaN", "inf", "-inf", "-1", "1e309", "1.5", "x", str(2**63), "-0", " 1",
             "1e2", "None", "\x00"]


def _csv_mutations(df: pd.DataFrame, rng, n: int):
    for _ in range(n):
        d = df.copy().astype(object)
        how = rng.integers(5)
        if how == 0:  # hostile cells in one column
            col = d.columns[rng.integers(len(d.columns))]
            rows = rng.choice(len(d), size=int(rng.integers(1, 4)), replace=False)
            d.loc[d.index[rows], col] = BAD_CELLS[rng.integers(len(BAD_CELLS))]
        elif how == 1:  # a required column missing
            d = d.drop(columns=[data_mod.REQUIRED[rng.integers(len(data_mod.REQUIRED))]])
        elif how == 2:  # rows shuffled or duplicated
            d = d.sample(frac=1.0, random_state=int(rng.integers(2**31))) if rng.integers(2) \
                else pd.concat([d, d.iloc[:5]])
        elif how == 3:  # an empty table
            d = d.iloc[:0]
        else:  # out-of-range states / actions / set sizes
            col = ["state", "action", "set_size"][rng.integers(3)]
            d.loc[d.index[rng.integers(len(d))], col] = int(rng.choice([-5, 99, 2**40]))
        yield d


def test_mutated_csv_raises_only_data_errors():
    cfg = fit_spec.load(ROOT / "configs" / "fit_rlwm.toml")
    df = pd.read_csv(CSV)
    df = df[df["subject"].isin(df["subject"].unique()[:3])].reset_index(drop=True)
    rng = np.random.default_rng(11)
    refused = 0
    for d in _csv_mutations(df, rng, 120):
        try:
            ds = data_mod.load_for(d, cfg)
        except DataError as e:
            assert str(e), e
            refused += 1
            continue
        assert np.isfinite(np.asarray(ds.trials.r, float)).all()
        s, a = np.asarray(ds.trials.s), np.asarray(ds.trials.a)
        assert (s >= 0).all() and (s < cfg["fit"]["n_states"]).all()
        assert (a >= -1).all() and (a < cfg["fit"]["n_actions"]).all()
    assert refused > 40


@pytest.mark.parametrize("name,key,value", [
    ("bandits_rate_distortion", "n_seeds", 2**63),
    ("gridworld", "dra.episodes", 2**63),
    ("planning", "final.n_rollouts", 2**63),
    ("bandits_regret", "task_params.z_samples", 2**63),
    ("gridworld", "out", ""),
    ("gridworld", "out", "   "),
    ("gridworld", "eval.n_rollouts", 2**31),
])
def test_the_counts_found_unbounded_are_refused(name, key, value):
    raw = tomllib.loads((ROOT / "configs" / f"{name}.toml").read_text())
    node, *path = key.split(".")
    if path:
        raw.setdefault(node, {})[path[0]] = value
    else:
        raw[node] = value
    with pytest.raises(ConfigError) as e:
        config.validate({**raw, "_name": name})
    assert e.value.key == key


def test_a_grid_past_the_free_memory_is_refused_with_its_estimate():
    raw = tomllib.loads((ROOT / "configs" / "gridworld.toml").read_text())
    raw["dra"]["episodes"] = 10**8
    raw["eval"] = {**raw.get("eval", {}), "every": 1}
    with pytest.raises(ConfigError) as e:
        config.validate({**raw, "_name": "big"})
    assert e.value.key == "dra.episodes" and "GiB" in str(e.value)
    raw["n_seeds"] = config.MAX_RUNS
    raw["dra"]["episodes"] = 100
    with pytest.raises(ConfigError, match="runs"):
        config.validate({**raw, "_name": "wide"})
