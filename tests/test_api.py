"""The public Python API: run == the CLI number for number, load round-trips, labelled results,
check_task's messages, the examples run."""
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import dra_jax

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["dra.episodes=30", "n_seeds=2", "sweep.sigma0=[1.0, 3.0]", "eval.every=10",
         "eval.n_rollouts=5", "figures=[]"]


@pytest.fixture(scope="module")
def cli_and_api(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "gw"
    args = [a for s in SMALL for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "dra_jax.sweep", "--config",
                           str(ROOT / "configs/gridworld.toml"), "--out", str(out), "--quiet",
                           "--cpu-devices", "1", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    api_out = tmp_path_factory.mktemp("api") / "gw"
    res = dra_jax.run(ROOT / "configs/gridworld.toml", set=SMALL, progress=False, out=api_out)
    return out, res, api_out


def test_run_equals_the_cli_number_for_number(cli_and_api):
    out, res, _ = cli_and_api
    cli = json.loads((out / "summary.json").read_text())
    assert [r["final"] for r in cli["runs"]] == [r["final"] for r in res.runs]
    assert [r["params"] for r in cli["runs"]] == [r["params"] for r in res.runs]
    with np.load(out / "curves.npz") as z:
        for k in ("objective", "cost", "q", "sigma"):
            np.testing.assert_array_equal(z[k], res.arrays[k])
    assert np.ptp([r["final"]["objective"] for r in res.runs]) > 0  # runs differ


def test_load_round_trips_and_labels(cli_and_api):
    _, res, api_out = cli_and_api
    back = dra_jax.load(api_out)
    df, df2 = res.to_dataframe(), back.to_dataframe()
    assert df.equals(df2)
    assert list(df.columns[:5]) == ["sigma0", "seed", "objective", "expected_reward", "cost"]
    assert len(df) == 4 and sorted(df["sigma0"].unique()) == [1.0, 3.0]
    ds = back.to_xarray()
    assert ds["objective"].dims == ("sigma0", "seed", "episode")
    assert ds["q"].dims == ("sigma0", "seed", "state", "action")
    assert list(ds["episode"].values) == [0, 10, 20, 30]
    assert ds.sizes["state"] == 54 and ds.sizes["action"] == 4
    # the labels are right: the xarray cell equals the DataFrame row of the same run
    row = df[(df.sigma0 == 3.0) & (df.seed == 1)].iloc[0]
    assert float(ds["objective"].sel(sigma0=3.0, seed=1, episode=30)) == pytest.approx(row.objective)


def test_dict_configs_and_errors_write_nothing(tmp_path):
    with pytest.raises(dra_jax.ConfigError) as e:
        dra_jax.run({"task": "gridworld", "dra": {"sigma0": -1.0}}, out=tmp_path / "x", progress=False)
    assert e.value.key == "dra.sigma0"
    with pytest.raises(dra_jax.ConfigError) as e:
        dra_jax.run("configs/gridworld.toml", set=["dra.bogus=1"], out=tmp_path / "x", progress=False)
    assert e.value.key == "dra.bogus"
    with pytest.raises(dra_jax.ConfigError) as e:
        dra_jax.run({"task": "tabular", "task_params": {"maze": "S.#\n..X"}}, out=tmp_path / "x",
                    progress=False)
    assert e.value.key == "task_params.maze"
    assert not (tmp_path / "x").exists()
    cfg = dra_jax.load_config({"task": "tabular", "task_params": {"maze": "S..G"}},
                              set=["dra.lam=0.5"])
    assert cfg["dra"]["lam"] == 0.5 and dra_jax.load_config(cfg)["dra"]["lam"] == 0.5


@dataclass(frozen=True, eq=False)
class Good:
    n_states: int = 3
    n_actions: int = 2
    learnable: np.ndarray = None

    def reset(self, u, tparams, episode):
        return jnp.int32(0)

    def step(self, state, action, tparams, episode):
        return jnp.minimum(state + 1, 2).astype(jnp.int32), jnp.float32(1.0), state + 1 >= 2

    def row(self, state, tparams):
        return state


def _variant(**over):
    cls = type("Bad", (Good,), over)
    return dataclass(frozen=True, eq=False)(cls)(learnable=np.ones((3, 2), bool))


@pytest.mark.parametrize("over, text", [
    ({"row": lambda self, s, tp: s.astype(jnp.float32)}, "row(reset(...)) must be an integer"),
    ({"row": lambda self, s, tp: s + 5}, "outside [0, 2]"),
    ({"step": lambda self, s, a, tp, e: (s, jnp.ones(2), s > 0)}, "reward must be a float scalar"),
    ({"step": lambda self, s, a, tp, e: (s, jnp.float32(0), s)}, "terminated must be a bool"),
    ({"step": lambda self, s, a, tp, e: (jnp.zeros(2, jnp.int32), jnp.float32(0), s > 0)},
     "same structure"),
    ({"reset": lambda self, u, tp, e: tp["missing"]}, "reset + step failed: KeyError"),
])
def test_check_task_names_what_is_wrong(over, text):
    dra_jax.check_task(Good(learnable=np.ones((3, 2), bool)))
    with pytest.raises(dra_jax.TaskError) as e:
        dra_jax.check_task(_variant(**over))
    assert text in str(e.value)


def test_check_task_learnable_and_missing_members():
    with pytest.raises(dra_jax.TaskError, match="n_actions must be >= 2"):
        dra_jax.check_task(Good(n_actions=1, learnable=np.ones((3, 1), bool)))
    with pytest.raises(dra_jax.TaskError, match="learnable must be a bool array of shape"):
        dra_jax.check_task(Good(learnable=np.ones((3, 3), bool)))

    class NoRow:
        n_states, n_actions, learnable = 3, 2, np.ones((3, 2), bool)

        def reset(self, u, tp, e):
            return 0

        def step(self, s, a, tp, e):
            return s, 0.0, False

    with pytest.raises(dra_jax.TaskError, match="lacks row"):
        dra_jax.check_task(NoRow())


@pytest.mark.parametrize("script, args, expect", [
    ("examples/custom_task.py", ["--episodes", "60"], "final sigma"),
    ("examples/sweep_to_dataframe.py", ["--episodes", "40"], "wrote"),
])
def test_examples_run(tmp_path, script, args, expect):
    extra = ["--out", str(tmp_path / "fig.png")] if "sweep" in script else []
    proc = subprocess.run([sys.executable, str(ROOT / script), *args, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout


def test_docstring_examples_of_the_public_api_run():
    """Every public name's docstring example runs and prints what it shows."""
    import doctest

    import dra_jax.api
    import dra_jax.envs.tabular
    import dra_jax.lane.batching
    import dra_jax.tasks

    for mod in (dra_jax.api, dra_jax.lane.batching, dra_jax.envs.tabular, dra_jax.tasks):
        r = doctest.testmod(mod, extraglobs={"dra_jax": dra_jax}, optionflags=doctest.ELLIPSIS)
        assert r.failed == 0 and r.attempted > 0, (mod.__name__, r)


def test_envs_make_the_gymnax_way():
    import jax

    import dra_jax.envs

    assert "GridWorldDRA-v0" in dra_jax.envs.registered_envs
    for env_id in dra_jax.envs.registered_envs:
        env, params = dra_jax.envs.make(env_id)
        obs, state = env.reset(jax.random.key(0), params)
        out = env.step(jax.random.key(1), state, 0, params)
        assert len(out) >= 5 and np.shape(out[2]) == ()
    with pytest.raises(ValueError, match="not a registered"):
        dra_jax.envs.make("Nope-v0")


def test_cli_bad_tabular_task_exits_2_naming_the_key(tmp_path):
    maze = tmp_path / "m.txt"
    maze.write_text("S.#\n..G\n.X.\n")
    out = tmp_path / "o"
    for extra, key in ((["--set", f"task_params.maze_file={maze}"], "task_params.maze_file"),
                       (["--set", "task_params.npz=nope.npz"], "task_params.npz")):
        p = subprocess.run([sys.executable, "-m", "dra_jax.sweep", "--config",
                            str(ROOT / "configs/tabular_maze.toml"), "--set", "task_params.maze=''",
                            *extra, "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and key in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert not out.exists()
