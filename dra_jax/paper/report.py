"""``OUT/report.md``: the claims table, the consistency rows (``OUT/consistency.json``), a section
per figure (images linked relative to OUT, what they show, which runs have not converged) and the
timing, all read from the outputs in OUT."""
from __future__ import annotations

import json
import time
from pathlib import Path

from dra_jax.paper.claims import compute_claims
from dra_jax.paper.consistency import consistency_rows, consistency_section
from dra_jax.paper.runs import RUNS

VERDICT_MARK = {"reproduces": "reproduces", "partly": "partly", "does not": "**does not**",
                "missing input": "_missing input_"}


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _marker(out: Path, name: str):
    from dra_jax.paper.runs import marker_of

    return marker_of(out, name)


def _num(x, nd=1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def claims_section(rows) -> list[str]:
    lines = ["## Claims: the papers vs this run", "",
             "Every number of \"this run\" is computed from this run's `summary.json` / "
             "`curves.npz` (dra_jax/paper/claims.py); the paper's column quotes the paper. "
             "The verdict follows the rule in the rule column. The last column is the same claim "
             "at the authors' settings of their saved Fig. 1b data (lam 0.1, gamma 0.9; the "
             "shipped configs have Table B.1's lam 0.2, gamma 1), for the grid-world claims: "
             "a verdict that differs there depends on the settings.", "",
             "| # | figure | claim | paper | this run | spread | verdict | rule | authors' settings |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        alt = (f"{r.authors} ({VERDICT_MARK.get(r.authors_verdict, r.authors_verdict)})"
               if r.authors_verdict else (r.authors or "-"))
        lines.append("| " + " | ".join(_cell(c) for c in (
            i, r.figure, r.claim, r.paper, r.value, r.spread, VERDICT_MARK.get(r.verdict, r.verdict),
            r.rule, alt)) + " |")
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_MARK}
    lines += ["", "Verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()), ""]
    return lines


def _unconverged(summary: dict) -> str:
    bad = summary.get("unconverged_runs")
    if bad is None:
        return "convergence flag: not reported by this task"
    if not bad:
        return f"all {len(summary['runs'])} runs converged (flat last 10% of evaluations)"
    labels = []
    for i in bad[:12]:
        r = summary["runs"][i]
        labels.append(", ".join([f"{k}={v}" for k, v in r["params"].items()] + [f"seed {r['seed']}"]))
    more = f" and {len(bad) - 12} more" if len(bad) > 12 else ""
    return (f"**{len(bad)} of {len(summary['runs'])} runs flagged unconverged** (summary.json "
            f"`unconverged_runs`): " + "; ".join(labels) + more)


def figure_sections(out: Path, names) -> list[str]:
    lines = ["## Figures", ""]
    for spec in RUNS:
        lines += [f"### {spec.figures}: {spec.title}", "", spec.text, ""]
        if spec.name not in names:
            lines += ["_Not part of this run (--only)._", ""]
            continue
        rec = _marker(out, spec.name)
        if rec is None:
            lines += [f"_No complete outputs in `{spec.name}/` (not run yet, interrupted or failed)._", ""]
            continue
        summary = json.loads((out / spec.name / "summary.json").read_text())
        lines.append(f"Config `configs/{spec.config.name}`"
                     + (f" with `{' '.join(rec['overrides'])}`" if rec.get("overrides") else " as shipped")
                     + f"; {len(summary['runs'])} runs; outputs in `{spec.name}/`.")
        lines += ["", _unconverged(summary), ""]
        figs = sorted((out / spec.name / "figures").glob("*.png"))
        if not figs:
            lines += ["_No figures were drawn (see the run's warnings)._", ""]
        for f in figs:
            rel = f.relative_to(out).as_posix()
            lines += [f"![{spec.name}: {f.stem}]({rel})", ""]
    return lines


def timing_section(out: Path, names, session_wall_s=None, compare: Path | None = None) -> list[str]:
    """The time by config; with ``compare`` (the OUT of an earlier session) its wall time per
    config beside, before -> after."""
    head = "| config | compile (s) | run (s) | equal-precision search (s) | wall (s) |"
    rule = "|---|---|---|---|---|"
    if compare is not None:
        head += " before: wall (s) | before / after |"
        rule += "---|---|"
    lines = ["## Timing", "", head, rule]
    tot = {"compile_s": 0.0, "run_s": 0.0, "equal_search_s": 0.0, "wall_s": 0.0}
    tot_before, tot_after_paired = 0.0, 0.0
    for name in names:
        rec = _marker(out, name)
        old = _marker(Path(compare), name) if compare is not None else None
        if rec is None:
            lines.append(f"| {name} | - | - | - | not complete |" + (" - | - |" if compare else ""))
            continue
        row = (f"| {name} | {_num(rec.get('compile_s'))} | {_num(rec.get('run_s'))} | "
               f"{_num(rec.get('equal_search_s'))} | {_num(rec.get('wall_s'))} |")
        if compare is not None:
            if old is not None and old.get("wall_s") and rec.get("wall_s"):
                row += f" {_num(old['wall_s'])} | {old['wall_s'] / rec['wall_s']:.2f}x |"
                tot_before += old["wall_s"]
                tot_after_paired += rec["wall_s"]
            else:
                row += " - | - |"
        lines.append(row)
        for k in tot:
            tot[k] += rec.get(k) or 0.0
    total = (f"| **total** | {_num(tot['compile_s'])} | {_num(tot['run_s'])} | "
             f"{_num(tot['equal_search_s'])} | {_num(tot['wall_s'])} |")
    if compare is not None:
        total += (f" {_num(tot_before)} | {tot_before / tot_after_paired:.2f}x |"
                  if tot_after_paired else " - | - |")
    lines.append(total)
    lines += ["", "Wall time per config includes compilation, the run, the equal-precision search "
                  "(its compile and run, apart from the first two columns), the summaries and the figures; "
                  "configs skipped by --resume keep the "
                  "timing of the session that ran them."]
    if compare is not None:
        lines.append(f"Before: the wall times of `{compare}` (`--compare-timing`); the ratio "
                     "column and its total pair the configs both sessions ran.")
    if session_wall_s is not None:
        lines.append(f"This session (including skipped configs and the report): {session_wall_s:.1f} s.")
    return lines + [""]


def _plain(o):
    """numpy scalars and arrays as JSON numbers and lists."""
    return o.item() if hasattr(o, "item") and getattr(o, "ndim", 1) == 0 else (
        o.tolist() if hasattr(o, "tolist") else str(o))


def write_report(out, quick: bool, names, session_wall_s=None, compare=None) -> Path:
    """Write ``OUT/report.md`` from the outputs in OUT (``compare``: an earlier session's OUT,
    whose wall times the timing table shows beside); return its path."""
    from dra_jax.results import atomic_write_bytes

    out = Path(out)
    rows = compute_claims(out, quick)
    mode = ("**quick** (few seeds, episodes and grid points: a smoke run; its numbers are not "
            "expected to reproduce the papers)" if quick else "full (the configs as shipped)")
    lines = ["# The DRA paper, reproduced by dra_jax", "",
             f"Mode: {mode}. Written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by "
             "`python -m dra_jax.paper`. Papers: Patel, Acerbi & Pouget (NeurIPS 2020), "
             "\"DRA\"; the capacity-limited Bayesian RL review, \"Review\".", ""]
    cons = consistency_rows(out)
    lines += (claims_section(rows) + consistency_section(cons) + figure_sections(out, names)
              + timing_section(out, names, session_wall_s, compare))
    path = out / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    json_rows = [{k: v for k, v in r.__dict__.items()} for r in rows]
    atomic_write_bytes(out / "claims.json", json.dumps(json_rows, indent=1, default=_plain).encode())
    atomic_write_bytes(out / "consistency.json", json.dumps(cons, indent=1, default=_plain).encode())
    return path
