"""The Python API: run a config and get labelled results, read a written sweep back.

    >>> import dra_jax
    >>> res = dra_jax.run("configs/gridworld.toml", set=["dra.episodes=200", "n_seeds=2"],
    ...                   progress=False)                                    # doctest: +SKIP
    >>> res.to_dataframe()[["sigma0", "seed", "objective"]]                  # doctest: +SKIP
    >>> res.to_xarray()["objective"].mean("seed")                            # doctest: +SKIP

:func:`run` validates and runs exactly what ``python -m dra_jax.sweep`` does (same
:class:`~dra_jax.config.ConfigError`, same numbers) and writes nothing unless ``out`` is given.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from dra_jax import config as config_mod

# leading dims of known per-run arrays (after the grid axes)
_DIMS = {
    "q": ("state", "action"), "sigma": ("state", "action"),
    "snap_q": ("snapshot", "state", "action"), "snap_sigma": ("snapshot", "state", "action"),
    "choice_entropy": ("snapshot", "state"), "final_choice_entropy": ("state",),
}
_FINALS = ("objective", "expected_reward", "cost")


def _raw_config(config, overrides: Iterable[str]) -> dict:
    """A path, a raw dict (the TOML structure) or a validated config -> a raw dict with the
    ``--set`` overrides applied."""
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    if isinstance(config, (str, Path)):
        return config_mod.load_raw(config, overrides)
    if not isinstance(config, Mapping):
        raise config_mod.ConfigError("config", f"expected a path, a dict or a loaded config, got "
                                               f"{type(config).__name__}")
    raw = copy.deepcopy(dict(config))
    if "name" in raw:  # a validated config: its own name, everything else re-validated
        raw["_name"] = raw.pop("name")
    raw.setdefault("_name", "run")
    for text in overrides:
        parts, value = config_mod.parse_override(text)
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise config_mod.ConfigError(".".join(parts), "is not a section")
        node[parts[-1]] = value
    return raw


def load_config(config, set: Iterable[str] = ()) -> dict:
    """Validate a config (path, raw dict or loaded config) with ``--set`` style overrides;
    raises :class:`~dra_jax.config.ConfigError` naming the key.

    Example::

        >>> cfg = dra_jax.load_config({"task": "gridworld"}, set=["dra.lam=0.5"])
        >>> cfg["dra"]["lam"], cfg["dra"]["sigma_base"]
        (0.5, 5.0)
        >>> dra_jax.load_config({"task": "gridworld", "dra": {"lam": -1}})
        Traceback (most recent call last):
        ...
        dra_jax.config.ConfigError: config error: dra.lam: expected a number >= 0.0, got -1.0
    """
    return config_mod.validate(_raw_config(config, set))


class _TqdmProgress:
    """The runners' progress interface (``update``, ``message``, ``notice``) on a tqdm bar."""

    def __init__(self, total: float, unit: str, enabled: bool):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=float(total), unit=unit, unit_scale=True, dynamic_ncols=True)
        self._done = 0.0

    def update(self, done: float, extra: str = "", force: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(max(0.0, float(done) - self._done))
            if extra:
                self.bar.set_postfix_str(extra, refresh=False)
        self._done = max(self._done, float(done))

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(f"[dra_jax] {text}")

    def notice(self, text: str) -> None:
        print(f"[dra_jax] {text}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(config, *, set: Iterable[str] = (), out: str | Path | None = None,
        progress: bool = True, max_batch: int | None = None,
        compile_cache: bool = True) -> "Results":
    """Run a sweep from a config and return its :class:`Results`.

    ``config``: a TOML path, a dict of the TOML structure (``{"task": "gridworld", "dra":
    {...}, "sweep": {...}}``) or a config from :func:`load_config`. ``set``: overrides in the
    ``--set`` syntax (``"dra.lam=0.1"``, ``"sweep.sigma0=[1.0, 3.0]"``). ``out``: a folder to
    write ``summary.json``, ``curves.npz`` and the figures to (nothing is written without it).
    ``progress``: a ``tqdm`` progress bar (a widget in a notebook). ``max_batch``: runs per
    compiled batch (default: the config's). ``compile_cache``: use JAX's persistent
    compilation cache (as the CLI does; a repeated config skips compilation). The numbers are
    those of ``python -m dra_jax.sweep`` with the same config.

    Example::

        >>> res = dra_jax.run({"task": "tabular", "task_params": {"maze": "S..G"},
        ...                    "dra": {"episodes": 20}, "eval": {"every": 10}, "n_seeds": 2},
        ...                   progress=False)
        >>> list(res.to_dataframe().columns)[:4]
        ['seed', 'objective', 'expected_reward', 'cost']
        >>> len(res.to_dataframe())
        2
    """
    from dra_jax.runtime.compile_cache import enable_compile_cache
    from dra_jax.runtime.execution import ExecOptions
    from dra_jax.sweep import build_outputs, write_outputs

    cfg = load_config(config, set)
    if compile_cache:
        enable_compile_cache()
    spec = config_mod.task_spec(cfg["task"])
    runs = list(config_mod.iter_run_params(cfg))
    total = sum(r["dra"]["episodes"] for r in runs)
    prog = _TqdmProgress(total, "ep", progress)
    outp = Path(out) if out is not None else None
    prog.options = ExecOptions(out=outp, max_batch=cfg["max_batch"] if max_batch is None else max_batch)
    t0 = time.perf_counter()
    try:
        raw = spec.run(cfg, runs, prog)
    finally:
        prog.close()
    raw.timing.setdefault("wall_s", round(time.perf_counter() - t0, 3))
    if outp is not None:
        write_outputs(cfg, raw, outp)
    summary, arrays = build_outputs(cfg, raw)
    return Results(json.loads(json.dumps(summary, default=_jsonable)), arrays)


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load(out_dir: str | Path) -> "Results":
    """Read a sweep written by ``python -m dra_jax.sweep`` or ``run(..., out=...)`` back.

    Example::

        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> _ = dra_jax.run({"task": "tabular", "task_params": {"maze": "S..G"},
        ...                  "dra": {"episodes": 20}, "eval": {"every": 10}, "figures": []},
        ...                 out=out, progress=False)
        >>> dra_jax.load(out).to_dataframe()[["seed", "objective"]].shape
        (1, 2)
    """
    out_dir = Path(out_dir)
    s, c = out_dir / "summary.json", out_dir / "curves.npz"
    for p in (s, c):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: is {out_dir} a dra_jax output folder?")
    summary = json.loads(s.read_text())
    with np.load(c, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Results(summary, arrays)


class Results:
    """The results of one sweep, labelled by its grid axes (from :func:`run` or :func:`load`).

    * ``config``: the resolved config; ``axes``: ``[(name, values), ...]`` in grid order
      (``variant``, the ``[sweep]`` keys, ``seed`` last); ``runs``: one record per run (as in
      ``summary.json``); ``summary``: all of ``summary.json``; ``timing``.
    * ``arrays``: everything of ``curves.npz``; per-run arrays have the grid's axes first.
    * :meth:`to_dataframe` (one row per run), :meth:`to_xarray` (dims named after the axes).

    Example::

        >>> res = dra_jax.run({"task": "tabular", "task_params": {"maze": "S..G"},
        ...                    "dra": {"episodes": 20}, "eval": {"every": 10},
        ...                    "sweep": {"lam": [0.1, 1.0]}, "n_seeds": 2}, progress=False)
        >>> res.axes
        [('lam', [0.1, 1.0]), ('seed', [0, 1])]
        >>> res.to_xarray()["objective"].dims
        ('lam', 'seed', 'episode')
    """

    def __init__(self, summary: dict, arrays: dict[str, np.ndarray]):
        self.summary = summary
        self.arrays = arrays
        self.config = summary["config"]
        self.axes = [(a["name"], list(a["values"])) for a in summary["grid_axes"]]
        self.runs = summary["runs"]
        self.timing = summary.get("timing", {})

    def __repr__(self) -> str:
        grid = " x ".join(f"{n}[{len(v)}]" for n, v in self.axes)
        return f"Results({self.config.get('name')!r}, task {self.config.get('task')!r}, grid {grid})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    def to_dataframe(self):
        """One row per run: a column per grid axis (``variant``, swept keys) and ``seed``, the
        final ``objective``, ``expected_reward``, ``cost``, the task's other final numbers,
        and the run's scalar extras (truncations, env steps, ...)."""
        import pandas as pd

        rows = []
        for rec in self.runs:
            row = dict(rec["params"])
            row["seed"] = rec["seed"]
            for k, v in rec["final"].items():
                if np.isscalar(v) or v is None:
                    row[k] = v
            for k, v in rec.items():
                if k not in ("index", "params", "seed", "final") and (np.isscalar(v) or v is None):
                    row[k] = v
            rows.append(row)
        df = pd.DataFrame(rows)
        first = [n for n, _ in self.axes if n != "seed"] + ["seed"]
        finals = [k for k in _FINALS if k in df.columns]
        rest = [c for c in df.columns if c not in first and c not in finals]
        return df[[c for c in first if c in df.columns] + finals + rest]

    def to_xarray(self):
        """An ``xarray.Dataset``: dims named after the grid axes (``seed`` included); learning
        curves over ``episode`` (the evaluation episodes as coordinate); final ``q`` and
        ``sigma`` over ``state`` and ``action``; other per-run arrays with dims
        ``<name>_dim<k>``."""
        import xarray as xr

        names = [n for n, _ in self.axes]
        shape = self.shape
        coords: dict[str, Any] = {n: np.asarray(v) for n, v in self.axes}
        ev = self.arrays.get("eval_episodes")
        if ev is not None:
            coords["episode"] = np.asarray(ev)
        if "snapshot_episodes" in self.arrays:
            coords["snapshot"] = np.asarray(self.arrays["snapshot_episodes"])
        data = {}
        for k, v in self.arrays.items():
            v = np.asarray(v)
            if k.startswith("axis_") or v.shape[:len(shape)] != shape or v.dtype.kind in "OU":
                continue
            rest = v.shape[len(shape):]
            if k in _DIMS and len(_DIMS[k]) == len(rest):
                dims = _DIMS[k]
            elif ev is not None and len(rest) == 1 and rest[0] == len(ev):
                dims = ("episode",)
            else:
                dims = tuple(f"{k}_dim{i}" for i in range(len(rest)))
            data[k] = (tuple(names) + dims, v)
        ds = xr.Dataset(data, coords=coords)
        ds.attrs["name"] = str(self.config.get("name"))
        ds.attrs["task"] = str(self.config.get("task"))
        return ds
