"""airspeed velocity (asv) benchmarks: the timings tracked across commits.

    asv run --python=same --quick          # this checkout, in the current environment
    asv continuous main HEAD               # two commits side by side (asv builds each)
    asv publish && asv preview             # the history as a web page

Each timing excludes compilation (``setup`` compiles, and a ``track_*_compile_s`` reports it
apart); every timed call ends with ``block_until_ready``. The numba yardsticks and the committed
records of ``benchmarks/results/`` stay with the scripts beside this folder.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lane_batch(runs: int, episodes: int):
    import dra_jax

    task = dra_jax.TabularTask.from_maze(["S...#...", ".##.#.#.", "...#..#G", ".#...#.."])
    dra = dra_jax.load_config({"task": "tabular", "task_params": {"maze": "SG"}})["dra"]
    st = dra_jax.AgentStatic(episodes=episodes, eval_every=max(1, episodes // 4), n_rollouts=10,
                             max_steps=200)
    params = dra_jax.stack_params([dra_jax.make_run_params(dra, s) for s in range(runs)])
    return task, st, params


class LaneEngine:
    """Algorithm 1 on a 32-cell maze: 64 runs x 200 episodes in one compiled, vmapped call."""

    timeout = 900

    def setup(self):
        import jax

        import dra_jax

        self.task, self.st, self.params = _lane_batch(64, 200)
        t0 = time.perf_counter()
        jax.block_until_ready(dra_jax.train(self.task, self.st, self.params))
        self.first_call_s = time.perf_counter() - t0

    def time_train_64_runs(self):
        import jax

        import dra_jax

        jax.block_until_ready(dra_jax.train(self.task, self.st, self.params))

    def track_first_call_s(self):
        """The first call's wall time (tracing, compilation and one run)."""
        return self.first_call_s

    track_first_call_s.unit = "seconds"


class FitLikelihood:
    """The fitter on two subjects of the shipped synthetic set-size data, the softmax Q-learner
    (deterministic likelihood: CMA-ES plus the Newton polish)."""

    timeout = 900

    def setup(self):
        import tomllib

        import pandas as pd

        data = pd.read_csv(ROOT / "examples" / "data" / "stimulus_response_synthetic.csv",
                           dtype={"subject": str})
        self.data = data[data["subject"].isin(["s000", "s001"])]
        with open(ROOT / "configs" / "fit_stimulus_response.toml", "rb") as f:
            cfg = tomllib.load(f)
        cfg["models"] = {"qlearn": cfg["models"]["qlearn"]}
        self.cfg = cfg
        self.time_fit_qlearn_2_subjects()  # compile

    def time_fit_qlearn_2_subjects(self):
        import dra_jax

        dra_jax.fit(self.data, self.cfg)


class SweepCommand:
    """``python -m dra_jax.sweep`` end to end as a user runs it: a fresh process, the shipped
    grid-world config at 500 episodes, with and without the compilation cache."""

    timeout = 1800
    number = 1
    repeat = 1

    def _run(self, cache: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "dra_jax.sweep", "--config",
                   str(ROOT / "configs" / "gridworld.toml"), "--set", "dra.episodes=500",
                   "--out", str(Path(tmp) / "out")]
            if not cache:
                cmd.append("--no-compile-cache")
            env = {**os.environ, "DRA_JAX_CACHE_DIR": str(Path(tmp) / "cache")}
            if cache:  # warm the cache first
                subprocess.run(cmd, check=True, capture_output=True, env=env)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            return time.perf_counter() - t0

    def track_wall_cold_s(self):
        return self._run(cache=False)

    track_wall_cold_s.unit = "seconds"

    def track_wall_warm_cache_s(self):
        return self._run(cache=True)

    track_wall_warm_cache_s.unit = "seconds"
