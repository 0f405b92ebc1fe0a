"""Benchmark (issue 12): every row of the issue's end-to-end table, the tree before the issue's
work against the tree now, each beside its compiled-code yardstick, in one record.

    python benchmarks/bench_end_to_end.py --old /path/to/before --new . \\
        --rows fig1b,grid200,mountain_car,paper [--json benchmarks/results/end_to_end_cpu.json]

Every command runs as a user runs it, in a fresh subprocess with ``PYTHONPATH`` (and the working
folder) set to its tree, so the old tree's package and configs are the ones measured. For each row
the old and the new tree run back to back, so they see the same load (the load average at the
start of each command is recorded: on a shared machine only same-moment ratios mean something).

* ``fig1b``: ``python -m dra_jax.sweep --config configs/gridworld.toml`` (20 runs x 5000
  episodes): the old tree; the new tree with a cold compilation (``--no-compile-cache``); the new
  tree again with its compilation cache warm (a fresh cache folder filled by one run of the same
  config first: a config that differs in a shape compiles other programs). Wall
  time from process start to exit, time to the first progress line, and the command's own
  compile/run split. Yardstick: ``benchmarks/numba_ref.py`` (20 runs, one core) plus its compile.
* ``grid200``: the same config with 50 seeds (200 runs) against numba's 200 runs on one core.
* ``mountain_car``: ``configs/mountain_car.toml`` (15 runs x 5000 episodes) against
  ``benchmarks/numba_mountain_car.py`` (the same 15 runs on one core).
* ``paper``: every shipped sweep config of the tree (``configs/*.toml`` but the ``fit_*``
  configs), one after another with default settings; configs of the same name alternate between
  the trees.

The JSON is updated row by row (a row measured again replaces its old record), so rows can be
measured in separate invocations; the figure (``--json`` with ``.png``) is redrawn from the whole
record each time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = ("fig1b", "grid200", "mountain_car", "paper")


def command(tree: Path, config: str, sets=(), extra=(), env_extra=None, timeout=7200) -> dict:
    """Run ``python -m dra_jax.sweep`` of ``tree`` on ``config``; wall, first-line and the
    command's own timing."""
    env = dict(os.environ, PYTHONPATH=str(tree), **(env_extra or {}))
    env.pop("XLA_FLAGS", None)
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, "-m", "dra_jax.sweep", "--config", str(tree / config), "--out", d,
                *extra]
        for x in sets:
            args += ["--set", x]
        load = os.getloadavg()[0]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.Popen(args, env=env, cwd=tree, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        first, tail = None, []
        for line in p.stdout:
            if first is None and line.startswith("[dra_jax"):
                first = time.perf_counter() - t0
            tail = (tail + [line])[-20:]
        rc = p.wait(timeout=timeout)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        res = {"config": config, "sets": list(sets), "extra": list(extra), "wall_s": round(wall, 2),
               "cpu_s": round(cpu, 2),
               "first_line_s": None if first is None else round(first, 2), "rc": rc,
               "loadavg_start": round(load, 2)}
        if rc != 0:
            return dict(res, error="".join(tail)[-2000:])
        s = json.loads((Path(d) / "summary.json").read_text())
    t = s.get("timing", {})
    for k in ("compile_s", "run_s", "env_steps", "env_steps_per_s", "figures_s", "results_s"):
        if k in t:
            res[k] = t[k]
    return res


def numba(module: str, **kw) -> dict:
    """The numba yardstick in a subprocess (one core): compile and run seconds."""
    code = (f"import json, sys, time; sys.path.insert(0, {str(HERE)!r}); import {module} as m; "
            f"t0 = time.perf_counter(); r = m.sweep(**{kw!r}); "
            f"r['wall_s'] = time.perf_counter() - t0; "
            f"print(json.dumps({{k: v for k, v in r.items() if k not in ('runs', 'final_objective', "
            f"'final_objective_last5')}}))")
    load = os.getloadavg()[0]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=7200)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["total_s_incl_compile"] = r["seconds"] + r["compile_s"]
    r["loadavg_start"] = round(load, 2)
    return r


