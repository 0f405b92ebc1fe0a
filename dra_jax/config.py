"""Config files: TOML -> validated dict -> flattened grid of runs.

The contract (docs/design.md, "Contracts"; every key: docs/reference/config.md):

* top level: ``task``, ``seed``, ``n_seeds``, ``out``, ``figures``, ``description``;
* sections ``[task_params]`` (the task's own keys), ``[dra]``, ``[eval]``, ``[sweep]`` (a key of
  ``[dra]`` or ``[task_params]`` with a non-empty list of values becomes a grid axis; seeds are
  always an axis), ``[variants.NAME]`` (named bundles of ``[dra]`` overrides, one grid axis
  ``variant``), and any extra section a task declares.

Every key is checked before anything runs: unknown keys, wrong types and out-of-range values
raise :class:`ConfigError` naming the key and what is allowed; the CLI turns it into exit status
2 with nothing written.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import itertools
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range; ``key`` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config error: {key}: {message}")


# --------------------------------------------------------------------------- fields

INT_MAX = 2**31 - 1  # every integer key fits int32 (the engines index and count in int32)
MAX_RUNS = 2**22  # runs in one grid (variants x sweep values x seeds)


@dataclass(frozen=True)
class Field:
    """One config key: its type, default and allowed range.

    ``static``: the value shapes the compiled program (array sizes, code paths), so a sweep
    over it runs one compiled call per value; every other value is traced, and a sweep over
    it is one vmapped batch.
    """

    kind: type  # bool, int, float, str, list
    default: Any = None
    doc: str = ""
    lo: float | None = None  # inclusive lower bound
    hi: float | None = None  # inclusive upper bound
    lo_open: bool = False  # lower bound exclusive
    choices: tuple | None = None
    static: bool = False
    sweepable: bool = True
    item_kind: type | None = None  # for kind=list
    check: Callable[[Any], str | None] | None = None  # extra check; returns an error text

    @property
    def upper(self) -> float | None:
        """The inclusive upper bound: ``hi``, and for an integer at most :data:`INT_MAX`."""
        if self.kind is int or self.item_kind is int:
            return INT_MAX if self.hi is None else min(self.hi, INT_MAX)
        return self.hi

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                list: "a list"}[self.kind]
        hi = self.upper
        if self.lo is not None and hi is not None:
            left = "(" if self.lo_open else "["
            return f"{name} in {left}{self.lo}, {hi}]"
        if self.lo is not None:
            return f"{name} {'>' if self.lo_open else '>='} {self.lo}"
        if hi is not None:
            return f"{name} <= {hi}"
        return name

    def validate(self, key: str, value: Any) -> Any:
        """Return the value coerced to the field's kind, or raise ConfigError."""
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(key, f"expected a finite number, got {value!r}")
        elif kind is str:
            if not isinstance(value, str):
                raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
        elif kind is list:
            if not isinstance(value, list):
                raise ConfigError(key, f"expected a list, got {value!r}")
            if self.item_kind is not None:
                inner = Field(self.item_kind, lo=self.lo, hi=self.upper, lo_open=self.lo_open,
                              choices=self.choices)
                value = [inner.validate(f"{key}[{i}]", v) for i, v in enumerate(value)]
            if self.check is not None:
                msg = self.check(value)
                if msg:
                    raise ConfigError(key, msg)
            return value
        if self.choices is not None and value not in self.choices:
            raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
        if kind in (int, float):
            bad_lo = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
            bad_hi = self.upper is not None and value > self.upper
            if bad_lo or bad_hi:
                raise ConfigError(key, f"expected {self.allowed()}, got {value!r}")
        if self.check is not None:
            msg = self.check(value)
            if msg:
                raise ConfigError(key, msg)
        return value


def _positive(kind=float, **kw) -> Field:
    return Field(kind, lo=0, lo_open=True, **kw)


