"""``python -m dra_jax.paper [--quick] [--out DIR] [--only NAME,...] [--resume]
[--compare-timing DIR] [--cpu-devices N]``: the whole paper.

Runs every figure's config of the paper (:data:`dra_jax.paper.runs.RUNS`) one after another
through :func:`dra_jax.run`, each into ``OUT/<name>`` (``summary.json``, ``curves.npz``,
``figures/``), then writes ``OUT/report.md``: a section per figure, the claims table computed
from those outputs (:mod:`dra_jax.paper.claims`) and the timing.

A config's outputs are complete when ``OUT/<name>/paper_run.json`` is written (after its
results and figures) and records the same mode and overrides; ``--resume`` skips those and
reruns the rest. The report is rewritten after every config, so an interrupted run leaves a
report of what it has finished.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dra_jax.config import set_host_device_count, xla_flags_kept
from dra_jax.paper.runs import BY_NAME, MARKER, RUNS, is_complete, marker_of  # noqa: F401
from dra_jax.results import atomic_write_json


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m dra_jax.paper",
                                description="Run every figure's config of the DRA paper and write "
                                            "OUT/report.md (claims table, figures, timing).")
    p.add_argument("--quick", action="store_true",
                   help="few seeds, episodes and grid points (a smoke run, mostly compilation; "
                        "its numbers are not expected to reproduce the paper)")
    p.add_argument("--out", default="results/paper", help="output folder (default results/paper)")
    p.add_argument("--only", default=None,
                   help="comma-separated config names to run, of: " + ", ".join(BY_NAME))
    p.add_argument("--resume", action="store_true",
                   help="skip configs whose outputs in OUT are complete for this mode")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compare-timing", default=None, metavar="DIR",
                   help="the OUT of an earlier session: the report's timing table shows its "
                        "wall time per config beside, before -> after")
    p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="host CPU devices the runs' batches are split over (default: one per "
                        "core; a count already in XLA_FLAGS wins). No number depends on it")
    args = p.parse_args(argv)
    if args.cpu_devices is not None and args.cpu_devices < 1:
        p.error(f"--cpu-devices: must be >= 1, got {args.cpu_devices}")
    if args.compare_timing is not None and not Path(args.compare_timing).is_dir():
        p.error(f"--compare-timing: {args.compare_timing} is not a folder (an earlier OUT)")
    names = [r.name for r in RUNS]
    if args.only is not None:
        want = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in want if s not in BY_NAME]
        if bad or not want:
            p.error(f"--only: unknown config name(s) {', '.join(bad) or '(none given)'}; "
                    f"allowed: {', '.join(BY_NAME)}")
        names = [n for n in names if n in want]
    return args, names


def run_one(name: str, out: Path, quick: bool, progress: bool) -> dict:
    """Run one config into ``OUT/<name>`` and write its completion record (last)."""
    import dra_jax

    spec = BY_NAME[name]
    overrides = spec.overrides(quick)
    t0 = time.perf_counter()
    res = dra_jax.run(spec.config, set=overrides, out=out / name, progress=progress)
    wall = time.perf_counter() - t0
    t = res.timing
    rec = {"name": name, "config": str(spec.config.name), "quick": quick, "overrides": overrides,
           "compile_s": t.get("compile_s"), "run_s": t.get("run_s"),
           "equal_search_s": t.get("equal_search_s"), "wall_s": round(wall, 3),
           "finished_unix": time.time()}
    atomic_write_json(out / name / MARKER, rec)
    return rec


def main(argv=None) -> int:
    """The command; called in-process (tests, scripts), it leaves ``XLA_FLAGS`` as it found it
    (the host device count it sets is read once, when JAX starts)."""
    with xla_flags_kept():
        return _main(argv)


def _main(argv) -> int:
    args, names = parse_args(sys.argv[1:] if argv is None else argv)
    from dra_jax.paper.report import write_report

    # every config's batch is split over the host's cores (the sweep command's default): set
    # before the first config starts JAX's CPU backend
    set_host_device_count(args.cpu_devices or os.cpu_count() or 1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    failed = []
    for i, name in enumerate(names, 1):
        head = f"[paper] {i}/{len(names)} {name}"
        if args.resume and is_complete(out, name, args.quick):
            print(f"{head}: complete in {out / name}, skipped (--resume)", file=sys.stderr, flush=True)
            continue
        print(f"{head}: running configs/{BY_NAME[name].config.name}"
              f"{' --quick' if args.quick else ''} {' '.join(BY_NAME[name].full)}".rstrip(),
              file=sys.stderr, flush=True)
        try:
            rec = run_one(name, out, args.quick, progress=not args.no_progress)
        except Exception as e:
            failed.append(name)
            print(f"{head}: FAILED ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
            continue
        print(f"{head}: done in {rec['wall_s']:.1f} s", file=sys.stderr, flush=True)
        # a report of what is finished, after each config
        write_report(out, args.quick, names, compare=args.compare_timing)
    path = write_report(out, args.quick, names, session_wall_s=time.perf_counter() - t_start,
                        compare=args.compare_timing)
    print(f"[paper] report: {path}", file=sys.stderr)
    if failed:
        print(f"[paper] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