def row_fig1b(old: Path, new: Path, seeds: int = 5) -> dict:
    sets = () if seeds == 5 else (f"n_seeds={seeds}",)
    rec = {"old": command(old, "configs/gridworld.toml", sets),
           "new_cold": command(new, "configs/gridworld.toml", sets, ("--no-compile-cache",))}
    with tempfile.TemporaryDirectory() as cache:
        env = {"DRA_JAX_CACHE_DIR": cache}
        command(new, "configs/gridworld.toml", sets, (), env)  # fill it (the same programs)
        rec["new_warm"] = command(new, "configs/gridworld.toml", sets, (), env)
    pairs = [(s0, sd) for s0 in (1.0, 3.0, 4.0, 5.0) for sd in range(seeds)]
    rec["numba"] = numba("numba_ref", runs=pairs, episodes=5000, q_init="zero")
    base = rec["numba"].get("total_s_incl_compile")
    if base:
        for k in ("old", "new_cold", "new_warm"):
            rec[k]["wall_vs_numba_incl_compile"] = round(rec[k]["wall_s"] / base, 3)
    return rec


def row_mountain_car(old: Path, new: Path) -> dict:
    rec = {"old": command(old, "configs/mountain_car.toml"),
           "new": command(new, "configs/mountain_car.toml", (), ("--no-compile-cache",))}
    rec["numba"] = numba("numba_mountain_car", psis=("R", "Q", "A"), seeds=5, episodes=5000)
    rate = rec["numba"].get("env_steps_per_s")
    for k in ("old", "new"):
        r = rec[k]
        if rate and r.get("env_steps_per_s"):
            r["per_core_vs_numba"] = round(r["env_steps_per_s"] / os.cpu_count() / rate, 3)
            r["wall_vs_numba_incl_compile"] = round(r["wall_s"] / rec["numba"]["total_s_incl_compile"], 3)
    return rec


LAST = ("mountain_car_baselines.toml", "planning_moves.toml", "planning_loo.toml", "planning.toml")


def row_paper(old: Path, new: Path, save=None, reuse: dict | None = None,
              done: dict | None = None) -> dict:
    """Every shipped sweep config of both trees, the long ones last; the new tree compiles cold
    (``--no-compile-cache``: the old tree had no cache). ``reuse``: the mountain_car row's
    records of the same command, not run twice. ``done``: a partial row of an interrupted
    invocation; its configs are kept and not run again."""
    names = lambda t: sorted(p.name for p in (t / "configs").glob("*.toml")  # noqa: E731
                             if not p.name.startswith("fit_"))
    o, n = names(old), names(new)
    order = sorted(set(o) | set(n), key=lambda c: (c in LAST and LAST.index(c) + 1, c))
    rec = {"old": list((done or {}).get("old", [])), "new": list((done or {}).get("new", []))}
    for c in order:
        for key, tree, have in (("old", old, o), ("new", new, n)):
            if c in have and f"configs/{c}" not in {r["config"] for r in rec[key]}:
                if c == "mountain_car.toml" and reuse and "error" not in reuse.get(key, {"error": 1}):
                    r = dict(reuse[key], reused_from="mountain_car row")
                else:
                    extra = ("--quiet",) + (("--no-compile-cache",) if key == "new" else ())
                    r = command(tree, f"configs/{c}", (), extra)
                rec[key].append(r)
                print(f"  paper {key} {c}: {r['wall_s']} s, CPU {r.get('cpu_s')} s (rc {r['rc']}, "
                      f"load {r['loadavg_start']})", flush=True)
                _paper_totals(rec)
                if save is not None:
                    save(rec)
    return rec


