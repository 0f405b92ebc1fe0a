"""The sweep command: a config -> its grid of runs -> one compiled, vmapped call -> results.

    python -m dra_jax.sweep --config configs/gridworld.toml [--out DIR] [--set dra.lam=0.1 ...]

Writes ``summary.json``, ``curves.npz`` and ``figures/*.png`` into the output folder, each file
atomically. A bad config is reported naming the key, with exit status 2 and nothing written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dra_jax import config as config_mod
from dra_jax.config import ConfigError
from dra_jax.results import Results, atomic_savez, atomic_write_json


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


def write_outputs(cfg: dict, results: Results, out: Path) -> list[Path]:
    """Write summary.json, curves.npz and the config's figures into ``out``."""
    from dra_jax import __version__

    spec = config_mod.task_spec(cfg["task"])
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
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if spec.plot is not None and cfg["figures"]:
        paths.extend(spec.plot(cfg, results, out / "figures"))
    atomic_savez(out / "curves.npz", arrays)
    atomic_write_json(out / "summary.json", summary)
    return [out / "summary.json", out / "curves.npz", *paths]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dra_jax.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="TOML config (see configs/)")
    ap.add_argument("--out", default=None, help="output folder (default: the config's `out`)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value; the value parses as a TOML literal (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    try:
        cfg = config_mod.load(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out if args.out is not None else cfg["out"])
    if out.exists() and not out.is_dir():
        print(f"error: config error: --out: {out} exists and is not a folder", file=sys.stderr)
        return 2
    spec = config_mod.task_spec(cfg["task"])
    runs = list(config_mod.iter_run_params(cfg))
    total = sum(r["dra"]["episodes"] for r in runs)
    progress = Progress(total, "run-episodes", stream=open(__import__("os").devnull, "w") if args.quiet else None)
    progress.message(f"{cfg['name']}: task {cfg['task']}, {len(runs)} runs, grid "
                     + " x ".join(f"{n}[{len(v)}]" for n, v in config_mod.grid_axes(cfg)))
    results = spec.run(cfg, runs, progress)
    paths = write_outputs(cfg, results, out)
    t = results.timing
    progress.message(f"done: compile {t.get('compile_s', float('nan')):.1f}s, run {t.get('run_s', float('nan')):.1f}s; "
                     f"wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