# The [dra] keys shared by every task. Tasks override defaults (Table B.1), not the keys.
DRA_FIELDS: dict[str, Field] = {
    "episodes": Field(int, 5000, "training episodes per run", lo=1, hi=10**8, static=True),
    "alpha_q": Field(float, 0.1, "learning rate of the means (alpha_1)", lo=0.0),
    "alpha_sigma": Field(float, 0.1, "learning rate of sigma (alpha_2)", lo=0.0),
    "beta": _positive(default=10.0, doc="inverse temperature of the soft Thompson policy"),
    "gamma": Field(float, 1.0, "discount factor", lo=0.0, hi=1.0),
    "lam": Field(float, 0.2, "cost per nat of the KL cost", lo=0.0),
    "sigma_base": _positive(default=5.0, doc="std of the base distribution P"),
    "sigma0": _positive(default=3.0, doc="initial sigma of every memory"),
    "n_traj": Field(int, 10, "trajectories sampled per sigma update", lo=1, hi=2**16,
                    static=True),
    "psi": Field(str, "A", "Psi_t of the policy gradient (Eq. 4)", choices=("A", "Q", "R", "max")),
    "grad": Field(str, "analytic", "sigma-gradient method", choices=("analytic", "autodiff"),
                  static=True),
    "allocation": Field(str, "flexible", "one sigma per memory ('flexible'); one shared sigma at "
                        "its optimum, found by a 1-D search of F over sigma before training "
                        "('equal', lane tasks); one shared sigma learned by stochastic gradient "
                        "ascent with the mean of the memories' gradients ('equal_sgd')",
                        choices=("flexible", "equal", "equal_sgd")),
    "equal_range": Field(list, [], "allocation 'equal': the search interval [lo, hi] of the "
                         "shared sigma, inside [sigma_min, sigma_max] ([] = [sigma_min, "
                         "sigma_max])", item_kind=float, lo=0.0, lo_open=True, static=True,
                         sweepable=False),
    "equal_points": Field(int, 6, "allocation 'equal': candidate sigmas per search round "
                          "(log-spaced)", lo=2, hi=64, static=True, sweepable=False),
    "equal_rounds": Field(int, 2, "allocation 'equal': search rounds (each refines around the "
                          "best candidate so far)", lo=1, hi=6, static=True, sweepable=False),
    "equal_seeds": Field(int, 2, "allocation 'equal': search seeds per candidate, shared by "
                         "every candidate (common random numbers) and disjoint from the runs' "
                         "seeds", lo=1, hi=64, static=True, sweepable=False),
    "sigma_min": _positive(default=0.01, doc="lower clip of sigma"),
    "sigma_max": _positive(default=100.0, doc="upper clip of sigma"),
    "max_steps": Field(int, 500, "cap on the steps of any rollout (truncation)", lo=1, hi=10**7,
                       static=True),
    "q_init": Field(str, "zero", "initial means", choices=("zero", "optimal", "uniform"),
                    static=True),
    "learn_q": Field(bool, True, "update the means by expected SARSA"),
    "learn_sigma": Field(bool, True, "update sigma (false pins it at sigma0)"),
    "objective": Field(str, "dra", "dra: Eq. 1; elbo_step: Eq. 8 (per-access KL, action entropy "
                       "per step); elbo: Eq. 10 (Eq. 1 + (lam/T) sum_t H_t) (Acerbi et al. 2022)",
                       choices=("dra", "elbo_step", "elbo")),
    "optimizer": Field(str, "sgd", "optax optimizer of the sigma ascent",
                       choices=("sgd", "adam", "rmsprop"), static=True),
    "sub_lanes": Field(int, 1, "lanes per run of the lane engine: the gradient and evaluation "
                       "rollouts of an episode run this many side by side (changes the random "
                       "numbers a run draws, not their distribution)", lo=1, hi=4096, static=True),
    "block": Field(int, 16, "env steps between the lane engine's syncs (sigma updates and "
                   "evaluation records); a run waits for the next sync after its gradient and "
                   "evaluation phases, so long rollouts take longer blocks, short ones short "
                   "blocks (changes the random numbers a run draws, not their distribution)",
                   lo=1, hi=4096, static=True),
}

