"""Sweeps at scale: devices, batches, chunks, checkpoints, non-finite runs (issue 6)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dra_jax import sweep

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config", str(ROOT / "configs/gridworld.toml"), "--set", "dra.episodes=30",
         "--set", "n_seeds=2", "--set", "eval.every=10", "--set", "eval.n_rollouts=5",
         "--set", "sweep.sigma0=[1.0, 3.0, 5.0]", "--set", "figures=[]", "--quiet"]


def _curves(out):
    with np.load(out / "curves.npz") as z:
        return {k: z[k] for k in z.files}


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _cli(args, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dra_jax.sweep", *args], capture_output=True,
                          text=True, env=e, timeout=600, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    assert sweep.main([*SMALL, "--out", str(out)]) == 0
    return _curves(out)


@pytest.mark.parametrize("objectives,exact", [('["dra"]', True), ('["elbo", "elbo_step"]', False)])
def test_sharded_over_4_host_devices_equals_single_device(tmp_path, objectives, exact):
    """12 (or 8) runs as one batch on one device, and 3 (2) per device on four. With the DRA
    objective every number is bit for bit the same (sums run in a fixed order). The ELBO
    objectives differentiate the action entropy, whose exp/log XLA on CPU compiles to vectorized
    or scalar code by array shape, so there sigma can differ in its last bit: compared to
    float32 rounding."""
    args = ["--config", str(ROOT / "configs/gridworld.toml"), "--set", "dra.episodes=30",
            "--set", "eval.every=10", "--set", "eval.n_rollouts=5", "--set", "sweep.sigma0=[3.0]",
            "--set", "n_seeds=1", "--set", 'sweep.psi=["A", "R"]',
            "--set", 'sweep.allocation=["flexible", "equal_sgd", "equal"]',
            "--set", f"sweep.objective={objectives}", "--set", "figures=[]", "--quiet",
            "--set", "dra.equal_points=3", "--set", "dra.equal_rounds=1", "--set", "dra.equal_seeds=1"]
    if exact:
        args += ["--set", "sweep.lam=[0.1, 0.2, 0.4]"]
    one, four = tmp_path / "one", tmp_path / "four"
    proc1 = _cli([*args, "--out", str(one)])
    proc4 = _cli([*args, "--out", str(four), "--cpu-devices", "4"])
    assert proc1.returncode == 0 and proc4.returncode == 0, proc1.stderr + proc4.stderr
    s = json.loads((four / "summary.json").read_text())
    assert s["timing"]["devices_used"] == 4 and len(s["timing"]["devices"]) == 4
    assert len(s["runs"]) == (18 if exact else 12)
    a, b = _curves(four), _curves(one)
    if exact:
        _same(a, b)
    else:
        for k in a:
            if a[k].dtype.kind in "fi":
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
            else:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        np.testing.assert_array_equal(a["env_steps"], b["env_steps"])


def test_max_batch_splitting_equals_one_batch(tmp_path, reference):
    out = tmp_path / "split"
    assert sweep.main([*SMALL, "--out", str(out), "--max-batch", "2"]) == 0
    _same(_curves(out), reference)


def test_kill_and_resume_equals_uninterrupted(tmp_path, reference):
    out = tmp_path / "killed"
    args = [*SMALL, "--out", str(out), "--chunk-seconds", "0.05", "--set", "dra.episodes=30"]
    p = subprocess.Popen([sys.executable, "-m", "dra_jax.sweep", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if ckpt.is_dir() and any(ckpt.glob("*.npz")):
            break
        time.sleep(0.02)
    assert p.poll() is None, "the sweep ended before it could be killed"
    p.kill()
    p.wait()
    assert not (out / "summary.json").exists()
    state = np.load(next(ckpt.glob("*.npz")))
    assert len(state.files) > 10
    proc = _cli([*args, "--resume"])
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stderr
    assert not ckpt.exists()  # cleaned up once the results are written
    _same(_curves(out), reference)


def _interrupted(tmp_path):
    """A sweep folder with a checkpoint, made by killing a run after its first chunk."""
    out = tmp_path / "ck"
    args = [*SMALL, "--out", str(out), "--chunk-seconds", "0.05"]
    p = subprocess.Popen([sys.executable, "-m", "dra_jax.sweep", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not list((out / "checkpoint").glob("*.npz")):
        time.sleep(0.02)
    p.kill()
    p.wait()
    files = list((out / "checkpoint").glob("*.npz"))
    assert files
    return out, args, files[0]


def test_corrupted_or_mismatched_checkpoint_is_refused(tmp_path):
    out, args, f = _interrupted(tmp_path)
    good = f.read_bytes()
    # another config (lam changed) -> refused, nothing written
    proc = _cli([*args, "--resume", "--set", "dra.lam=0.3"])
    assert proc.returncode == 2 and "another config" in proc.stderr, proc.stderr
    assert not (out / "summary.json").exists()
    # a corrupted file -> refused
    f.write_bytes(good[: len(good) // 2])
    proc = _cli([*args, "--resume"])
    assert proc.returncode == 2 and "unreadable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists()
    # nothing to resume from
    proc = _cli([*SMALL, "--out", str(tmp_path / "empty"), "--resume"])
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr


def test_nonfinite_run_is_reported_alone(tmp_path):
    """alpha_q = 1e38 overflows q within the first episode; that run is marked and stopped,
    the other runs are exactly those of a sweep without it, and the exit status is 3."""
    base = ["--config", str(ROOT / "configs/gridworld.toml"), "--set", "dra.episodes=20",
            "--set", "n_seeds=1", "--set", "eval.every=10", "--set", "eval.n_rollouts=5",
            "--set", "figures=[]", "--set", "sweep.sigma0=[3.0]", "--quiet"]
    bad_out, good_out = tmp_path / "bad", tmp_path / "good"
    assert sweep.main([*base, "--set", "sweep.alpha_q=[0.1, 1e38, 0.2]", "--out", str(bad_out)]) == 3
    assert sweep.main([*base, "--set", "sweep.alpha_q=[0.1, 0.2]", "--out", str(good_out)]) == 0
    s = json.loads((bad_out / "summary.json").read_text())
    assert [r["index"] for r in s["nonfinite_runs"]] == [1]
    assert s["runs"][1]["nonfinite_after_episodes"] is not None
    assert s["runs"][0]["nonfinite_after_episodes"] is None
    bad, good = _curves(bad_out), _curves(good_out)
    for k in ("objective", "sigma", "q"):  # axes: sigma0[1] x alpha_q x seed[1]
        np.testing.assert_array_equal(bad[k][0, 0], good[k][0, 0])
        np.testing.assert_array_equal(bad[k][0, 2], good[k][0, 1])
    assert np.isnan(bad["objective"][0, 1, 0, -1])  # stopped: no later evaluations
