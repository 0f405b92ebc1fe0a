"""The fitter's likelihood calls split over devices (fit.devices, shard_map over subjects)."""
import os
import subprocess
import sys
import textwrap

import pytest

from dra_jax.fitting import cli, optimize, spec

_CHILD = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import pandas as pd
    from dra_jax.fitting import data, models, particle
    assert len(jax.local_devices()) == 2
    st = models.Static("dra", 1, 2, n_traj=1, n_zeta=4)  # the one-state DRA (compiles fastest)
    theta = np.array([0.1, 12.0, 0.5, 0.3, 1.0, 0.4])
    rng = np.random.default_rng(5)
    rows = []
    for i, n_blocks in enumerate((2, 2, 1)):  # s002: a shorter batch-mate
        t = 8 * n_blocks
        a = rng.integers(0, 2, t)
        rows.append(pd.DataFrame({"subject": f"s{i:03d}", "block": np.arange(t) // 8,
                                  "trial": np.arange(t) % 8, "state": 0, "action": a,
                                  "reward": (a == rng.integers(0, 2, t)).astype(float)}))
    ds = data.load(pd.concat(rows, ignore_index=True), 1, 2)

    def ll(ds, n_dev):
        n = len(ds.subjects)
        th = np.broadcast_to(theta, (n, 2, 6)).copy()
        th[:, 1, 1] = 2.0  # two candidates
        keys = jax.vmap(lambda i: jax.vmap(lambda c: jax.random.fold_in(jax.random.key(i), c))(
            jnp.arange(2)))(jnp.asarray([int(s[1:]) for s in ds.subjects]))
        tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
        out, n_res = particle.loglik(st, 8, 0.999, jnp.asarray(th, jnp.float32), tr, keys, n_dev)
        return np.asarray(out, np.float64), np.asarray(n_res)

    one, res1 = ll(ds, 1)
    two, res2 = ll(ds, 2)
    alone, _ = ll(ds.subset(["s001"]), 2)  # padded to 2 subjects a device
    assert one.shape == two.shape == (3, 2) and alone.shape == (1, 2)
    assert res1.sum() > 0 and np.array_equal(res1, res2)  # the filters do resample
    assert np.all(np.abs(one[:, 0] - one[:, 1]) > 0.3)  # the candidates differ
    np.testing.assert_allclose(two, one, rtol=1e-6)
    np.testing.assert_allclose(alone[0], one[1], rtol=1e-6)
    print("OK", one.tolist())
""")


def test_likelihoods_split_over_two_devices_equal_one_devices():
    """In a process with two host devices: DRA log-likelihoods (8 particles, resampling) of 3
    subjects x 2 candidates split over 2 devices (padded to 4 subjects) equal the one-device
    call's, and a subject evaluated alone (padded with copies of itself) gets its numbers."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_more_devices_than_the_process_has_is_a_config_error(tmp_path, capsys):
    """fit.devices is validated (>= 0), and asking for more devices than exist names the key;
    the fit command then exits 2 and writes nothing."""
    cfg = spec.validate({"task": "stimulus_response", "fit": {"devices": 64},
                         "models": {"qlearn": {"free": ["beta"]}}})
    with pytest.raises(spec.ConfigError, match="fit.devices"):
        optimize.n_devices(cfg)
    with pytest.raises(spec.ConfigError, match="fit.devices"):
        spec.validate({"task": "stimulus_response", "fit": {"devices": -1}})
    assert optimize.n_devices(spec.validate({"task": "stimulus_response"})) >= 1
    csv = tmp_path / "d.csv"
    csv.write_text("subject,block,trial,state,action,reward\nx,0,0,0,1,1\nx,0,1,1,0,0\n")
    out = tmp_path / "out"
    assert cli.main(["--config", "configs/fit_stimulus_response.toml", "--data", str(csv),
                     "--out", str(out), "--set", "fit.devices=64", "--quiet"]) == 2
    assert "fit.devices" in capsys.readouterr().err and not out.exists()