EVAL_FIELDS: dict[str, Field] = {
    "every": Field(int, 100, "evaluate every this many episodes", lo=1, static=True,
                   sweepable=False),
    "n_rollouts": Field(int, 100, "policy rollouts per evaluation", lo=1, hi=2**20, static=True,
                        sweepable=False),
    "snapshots": Field(list, [], "episodes at which (q, sigma) is saved", item_kind=int, lo=0,
                       static=True, sweepable=False),
    "plot_return": Field(str, "discounted", "the return in the plotted objective: the discounted "
                         "return (F's term) or the undiscounted sum of rewards (the paper's "
                         "figures); both are always recorded",
                         choices=("discounted", "undiscounted"), sweepable=False),
}


def check_out_path(v: str) -> str | None:
    """An output folder must be a usable path: not blank, no NUL, no part longer than a file
    name may be, and not an existing file."""
    if not v:
        return None  # the default, results/<config name>
    if not v.strip():
        return "expected a folder path, got a blank string"
    if "\0" in v:
        return "a path cannot hold a NUL character"
    if any(len(part.encode()) > 255 for part in Path(v).parts):
        return "a part of the path is longer than 255 bytes"
    if len(v.encode()) > 4000:
        return "the path is longer than 4000 bytes"
    if Path(v).exists() and not Path(v).is_dir():
        return f"{v} exists and is not a folder"
    return None


def _check_seed(v):
    return None if v < 2**31 else "must be < 2**31"


TOP_FIELDS: dict[str, Field] = {
    "seed": Field(int, 0, "first seed; runs use seed, seed+1, ...", lo=0, check=_check_seed),
    "n_seeds": Field(int, 1, "seeds per grid point", lo=1, hi=MAX_RUNS),
    "out": Field(str, "", "output folder (default results/<config name>)", check=check_out_path),
    "description": Field(str, "", "free text"),
    "figures": Field(list, [], "figures to draw", item_kind=str),
    "max_batch": Field(int, 0, "runs per compiled batch; 0 chooses from the free memory", lo=0,
                       hi=MAX_RUNS),
}


@dataclass
class TaskSpec:
    """What a task contributes to the config contract and to the sweep command."""

    name: str
    task_params: dict[str, Field]
    dra_defaults: dict[str, Any]
    figures: tuple[str, ...]
    run: Callable  # run(cfg, runs, progress) -> Results; runs from iter_run_params(cfg)
    plot: Callable | None = None  # plot(cfg, results, fig_dir) -> list of written paths
    extra_sections: dict[str, dict[str, Field]] = field(default_factory=dict)
    eval_defaults: dict[str, Any] = field(default_factory=dict)
    psi_choices: tuple[str, ...] = ("A", "Q", "R")
    check: Callable[[dict], None] | None = None  # cross-key checks; raise ConfigError
    multi_process: bool = False  # its runner splits the runs over jax.distributed processes
    dra_fields: dict[str, Field] = field(default_factory=dict)  # [dra] keys of this task only
    # floats of one run's records (curves): the memory check of a grid; None: the evaluations'
    record_floats: Callable[[dict, dict], int] | None = None  # (cfg, task_params of the run)


_TASKS: dict[str, Callable[[], TaskSpec]] = {}

# The built-in tasks: name -> the module that registers it. The registry imports a task's
# module by name when the task is first asked for, so this module never imports the tasks that
# register in it (and ``import dra_jax`` stays light). A task of your own registers itself with
# :func:`register_task` when its module is imported.
BUILTIN_TASKS: dict[str, str] = {
    "gridworld": "dra_jax.experiments.gridworld",
    "tabular": "dra_jax.experiments.tabular",
    "mountain_car": "dra_jax.experiments.mountain_car",
    "planning": "dra_jax.experiments.planning",
    "bandits": "dra_jax.experiments.bandits",
    "gymnax": "dra_jax.experiments.gymnax_task",
    "episodic": "dra_jax.experiments.episodic",
}


