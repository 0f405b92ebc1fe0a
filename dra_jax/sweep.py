"""The sweep command: a config -> its grid of runs -> one compiled, vmapped call -> results.

    python -m dra_jax.sweep --config configs/gridworld.toml [--out DIR] [--set dra.lam=0.1 ...]
                            [--resume] [--max-batch N] [--cpu-devices N] [--quiet]

Writes ``summary.json``, ``curves.npz`` and ``figures/*.png`` into the output folder, each file
atomically. A bad config is reported naming the key, with exit status 2 and nothing written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from dra_jax import config as config_mod
from dra_jax.config import ConfigError
from dra_jax.results import GridResults, atomic_savez, atomic_write_json
from dra_jax.runtime.checkpoint import CheckpointError
from dra_jax.runtime.compile_cache import enable_compile_cache
from dra_jax.runtime.execution import ExecOptions


class Progress:
    """Progress lines on stderr: what is done, elapsed time, and an ETA."""

    def __init__(self, total: float, unit: str = "episodes", stream=None, min_interval: float = 2.0):
        self.total = max(float(total), 1.0)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.min_interval = min_interval
        self._last = -1e9

    def message(self, text: str) -> None:
        print(f"[dra_jax {time.perf_counter() - self.t0:7.1f}s] {text}", file=self.stream, flush=True)

    def notice(self, text: str) -> None:
        """A line that is not progress (resumes, warnings): printed even with --quiet."""
        print(f"[dra_jax {time.perf_counter() - self.t0:7.1f}s] {text}", file=sys.stderr, flush=True)

    def update(self, done: float, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval and done < self.total:
            return
        self._last = now
        el = now - self.t0
        frac = min(max(done / self.total, 0.0), 1.0)
        eta = el * (1 - frac) / frac if frac > 0 else float("nan")
        eta_s = f"{eta:6.1f}s" if np.isfinite(eta) else "     ?"
        self.message(f"{done:,.0f}/{self.total:,.0f} {self.unit} ({100 * frac:5.1f}%)  "
                     f"elapsed {el:6.1f}s  ETA {eta_s}{'  ' + extra if extra else ''}")


def build_outputs(cfg: dict, results: GridResults) -> tuple[dict, dict]:
    """``(summary, arrays)``: the content of ``summary.json`` and ``curves.npz`` (per-run
    arrays reshaped to the grid's axes, ``axis_<i>_<name>`` holding each axis's values)."""
    from dra_jax import __version__

    axes = config_mod.grid_axes(cfg)
    shape = config_mod.grid_shape(cfg)
    runs = list(config_mod.iter_run_params(cfg))
    records = []
    for i, run in enumerate(runs):
        rec = {"index": i, "params": {k: v for k, v in run["point"].items() if k != "seed"},
               "seed": run["seed"], "final": results.finals[i]}
        if results.run_extra is not None:
            rec.update(results.run_extra[i])
        records.append(rec)
    summary = {
        "config": {k: v for k, v in cfg.items()},
        "grid_axes": [{"name": n, "values": v} for n, v in axes],
        "grid_shape": list(shape),
        "runs": records,
        "timing": results.timing,
        "version": __version__,
        **results.summary,
    }
    arrays = {}
    n = len(runs)
    for k, v in results.curves.items():
        v = np.asarray(v)
        if v.shape[0] != n:
            raise RuntimeError(f"curve {k!r} has leading size {v.shape[0]}, expected {n} runs")
        arrays[k] = v.reshape(shape + v.shape[1:])
    for k, v in results.arrays.items():
        arrays[k] = np.asarray(v)
    for i, (name, values) in enumerate(axes):
        arrays[f"axis_{i}_{name}"] = np.asarray(values)
    return summary, arrays


def write_outputs(cfg: dict, results: GridResults, out: Path) -> list[Path]:
    """Write summary.json, curves.npz and the config's figures into ``out``."""
    spec = config_mod.task_spec(cfg["task"])
    summary, arrays = build_outputs(cfg, results)
    out.mkdir(parents=True, exist_ok=True)
    # results first: a figure that fails never loses them
    atomic_savez(out / "curves.npz", arrays)
    atomic_write_json(out / "summary.json", summary)
    paths = [out / "summary.json", out / "curves.npz"]
    if spec.plot is not None and cfg["figures"]:
        try:
            paths.extend(spec.plot(cfg, results, out / "figures"))
        except Exception as e:
            print(f"warning: figures of {cfg['name']} failed ({type(e).__name__}: {e}); "
                  f"results are written in {out}", file=sys.stderr)
    return paths


