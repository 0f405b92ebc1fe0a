"""Several processes through jax.distributed (a loopback coordinator on this machine): the same
numbers as one process; bad flag combinations exit 2."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--config", str(ROOT / "configs/gridworld.toml"), "--set", "dra.episodes=30",
        "--set", "n_seeds=3", "--set", "sweep.sigma0=[1.0, 3.0]", "--set", "eval.every=10",
        "--set", "eval.n_rollouts=5", "--set", "figures=[]", "--quiet", "--cpu-devices", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_numbers_of_one(tmp_path):
    one = subprocess.run([sys.executable, "-m", "dra_jax.sweep", *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "dra_jax.sweep", *ARGS, "--out",
                               str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (1, 0)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    a = json.loads((tmp_path / "one" / "summary.json").read_text())
    b = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert b["timing"]["processes"] == 2
    assert [r["final"] for r in a["runs"]] == [r["final"] for r in b["runs"]]
    with np.load(tmp_path / "one" / "curves.npz") as x, np.load(tmp_path / "two" / "curves.npz") as y:
        for k in ("objective", "q", "sigma", "env_steps"):
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("extra, text", [
    (["--coordinator", "127.0.0.1:1"], "go together"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
])
def test_bad_process_flags_exit_2(tmp_path, extra, text):
    p = subprocess.run([sys.executable, "-m", "dra_jax.sweep", *ARGS, "--out", str(tmp_path / "x"),
                        *extra], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and text in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