def _paper_totals(rec: dict) -> None:
    """Totals over the configs measured so far (a partial row says how many)."""
    for key in ("old", "new"):
        rec[f"{key}_total_s"] = round(sum(r["wall_s"] for r in rec[key]), 1)
        rec[f"{key}_total_cpu_s"] = round(sum(r.get("cpu_s", 0.0) for r in rec[key]), 1)
        rec[f"{key}_n_configs"] = len(rec[key])
        rec[f"{key}_failed"] = [r["config"] for r in rec[key] if r["rc"] != 0]


def draw(rec: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ROWS + ("blasts",) if r in rec["rows"]]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), squeeze=False)
    for ax, name in zip(axes[0], rows):
        r = rec["rows"][name]
        if name == "paper":
            common = {x["config"] for x in r["old"]} & {x["config"] for x in r["new"]}
            same = sum(x["wall_s"] for x in r["new"] if x["config"] in common)
            bars = {f"before ({r['old_n_configs']})": r.get("old_total_s"),
                    f"now, same {len(common)}": same,
                    f"now, all {r['new_n_configs']}": r.get("new_total_s")}
            target = 300.0
        elif name == "blasts":  # minutes -> seconds
            bars = {"before (extrapolated)": r.get("old_s"), "now": r.get("new_s")}
            target = 600.0
        else:
            news = [k for k in ("new_cold", "new_warm", "new") if k in r]
            bars = {"before": r["old"].get("wall_s"),
                    **{("now" if k == "new" else k.replace("new_", "now, ")): r[k].get("wall_s")
                       for k in news},
                    "numba": r["numba"].get("total_s_incl_compile")}
            target = bars["numba"] if name != "grid200" else (bars["numba"] or 0) / 2
        labels = [k for k, v in bars.items() if v]
        ax.bar(range(len(labels)), [bars[k] for k in labels],
               color=["0.6" if k.startswith("before") else "tab:orange" if k == "numba" else "tab:blue"
                      for k in labels])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        if target:
            ax.axhline(target, color="k", ls="--", lw=1, label="target")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("wall seconds")
        ax.legend(fontsize=7)
    fig.suptitle("Issue 12, end to end on this CPU: before vs now (same moment)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--old", type=Path, required=True, help="the tree before (a git worktree)")
    ap.add_argument("--new", type=Path, default=HERE.parent)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--blasts", type=Path, default=None,
                    help="a JSON with old_s and new_s of the review-size BLASTS run to record")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "end_to_end_cpu.json")
    a = ap.parse_args(argv)
    old, new = a.old.resolve(), a.new.resolve()
    rec = json.loads(a.json.read_text()) if a.json.exists() else {"rows": {}}
    rec.update(benchmark="issue 12 end to end: before vs now, same moment",
               machine=platform.machine(), cpu_count=os.cpu_count(), python=platform.python_version())

    def save():
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rec, indent=1) + "\n")
        draw(rec, a.json.with_suffix(".png"))

    def partial_save(r):
        rec["rows"]["paper"] = dict(r, partial=True)
        save()

    for name in [x for x in a.rows.split(",") if x]:
        if name not in ROWS:
            ap.error(f"--rows: unknown row {name!r}; allowed: {', '.join(ROWS)}")
        print(f"row {name} ...", flush=True)
        f = {"fig1b": lambda: row_fig1b(old, new), "grid200": lambda: row_fig1b(old, new, 50),
             "mountain_car": lambda: row_mountain_car(old, new),
             "paper": lambda: row_paper(old, new, partial_save, rec["rows"].get("mountain_car"),
                                             (rec["rows"].get("paper") or {}) if
                                             (rec["rows"].get("paper") or {}).get("partial") else None)}[name]
        r = f()
        r.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 old_tree=str(old), new_tree=str(new))
        rec["rows"][name] = r
        print(json.dumps(r)[:3000], flush=True)
        save()
    if a.blasts:
        rec["rows"]["blasts"] = json.loads(a.blasts.read_text())
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
