"""The fit command and its Python entry point.

    python -m dra_jax.fit --config configs/fit_stimulus_response.toml --data FILE.csv
                          [--out DIR] [--set section.key=value ...] [--subjects ID,ID] [--resume]
                          [--models NAME,NAME] [--posterior SUBJECT] [--cpu-devices N]
                          (--cpu-devices is read by dra_jax/fit.py before JAX starts)

Writes, each atomically and results before figures: ``fits.csv`` (one row per subject x model:
``subject, model, loglik, loglik_se, n_trials, n_missed, aic, bic`` and one column per free
parameter), ``trials.csv`` (per answered trial of every winning fit: ``subject, model, block,
trial, p_chosen, loglik``; not for the grid-world), ``summary.json`` (config, data summary,
per-model totals, timing) and ``figures/*.png``. Subjects are fitted in batches of
``fit.max_batch``; after every batch the finished (subject, model) rows go to ``fits.partial.csv``,
which ``--resume`` continues from. A config without ``--data`` but with a ``[recovery]`` section
simulates its subjects (:mod:`dra_jax.fitting.recovery`). ``--posterior SUBJECT`` fits nothing: it
draws that subject's posterior under ``posterior.model`` by PMMH (:mod:`dra_jax.fitting.posterior`)
and writes ``posterior_<subject>_<model>.csv`` / ``.json`` and the figure. Bad config or data: exit
status 2, nothing written.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dra_jax.config import ConfigError, check_out_path
from dra_jax.fitting import data as data_mod
from dra_jax.fitting import optimize, spec
from dra_jax.fitting.api import BASE_COLS, FitResults, bms_block, fit, read_config  # noqa: F401
from dra_jax.results import atomic_write_bytes, atomic_write_json


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_results(res: FitResults, out: Path) -> None:
    """fits.csv, trials.csv (each winning fit's answered trials: ``subject, model, block, trial,
    p_chosen, loglik``; the stimulus-response and bandit tasks), with hierarchical EM also
    fits_ml.csv and group.csv, with cross-validation cv.csv, and summary.json (before any
    figure)."""
    _write_csv(out / "fits.csv", res.fits)
    if isinstance(res.extra.get("trials"), pd.DataFrame):
        _write_csv(out / "trials.csv", res.extra["trials"])
    for key, name in (("fits_ml", "fits_ml.csv"), ("group", "group.csv"), ("cv_table", "cv.csv")):
        if isinstance(res.extra.get(key), pd.DataFrame):
            _write_csv(out / name, res.extra[key])
    cfg = {k: v for k, v in res.config.items()}
    summary = {"config": cfg, "data": res.data_summary, "totals": res.totals, "timing": res.timing}
    summary.update({k: v for k, v in res.extra.items() if k != "dataset"
                    and not isinstance(v, (pd.DataFrame, np.ndarray))})
    if "bms" not in summary:
        block = bms_block(res)
        if block is not None:
            summary["bms"] = res.extra["bms"] = block
    atomic_write_json(out / "summary.json", summary)


def select_models(cfg: dict, names: list[str]) -> None:
    """Keep only the models ``names`` of a validated config (``--models``), in that order;
    an unknown name is a ConfigError."""
    unknown = [m for m in names if m not in cfg["models"]]
    if unknown or not names:
        raise ConfigError("--models", f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
                          f"the config has {', '.join(cfg['models'])}")
    cfg["models"] = {m: cfg["models"][m] for m in dict.fromkeys(names)}
    if "recovery" in cfg:
        cfg["recovery"]["generating"] = [g for g in cfg["recovery"]["generating"]
                                         if g in cfg["models"]] or list(cfg["models"])


class _Progress:
    def __init__(self, quiet: bool):
        self.quiet, self.t0, self.last = quiet, time.perf_counter(), -1e9

    def __call__(self, done, total, model, unit="subject-models"):
        now = time.perf_counter()
        if self.quiet or (now - self.last < 2.0 and done < total):
            return
        self.last = now
        el = now - self.t0
        if unit != "subject-models":  # EM: iterations of a cap, no ETA
            print(f"[dra_jax.fit {el:7.1f}s] {done}/{total} {unit} ({model})", file=sys.stderr,
                  flush=True)
            return
        eta = el * (total - done) / done if done > 0 else float("nan")
        print(f"[dra_jax.fit {el:7.1f}s] {done:.1f}/{total} subject-models ({model})  "
              f"ETA {eta:7.1f}s", file=sys.stderr, flush=True)


def _posterior(cfg, ds, subject, model, out: Path, quiet: bool) -> int:
    """``--posterior``: PMMH of one subject, its files written (results before the figure)."""
    from dra_jax.fitting import posterior

    t0 = time.perf_counter()

    def prog(name, f):
        if not quiet:
            print(f"[dra_jax.fit {time.perf_counter() - t0:7.1f}s] posterior {subject} "
                  f"({name}): {100 * f:5.1f}%", file=sys.stderr, flush=True)

    res = posterior.run(cfg, ds, subject, model, progress=prog)
    paths = posterior.write(res, out)  # the draws and the JSON first, then the figure
    if not quiet:
        for p in paths.values():
            print(f"wrote {p}", file=sys.stderr)
        for p, sm in res["summary"].items():
            print(f"{p:>10}: median {sm['median']:.4g} [{sm['q2.5']:.4g}, {sm['q97.5']:.4g}]  "
                  f"R-hat {sm['rhat']:.3f}  ESS bulk {sm['ess_bulk']:.0f} tail "
                  f"{sm['ess_tail']:.0f}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dra_jax.fit", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default=None, help="long-format CSV (subject, block, trial, state, "
                                                 "action, reward); omit for a [recovery] config")
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--subjects", default=None, help="comma-separated subject ids")
    ap.add_argument("--models", default=None, help="comma-separated model names of the config's "
                                                   "[models] to fit (default: all)")
    ap.add_argument("--posterior", default=None, metavar="SUBJECT",
                    help="draw this subject's posterior (PMMH, the config's [posterior]) "
                         "instead of fitting")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-compile-cache", action="store_true",
                    help="do not use JAX's persistent compilation cache (default: on, in "
                         "$XDG_CACHE_HOME/dra_jax/jax-compile, as the sweep command)")
    args = ap.parse_args(argv)
    try:
        cfg = spec.load(args.config, args.overrides)
        if args.out is not None:
            bad = check_out_path(args.out) if args.out else "expected a folder path, got ''"
            if bad:
                raise ConfigError("--out", bad)
            cfg["out"] = args.out
        if args.models:
            select_models(cfg, [m.strip() for m in args.models.split(",") if m.strip()])
        out = Path(cfg["out"])
        optimize.n_devices(cfg)  # more devices than this process has: an error before any work
        if args.data is None:
            if "recovery" not in cfg:
                raise ConfigError("--data", "required (the config has no [recovery] section)")
            ds = None
        else:
            ds = data_mod.load_for(args.data, cfg)
            if args.subjects:
                want = [s.strip() for s in args.subjects.split(",") if s.strip()]
                unknown = [s for s in want if s not in ds.subjects]
                if unknown:
                    raise ConfigError("--subjects", f"not in the data: {', '.join(unknown)}")
                ds = ds.subset(want)
        if args.posterior is not None:
            from dra_jax.fitting import posterior

            if ds is None:
                raise ConfigError("--data", "required with --posterior")
            post_subject, post_model = posterior.check(cfg, ds, args.posterior)
        if cfg["group"]["method"] == "em" and args.posterior is None:
            from dra_jax.fitting import group

            group.check(cfg, len(ds.subjects) if ds is not None else
                        len(cfg["recovery"]["generating"]) * cfg["recovery"]["n_subjects"])
        if cfg["compare"]["cv"] != "none" and ds is not None:
            from dra_jax.fitting import cv

            cv.check(cfg, ds)
        done = done_trials = done_group = None
        partial, partial_trials = out / "fits.partial.csv", out / "trials.partial.csv"
        partial_group = out / "group.partial.json"
        if args.resume and partial.is_file():
            done = pd.read_csv(partial, dtype={"subject": str})
            if partial_trials.is_file():
                done_trials = pd.read_csv(partial_trials, dtype={"subject": str})
        if args.resume and partial_group.is_file():
            import json

            done_group = json.loads(partial_group.read_text())
            for g in done_group.values():
                for r in g["fits"]:
                    r["subject"] = str(r["subject"])
    except (ConfigError, data_mod.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_compile_cache:  # a repeated fit (same models and shapes) skips XLA compiles
        from dra_jax.runtime.compile_cache import enable_compile_cache

        enable_compile_cache()
    prog = _Progress(args.quiet)
    if args.posterior is not None:
        return _posterior(cfg, ds, post_subject, post_model, out, args.quiet)
    if ds is None:
        from dra_jax.fitting import recovery

        res = recovery.run(cfg, progress=prog)
    else:
        def on_batch(fits_df, trials_df):
            if trials_df is not None:
                _write_csv(partial_trials, trials_df)
            _write_csv(partial, fits_df)

        def on_group(done_models):
            atomic_write_json(partial_group, done_models)

        res = fit(ds, cfg, progress=prog, done=done, done_trials=done_trials,
                  on_batch=on_batch, done_group=done_group, on_group=on_group)
    if cfg["compare"]["cv"] != "none":
        from dra_jax.fitting import cv

        res.extra["cv_table"] = cv.run(cfg, res.extra["dataset"], progress=prog)
        res.extra["cv"] = cv.summarize(res.extra["cv_table"], res.fits)
    if "ppc" in cfg["figures"]:
        from dra_jax.fitting import ppc

        res.extra["ppc"] = ppc.run(cfg, res.extra["dataset"], res.fits, seed=cfg["seed"])
        res.extra["ppc"]["best"] = min(res.totals, key=lambda m: res.totals[m]["aic"])
    write_results(res, out)
    for path in (partial, partial_trials, partial_group):
        if path.exists():
            path.unlink()
    from dra_jax.fitting import figures as figs

    for path in figs.draw(res, out / "figures"):
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    if not args.quiet:
        print(res.fits.to_string(max_rows=40), file=sys.stderr)
    return 0