def register_task(name: str):
    """Decorator: register a zero-argument factory returning the task's :class:`TaskSpec`."""

    def deco(factory):
        _TASKS[name] = factory
        return factory

    return deco


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a registered or built-in task; ConfigError naming ``task`` if unknown."""
    if name not in _TASKS and name in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[name])
    if name not in _TASKS:
        raise ConfigError("task", f"expected one of {', '.join(repr(t) for t in known_tasks())}, "
                                  f"got {name!r}")
    return _TASKS[name]()


def known_tasks() -> list[str]:
    return sorted(set(_TASKS) | set(BUILTIN_TASKS))


def parse_agent_spec(spec: str, params: dict[str, str | None],
                     required: tuple[str, ...] = ()) -> tuple[str, float | None]:
    """An agent of an ``agent`` grid axis: ``"NAME"`` or ``"NAME:VALUE"`` -> ``(name, value or
    None)``. ``params[name]`` names the agent's one parameter (None: it takes none); the agents
    in ``required`` must be given one. The value is a finite number >= 0. Raises ValueError."""
    name, sep, raw = spec.partition(":")
    name = name.strip().lower()
    forms = [f"'{n}:{w.upper()}'" if n in required else (f"'{n}' or '{n}:{w.upper()}'" if w else f"'{n}'")
             for n, w in params.items()]
    if name not in params:
        raise ValueError(f"unknown agent {name!r}; expected {', '.join(forms)}")
    what = params[name]
    if not sep:
        if name in required:
            raise ValueError(f"agent {name!r} needs its parameter: '{name}:{what.upper()}'")
        return name, None
    if what is None:
        raise ValueError(f"agent {name!r} takes no parameter")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"agent parameter {raw!r} of {name!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {what} must be a finite number >= 0, got {raw!r}")
    return name, value


def agent_spec_check(parse: Callable[[str], Any]) -> Callable[[str], str | None]:
    """A :class:`Field` ``check`` from an agent-spec parser: the parser's error text, or None."""
    def check(spec: str) -> str | None:
        try:
            parse(spec)
        except ValueError as e:
            return str(e)
        return None

    return check


