"""Planning's runs split over host devices (shard_map over runs): the same numbers as one
device."""
import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import sys
    import jax, numpy as np
    import dra_jax
    n = int(sys.argv[1])
    assert len(jax.local_devices()) == n
    res = dra_jax.run("configs/planning.toml", set=["n_seeds=1", "dra.episodes=40",
        "eval.every=20", "eval.n_rollouts=16", "final.n_rollouts=32", "sweep.budget=[3, 9]",
        "cma.generations=3", "cma.popsize=4", "cma.restarts=1", "cma.n_eval_trials=16",
        "variants.equal.equal_points=2", "variants.equal.equal_rounds=1",
        "variants.equal.equal_seeds=1"], out=None, progress=False)
    c = res.arrays
    np.savez(sys.argv[2], objective=np.asarray(c["curve_objective"]), sigma=np.asarray(c["sigma"]),
             cma_objective=c["cma_objective"], cma_sigma=c["cma_sigma"], cma_history=c["cma_history"])
    print("OK", res.timing["devices"])
""")


def test_planning_on_two_devices_equals_one(tmp_path):
    """The planning config (4 variants x 2 budgets: groups of 2 runs, split 1 + 1; CMA-ES with
    2 budgets x 4 candidates a generation) on two host devices gives the curves, sigma and
    CMA-ES results of one device, bit for bit."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    got = {}
    for n in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        path = tmp_path / f"d{n}.npz"
        out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(path)], env=env, cwd=root,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "OK" in out.stdout
        got[n] = dict(__import__("numpy").load(path))
    import numpy as np

    assert np.isfinite(got[1]["objective"]).all()
    for k in ("objective", "sigma", "cma_objective", "cma_sigma", "cma_history"):
        np.testing.assert_array_equal(got[1][k], got[2][k], err_msg=k)
