"""MkDocs hooks: the pages that are generated from the code, so that they cannot disagree with it.

* ``<!-- config-reference -->``: every key of every config, from the validation spec itself
  (:mod:`dra_jax.config` and each task's :class:`~dra_jax.config.TaskSpec`; the fitter's
  :mod:`dra_jax.fitting.spec`);
* ``<!-- cli-help -->``: the ``--help`` of the three commands;
* ``<!-- module-layout -->``: one line a module, the first line of its docstring.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(f) -> str:
    d = f.default
    return "" if d is None else f"`{d!r}`" if not isinstance(d, str) or d else '`""`'


def _table(section: str, fields: dict, defaults: dict | None = None, traced: bool = True) -> str:
    head = "| key | type | allowed | default | " + ("program | " if traced else "") + "what it does |\n"
    head += "|---|---|---|---|" + ("---|" if traced else "") + "---|\n"
    rows = []
    for key, f in fields.items():
        kind = f.kind.__name__ + (f"[{f.item_kind.__name__}]" if f.item_kind else "")
        d = (defaults or {}).get(key, f.default)
        dflt = "" if d is None else f"`{d!r}`" if not (isinstance(d, str) and not d) else '`""`'
        full = f"{section}.{key}" if section else key
        prog = ("static" if f.static else "traced") + ("" if f.sweepable else ", not sweepable")
        rows.append(f"| `{full}` | {kind} | {_cell(f.allowed())} | {dflt} | "
                    + (f"{prog} | " if traced else "") + f"{_cell(f.doc)} |")
    return head + "\n".join(rows) + "\n"


def config_reference() -> str:
    from dra_jax import config
    from dra_jax.fitting import spec

    out = ["## Sweep configs (`python -m dra_jax.sweep`)\n",
           "*static*: the value shapes the compiled program, so a sweep over it compiles one "
           "program per value; *traced*: a sweep over it is one vmapped batch.\n",
           "### Top level\n", _table("", config.TOP_FIELDS, traced=False),
           "### `[dra]` (every task; the task's defaults below)\n", _table("dra", config.DRA_FIELDS),
           "### `[eval]`\n", _table("eval", config.EVAL_FIELDS)]
    for name in config.known_tasks():
        ts = config.task_spec(name)
        out.append(f"### task `{name}`\n")
        if ts.task_params:
            out += ["`[task_params]`:\n", _table("task_params", ts.task_params)]
        for sec, fields in ts.extra_sections.items():
            out += [f"`[{sec}]`:\n", _table(sec, fields)]
        if ts.dra_fields:
            out += ["its own `[dra]` keys:\n", _table("dra", ts.dra_fields)]
        if ts.dra_defaults:
            out.append("`[dra]` defaults of this task: "
                       + ", ".join(f"`{k} = {v!r}`" for k, v in ts.dra_defaults.items()) + "\n")
        if ts.eval_defaults:
            out.append("`[eval]` defaults of this task: "
                       + ", ".join(f"`{k} = {v!r}`" for k, v in ts.eval_defaults.items()) + "\n")
        out.append(f"figures: {', '.join(f'`{f}`' for f in ts.figures) or 'none'}; `psi` one of "
                   f"{', '.join(ts.psi_choices)}\n")
    out += ["## Fit configs (`python -m dra_jax.fit`)\n",
            f"`task`: one of {', '.join(f'`{t}`' for t in spec.TASKS)}.\n",
            "### Top level\n", _table("", spec.TOP_FIELDS, traced=False),
            "### `[fit]`\n", _table("fit", spec.FIT_FIELDS, traced=False),
            "### `[recovery]`\n", _table("recovery", spec.RECOVERY_FIELDS, traced=False),
            "### `[group]`\n", _table("group", spec.GROUP_FIELDS, traced=False),
            "### `[compare]`\n", _table("compare", spec.COMPARE_FIELDS, traced=False),
            "### `[posterior]`\n", _table("posterior", spec.POSTERIOR_FIELDS, traced=False)]
    return "\n".join(out)


def cli_help() -> str:
    env = {**os.environ, "COLUMNS": "100", "JAX_PLATFORMS": "cpu"}
    out = []
    for mod in ("dra_jax.sweep", "dra_jax.fit", "dra_jax.paper"):
        text = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True,
                              text=True, env=env, cwd=ROOT, check=True).stdout
        out.append(f"## `python -m {mod}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(out)


def module_layout() -> str:
    pkg = ROOT / "dra_jax"
    rows = ["| module | what it is |", "|---|---|"]
    for p in sorted(pkg.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        rows.append(f"| `{'.'.join(parts)}` | {_cell(first)} |")
    return "\n".join(rows) + "\n"


def paper_timing() -> str:
    """The whole paper's timing per config, before and after, from its committed record."""
    import json

    rec = json.loads((ROOT / "benchmarks" / "results" / "paper_timing_cpu.json").read_text())
    before, after = rec["before"]["configs"], rec["after"]["configs"]
    rows = [f"{rec['benchmark']}; {rec['machine']}, {rec['date']}; before: commit "
            f"`{rec['before']['commit']}`. Generated from "
            "`benchmarks/results/paper_timing_cpu.json`.\n",
            "| config | wall before (s) | wall after (s) | compile after (s) | run after (s) |",
            "|---|---|---|---|---|"]
    tb = ta = 0.0
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}), after.get(name, {})
        tb += b.get("wall_s") or 0.0
        ta += a.get("wall_s") or 0.0
        cell = lambda d, k: "" if d.get(k) is None else f"{d[k]:.0f}"  # noqa: E731
        rows.append(f"| `{name}` | {cell(b, 'wall_s')} | {cell(a, 'wall_s')} | "
                    f"{cell(a, 'compile_s')} | {cell(a, 'run_s')} |")
    rows.append(f"| **total** | **{tb:.0f}** | **{ta:.0f}** | | |")
    return "\n".join(rows) + "\n"


_MARKERS = {"<!-- config-reference -->": config_reference, "<!-- cli-help -->": cli_help,
            "<!-- module-layout -->": module_layout, "<!-- paper-timing -->": paper_timing}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, make in _MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