# --------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value); the value parses as a TOML literal,
    a bare word as a string."""
    if "=" not in text:
        raise ConfigError(text, "--set expects section.key=value")
    path, raw = text.split("=", 1)
    parts = [p.strip() for p in path.strip().split(".")]
    if not all(parts):
        raise ConfigError(path, "--set expects section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def load_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", f"no such file: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(parts), "is not a section")
        node[parts[-1]] = value
    raw.setdefault("_name", path.stem)
    return raw


def _validate_section(name: str, given: Any, fields: dict[str, Field], defaults: dict[str, Any]) -> dict:
    if not isinstance(given, dict):
        raise ConfigError(name, "expected a table")
    out = {}
    for key in given:
        if key not in fields:
            raise ConfigError(f"{name}.{key}", f"unknown key; allowed: {', '.join(sorted(fields))}")
    for key, f in fields.items():
        full = f"{name}.{key}"
        if key in given:
            out[key] = f.validate(full, given[key])
        else:
            d = defaults.get(key, f.default)
            out[key] = copy.deepcopy(d)
    return out


def validate(raw: dict) -> dict:
    """Check every key of a raw config and fill in the defaults. Raises ConfigError."""
    raw = dict(raw)
    name = raw.pop("_name", "run")
    if "task" not in raw:
        raise ConfigError("task", f"missing; expected one of {', '.join(known_tasks())}")
    if not isinstance(raw["task"], str):
        raise ConfigError("task", f"expected a string, got {raw['task']!r}")
    spec = task_spec(raw["task"])
    sections = {"task_params", "dra", "eval", "sweep", "variants", *spec.extra_sections}
    for key in raw:
        if key != "task" and key not in TOP_FIELDS and key not in sections:
            raise ConfigError(key, "unknown top-level key; allowed: "
                              + ", ".join(sorted({"task", *TOP_FIELDS, *sections})))
    cfg: dict[str, Any] = {"task": spec.name, "name": name}
    for key, f in TOP_FIELDS.items():
        cfg[key] = f.validate(key, raw[key]) if key in raw else copy.deepcopy(f.default)
    if "out" in raw and raw["out"] == "":
        raise ConfigError("out", "expected a folder path, got an empty string (leave the key out "
                                 "for the default results/<config name>)")
    if not cfg["out"]:
        cfg["out"] = f"results/{name}"
    if cfg["seed"] + cfg["n_seeds"] > 2**31:
        raise ConfigError("n_seeds", f"the seeds seed .. seed + n_seeds - 1 must be < 2**31; with "
                                     f"seed = {cfg['seed']}, n_seeds <= {2**31 - cfg['seed']}")
    for fig in cfg["figures"]:
        if fig not in spec.figures:
            raise ConfigError("figures", f"unknown figure {fig!r} for task {spec.name!r}; "
                                         f"allowed: {', '.join(spec.figures) or 'none'}")

    dra_fields = dict(DRA_FIELDS)
    dra_fields["psi"] = Field(str, spec.dra_defaults.get("psi", "A"), DRA_FIELDS["psi"].doc,
                              choices=spec.psi_choices)
    dra_fields.update(spec.dra_fields)
    cfg["task_params"] = _validate_section("task_params", raw.get("task_params", {}),
                                           spec.task_params, {})
    cfg["dra"] = _validate_section("dra", raw.get("dra", {}), dra_fields, spec.dra_defaults)
    cfg["eval"] = _validate_section("eval", raw.get("eval", {}), EVAL_FIELDS, spec.eval_defaults)
    for sec, fields in spec.extra_sections.items():
        cfg[sec] = _validate_section(sec, raw.get(sec, {}), fields, {})

    # [variants.NAME]: named bundles of [dra] overrides -> one grid axis "variant".
    variants = raw.get("variants", {})
    if not isinstance(variants, dict):
        raise ConfigError("variants", "expected tables [variants.NAME]")
    cfg["variants"] = {}
    for vname, over in variants.items():
        if not isinstance(over, dict):
            raise ConfigError(f"variants.{vname}", "expected a table of [dra] keys")
        checked = {}
        for key, value in over.items():
            if key not in dra_fields:
                raise ConfigError(f"variants.{vname}.{key}",
                                  f"unknown key; allowed: {', '.join(sorted(dra_fields))}")
            checked[key] = dra_fields[key].validate(f"variants.{vname}.{key}", value)
        cfg["variants"][vname] = checked

    # [sweep]: key -> non-empty list of values of that key.
    sweep = raw.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", "expected a table")
    cfg["sweep"] = {}
    for key, values in sweep.items():
        full = f"sweep.{key}"
        if key in dra_fields:
            f = dra_fields[key]
        elif key in spec.task_params:
            f = spec.task_params[key]
        else:
            raise ConfigError(full, "not a sweepable key; allowed: "
                              + ", ".join(sorted(k for k, f in {**dra_fields, **spec.task_params}.items()
                                                 if f.sweepable)))
        if not f.sweepable:
            raise ConfigError(full, "this key cannot be swept")
        if not isinstance(values, list):
            raise ConfigError(full, f"expected a non-empty list of values, got {values!r}")
        if not values:
            raise ConfigError(full, "expected a non-empty list of values, got []")
        checked = [f.validate(f"{full}[{i}]", v) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise ConfigError(full, f"values repeat: {checked!r}")
        for vname, over in cfg["variants"].items():
            if key in over:
                raise ConfigError(full, f"also set by variants.{vname}; set it in one place")
        cfg["sweep"][key] = checked

    _check_size(cfg)
    # cross-key checks that hold for every run of the grid
    for run in iter_run_params(cfg):
        d = run["dra"]
        if d["sigma_min"] > d["sigma_max"]:
            raise ConfigError("dra.sigma_min", f"must be <= dra.sigma_max ({d['sigma_max']}), got "
                                               f"{d['sigma_min']}")
        if d["allocation"] == "equal":
            _check_equal_range(cfg, run)
    for snap in cfg["eval"]["snapshots"]:
        if snap > cfg["dra"]["episodes"] and "episodes" not in cfg["sweep"]:
            raise ConfigError("eval.snapshots", f"episode {snap} is after the last episode "
                                                f"({cfg['dra']['episodes']})")
    if spec.check is not None:
        spec.check(cfg)
    return cfg


def estimate_bytes(cfg: dict) -> int:
    """The bytes the grid's per-run records take once gathered (float64): every evaluation's
    curve columns and the scalar records of every run. A lower bound of what a sweep holds in
    memory at its end (the tables of each batch come on top; ``max_batch = 0`` sizes those from
    the free memory)."""
    runs = math.prod(grid_shape(cfg))
    episodes = max([cfg["dra"]["episodes"], *cfg["sweep"].get("episodes", []),
                    *[v.get("episodes", 0) for v in cfg["variants"].values()]])
    per_run = (episodes // cfg["eval"]["every"] + 2) * 8
    spec = task_spec(cfg["task"])
    if spec.record_floats is not None:  # the largest run of the task's own sweep axes
        tps = [dict(cfg["task_params"])]
        for k, vals in cfg["sweep"].items():
            if k in cfg["task_params"]:
                tps = [{**tp, k: v} for tp in tps for v in vals][:4096]
        per_run = max(spec.record_floats(cfg, tp) for tp in tps)
    return runs * (per_run + 64) * 8


def available_memory() -> int:
    """Free host memory in bytes (``MemAvailable``; 8 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _check_size(cfg: dict) -> None:
    """Refuse a grid of more than :data:`MAX_RUNS` runs, or whose records (:func:`estimate_bytes`)
    would not fit in the free memory, before anything is allocated."""
    shape = grid_shape(cfg)
    runs = math.prod(shape)
    keys = ", ".join(["n_seeds", *[f"sweep.{k}" for k in cfg["sweep"]],
                      *(["variants"] if cfg["variants"] else [])])
    if runs > MAX_RUNS:
        raise ConfigError("n_seeds" if len(shape) == 1 else "sweep",
                          f"the grid has {runs} runs ({' x '.join(map(str, shape))}: {keys}); at "
                          f"most {MAX_RUNS} in one sweep")
    need, free = estimate_bytes(cfg), available_memory()
    if need > free:
        per_run = need // (8 * runs) - 64
        what = ("dra.episodes / eval.every" if task_spec(cfg["task"]).record_floats is None
                else "the task's curves")
        raise ConfigError("dra.episodes" if what.startswith("dra") else "task_params",
                          f"the records of {runs} runs x {per_run} numbers ({what}; {keys}) "
                          f"take about {need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} "
                          "GiB of free memory; fewer runs or evaluations")


def dra_key_of(cfg: dict, run: dict, name: str) -> str:
    """The config key that set ``[dra] name`` of ``run``: its sweep axis, its variant, or
    ``dra.<name>``."""
    if name in cfg["sweep"]:
        return f"sweep.{name}"
    v = run["point"].get("variant")
    if v is not None and name in cfg["variants"][v]:
        return f"variants.{v}.{name}"
    return f"dra.{name}"


def reject_equal_search(cfg: dict, task: str) -> None:
    """For engines without the equal-precision search: ``allocation = "equal"`` is a
    ConfigError naming the key (``equal_sgd`` is their shared sigma)."""
    for run in iter_run_params(cfg):
        if run["dra"]["allocation"] == "equal":
            raise ConfigError(dra_key_of(cfg, run, "allocation"),
                              f"the {task} task has no search of the shared sigma; use "
                              "'equal_sgd' (one shared sigma by gradient) or pin sigma "
                              "(learn_sigma = false, sigma0 = the shared value)")


def _check_equal_range(cfg: dict, run: dict) -> None:
    """``equal_range`` of an equal-precision run: empty, or ``[lo, hi]`` with ``lo < hi`` inside
    the run's ``[sigma_min, sigma_max]`` (the clip every sigma lives in)."""
    d = run["dra"]
    key = dra_key_of(cfg, run, "equal_range")
    r = d["equal_range"]
    if not r:
        return
    if len(r) != 2:
        raise ConfigError(key, f"expected [] or [lo, hi], got {r!r}")
    lo, hi = r
    if not lo < hi:
        raise ConfigError(key, f"empty interval: needs lo < hi, got {r!r}")
    if lo < d["sigma_min"] or hi > d["sigma_max"]:
        raise ConfigError(key, f"must lie within [sigma_min, sigma_max] = [{d['sigma_min']}, "
                               f"{d['sigma_max']}], got {r!r}")


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read, override and validate a config file."""
    return validate(load_raw(path, overrides))


# --------------------------------------------------------------------------- the grid


def grid_axes(cfg: dict) -> list[tuple[str, list]]:
    """The grid's axes in order: ``variant`` (if any), the ``[sweep]`` keys, then ``seed``."""
    axes: list[tuple[str, list]] = []
    if cfg["variants"]:
        axes.append(("variant", list(cfg["variants"])))
    axes.extend((k, list(v)) for k, v in cfg["sweep"].items())
    axes.append(("seed", [cfg["seed"] + i for i in range(cfg["n_seeds"])]))
    return axes


def iter_run_params(cfg: dict):
    """Yield, for every grid point in row-major order, ``{"index", "point", "dra", "task_params",
    "seed"}`` with the variant and sweep values applied."""
    axes = grid_axes(cfg)
    names = [a for a, _ in axes]
    for idx, combo in enumerate(itertools.product(*[v for _, v in axes])):
        point = dict(zip(names, combo))
        dra = dict(cfg["dra"])
        tp = dict(cfg["task_params"])
        if "variant" in point:
            dra.update(cfg["variants"][point["variant"]])
        for k, v in point.items():
            if k in ("variant", "seed"):
                continue
            if k in dra:
                dra[k] = v
            else:
                tp[k] = v
        yield {"index": idx, "point": point, "dra": dra, "task_params": tp, "seed": point["seed"]}


def grid_shape(cfg: dict) -> tuple[int, ...]:
    """The grid's shape, axes as :func:`grid_axes` (computed without listing the seeds)."""
    return ((len(cfg["variants"]),) if cfg["variants"] else ()) + \
        tuple(len(v) for v in cfg["sweep"].values()) + (cfg["n_seeds"],)


def set_host_device_count(n: int) -> bool:
    """Split the host CPU into ``n`` XLA devices: ``--xla_force_host_platform_device_count=n`` in
    ``XLA_FLAGS``, read once, when JAX's CPU backend starts (so call it before anything starts
    JAX). A count already in ``XLA_FLAGS`` (the user's) wins: then nothing changes and this
    returns False. Used by the sweep, fit and paper commands' ``--cpu-devices``."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return False
    os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()
    return True


@contextlib.contextmanager
def xla_flags_kept():
    """Leave ``XLA_FLAGS`` as it was found on exit: a command called in-process (tests,
    scripts) that sets the host device count (:func:`set_host_device_count`, read once, when
    JAX starts) does not leave it to the caller."""
    saved = os.environ.get("XLA_FLAGS")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = saved


def grid_points(cfg: dict) -> list[dict]:
    """The grid points without the seed axis, in order: ``{"label", "point"}``."""
    import itertools

    axes = [(n, v) for n, v in grid_axes(cfg) if n != "seed"]
    pts = []
    for combo in itertools.product(*[v for _, v in axes]):
        point = dict(zip([n for n, _ in axes], combo))
        label = ", ".join(f"{k}={v}" if k != "variant" else str(v) for k, v in point.items()) or "all"
        pts.append({"label": label, "point": point})
    return pts