def _check_distributed_args(args) -> str | None:
    given = [a is not None for a in (args.coordinator, args.num_processes, args.process_id)]
    if any(given) and not all(given):
        return "--coordinator, --num-processes and --process-id go together"
    if all(given):
        if args.distributed:
            return "--distributed reads the cluster's environment: drop --coordinator & co."
        if args.num_processes < 1:
            return "--num-processes: expected an integer >= 1"
        if not 0 <= args.process_id < args.num_processes:
            return f"--process-id: expected an integer in [0, {args.num_processes - 1}]"
        if ":" not in args.coordinator:
            return "--coordinator: expected HOST:PORT"
    return None


def _init_distributed(args) -> tuple[int, int]:
    """``jax.distributed.initialize`` before anything starts a JAX backend, when asked;
    returns ``(process count, this process's index)``."""
    if args.coordinator is None and not args.distributed:
        return 1, 0
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk
    if args.distributed:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)
    return jax.process_count(), jax.process_index()


def _choose_cpu_devices(args) -> None:
    """Set the host device count in XLA_FLAGS before anything starts JAX (importing gymnax, which
    validating a config does, starts it): ``--cpu-devices``, or one device per core with at least
    4 runs a device (so padding stays small). Only the CPU platform is affected, and no number
    depends on it. A count the user put in XLA_FLAGS wins."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return  # the user's count wins (and the raw config need not be read)
    n_dev = args.cpu_devices
    if n_dev is None:
        try:  # the grid's size from the raw file (validation comes next and reports errors)
            raw = config_mod.load_raw(args.config, args.overrides)
            n_runs = int(raw.get("n_seeds", 1))
            for values in (raw.get("sweep") or {}).values():
                n_runs *= max(1, len(values)) if isinstance(values, list) else 1
            n_runs *= max(1, len(raw.get("variants") or {}))
        except (ConfigError, TypeError, ValueError):
            n_runs = 1
        n_dev = max(1, min(os.cpu_count() or 1, n_runs // 4))
    config_mod.set_host_device_count(n_dev)


def main(argv: list[str] | None = None) -> int:
    """The command; called in-process (tests, scripts), it leaves ``XLA_FLAGS`` as it found it
    (the host device count it sets is read once, when JAX starts)."""
    with config_mod.xla_flags_kept():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dra_jax.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="TOML config (see configs/)")
    ap.add_argument("--out", default=None, help="output folder (default: the config's `out`)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value; the value parses as a TOML literal (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted sweep from the checkpoints in the output folder")
    ap.add_argument("--max-batch", type=int, default=None, metavar="N",
                    help="runs per compiled batch (overrides the config's max_batch; 0: automatic)")
    ap.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                    help="on CPU, split the batch over N host devices (default: one per core, "
                         "at most one per 4 runs); sets XLA_FLAGS before JAX starts, unless "
                         "XLA_FLAGS already sets a host device count")
    ap.add_argument("--no-compile-cache", action="store_true",
                    help="do not use JAX's persistent compilation cache (default: on, in "
                         "$XDG_CACHE_HOME/dra_jax/jax-compile or ~/.cache/dra_jax/jax-compile)")
    ap.add_argument("--chunk-seconds", type=float, default=2.0, metavar="S",
                    help="target seconds between progress lines and checkpoints (default 2)")
    mh = ap.add_argument_group("several processes / hosts (jax.distributed)")
    mh.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="address of process 0's coordinator (with --num-processes, --process-id)")
    mh.add_argument("--num-processes", type=int, default=None, metavar="N")
    mh.add_argument("--process-id", type=int, default=None, metavar="K")
    mh.add_argument("--distributed", action="store_true",
                    help="initialize jax.distributed from the cluster's environment (SLURM, ...)")
    args = ap.parse_args(argv)
    if not args.chunk_seconds > 0:
        print("error: config error: --chunk-seconds: expected a number > 0", file=sys.stderr)
        return 2
    if args.cpu_devices is not None and args.cpu_devices < 1:
        print("error: config error: --cpu-devices: expected an integer >= 1", file=sys.stderr)
        return 2
    if args.max_batch is not None and args.max_batch < 0:
        print("error: config error: --max-batch: expected an integer >= 0", file=sys.stderr)
        return 2
    err = _check_distributed_args(args)
    if err:
        print(f"error: config error: {err}", file=sys.stderr)
        return 2
    _choose_cpu_devices(args)
    n_proc, proc = _init_distributed(args)
    if not args.no_compile_cache:
        enable_compile_cache()
    try:
        cfg = config_mod.load(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out if args.out is not None else cfg["out"])
    if out.exists() and not out.is_dir():
        print(f"error: config error: --out: {out} exists and is not a folder", file=sys.stderr)
        return 2
    if args.resume and not (out / "checkpoint").is_dir():
        print(f"error: --resume: no checkpoint in {out}/checkpoint to resume from", file=sys.stderr)
        return 2
    spec = config_mod.task_spec(cfg["task"])
    runs = list(config_mod.iter_run_params(cfg))
    if n_proc > 1 and not spec.multi_process:
        print(f"error: config error: --num-processes: task {cfg['task']!r} runs in one process "
              "(several processes split the lane tasks: "
              + ", ".join(t for t in config_mod.known_tasks() if config_mod.task_spec(t).multi_process)
              + ")", file=sys.stderr)
        return 2
    if n_proc > len(runs):
        print(f"error: config error: --num-processes: {n_proc} processes for {len(runs)} runs; "
              "use at most one process per run", file=sys.stderr)
        return 2
    total = sum(r["dra"]["episodes"] for r in runs)
    quiet = args.quiet or proc > 0  # process 0 reports for all
    progress = Progress(total, "run-episodes", stream=open(os.devnull, "w") if quiet else None)
    progress.options = ExecOptions(out=out, resume=args.resume,
                                   max_batch=args.max_batch if args.max_batch is not None else cfg["max_batch"],
                                   chunk_seconds=args.chunk_seconds)
    if not args.resume and (out / "checkpoint").is_dir() and proc == 0:
        shutil.rmtree(out / "checkpoint")  # a fresh run never reuses old checkpoints
    if n_proc > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("dra_jax start")  # after the removal above
    progress.message(f"{cfg['name']}: task {cfg['task']}, {len(runs)} runs, grid "
                     + " x ".join(f"{n}[{len(v)}]" for n, v in config_mod.grid_axes(cfg)))
    try:
        results = spec.run(cfg, runs, progress)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with --resume (checkpoints in {out}/checkpoint)",
              file=sys.stderr)
        return 130
    paths = write_outputs(cfg, results, out) if proc == 0 else []
    t = results.timing
    progress.message(f"done: compile {t.get('compile_s', float('nan')):.1f}s, run {t.get('run_s', float('nan')):.1f}s; "
                     f"wrote {', '.join(str(p) for p in paths)}")
    bad = results.summary.get("nonfinite_runs") or []
    if bad:
        print(f"warning: {len(bad)} run(s) became non-finite (q or sigma NaN/inf): "
              + ", ".join(f"run {b['index']} after {b['after_episodes']} episodes" for b in bad)
              + "; see summary.json 'nonfinite_runs' (exit status 3)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
