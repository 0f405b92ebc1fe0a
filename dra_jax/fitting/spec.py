"""The fit config: TOML -> validated dict (every key checked, naming it, before anything runs).

    task = "stimulus_response" | "bandits" | "gridworld"    seed, out, description, figures
    [fit]        particle filter and CMA-ES settings (FIT_FIELDS)
    [fit] maze, max_steps   (gridworld) the maze's rows (default Fig. 1) and the rollout cap
    [models.NAME] kind = dra | dra_equal | lam0 | qlearn (every task; on "bandits" DRA is the
                 one-state agent) | rlwm (stimulus_response) | ts_softmax | ts_lapse | blasts
                 (bandits); free = [names]; any parameter name = its fixed value (and the
                 search's start). The components epsilon (lapse), stick (perseveration) and
                 forget (decay of the means) are used by a model only when listed for it
                 (free or fixed); rlwm's capacity is an integer in 2..6, profiled when free;
                 restarts, generations, popsize, zeta, n_zeta: this model's own (else [fit]'s)
    [bounds]     parameter = [lo, hi] (the search box; free parameters are mapped to R by a
                 logistic transform); [models.NAME.bounds] overrides it for one model
    [recovery]   (optional) simulate subjects instead of reading --data
    [group]      method = "none" | "em": hierarchical EM (Huys et al. 2011) over each model's
                 free parameters (GROUP_FIELDS; :mod:`dra_jax.fitting.group`)
    [compare]    cv = "none" | "blocks": held-out log-likelihoods by leaving blocks out
                 (COMPARE_FIELDS; :mod:`dra_jax.fitting.cv`)
    [posterior]  particle marginal Metropolis-Hastings of one subject (``--posterior ID``;
                 POSTERIOR_FIELDS; :mod:`dra_jax.fitting.posterior`)
"""
from __future__ import annotations

import copy
import math

from dra_jax.config import ConfigError, Field, check_out_path, load_raw
from dra_jax.fitting.models import BANDIT_KINDS, COMPONENT_KINDS, COMPONENTS, KINDS, PARAMS, USES

TASKS = ("stimulus_response", "bandits", "gridworld")
FIGURES = ("ppc", "recovery_scatter", "confusion", "bms")


def _pos(kind=float, **kw):
    return Field(kind, lo=0, lo_open=True, **kw)


TOP_FIELDS = {
    "seed": Field(int, 0, "seed of the search and of the simulations", lo=0, hi=2**31 - 1),
    "out": Field(str, "", "output folder (default results/<config name>)", check=check_out_path),
    "description": Field(str, "", "free text"),
    "figures": Field(list, ["ppc"], "figures to draw", item_kind=str, choices=FIGURES),
}

FIT_FIELDS = {
    "n_particles": Field(int, 256, "particles per subject x candidate (stochastic models)", lo=1, hi=2**16),
    "search_particles": Field(int, 0, "particles during the CMA-ES search (0: n_particles); "
                                      "the finalists and the winner's replicates use n_particles",
                              lo=0, hi=2**16),
    "n_reps": Field(int, 8, "independent replicates of the winner's re-evaluation (SE)", lo=2, hi=1024),
    "ess_threshold": Field(float, 0.5, "resample when ESS < ess_threshold * n_particles",
                           lo=0.0, hi=1.0),
    "restarts": Field(int, 2, "CMA-ES runs per subject (the first from the start values, "
                              "then from random points of the box)", lo=1, hi=1000),
    "generations": Field(int, 40, "CMA-ES generations per run", lo=1, hi=10**5),
    "popsize": Field(int, 0, "CMA-ES population (0: cma's default 4 + 3 ln d)", lo=0, hi=10**4),
    "step": _pos(default=1.0, doc="CMA-ES initial step in the transformed (logit) space"),
    "polish": Field(bool, True, "refine the best CMA-ES point of a deterministic model "
                                "(qlearn, lam0, rlwm on stimulus_response) by damped Newton "
                                "steps on its exact log-likelihood"),
    "max_batch": Field(int, 0, "subjects per compiled call (0: all)", lo=0, hi=2**20),
    "devices": Field(int, 0, "devices the subjects of a call are split over (0: all of this "
                             "process's jax.local_devices(); on CPU see --cpu-devices)", lo=0, hi=4096),
    "n_traj": Field(int, 10, "DRA gradient rollouts per trial", lo=1, hi=4096),
    "psi": Field(str, "A", "Psi of the rollouts' policy gradient", choices=("A", "Q")),
    "optimizer": Field(str, "sgd", "optax optimizer of sigma", choices=("sgd", "adam")),
    "zeta": Field(str, "qmc", "zeta marginalization: fixed scrambled-Sobol normals (qmc), the "
                              "same points under a fresh random digital shift every trial (rqmc: "
                              "an unbiased P(a|s), so an unbiased likelihood) or tensor "
                              "Gauss-Hermite (biased when beta * sigma is large)",
                  choices=("qmc", "rqmc", "quadrature")),
    "n_zeta": Field(int, 128, "number of qmc points, or Gauss-Hermite order per action", lo=1,
                    hi=4096),
    "sigma_min": _pos(default=0.01, doc="lower clip of sigma"),
    "sigma_max": _pos(default=100.0, doc="upper clip of sigma"),
    "n_states": Field(int, 6, "largest number of stimuli in a block", lo=1, hi=64),
    "n_actions": Field(int, 3, "actions", lo=2, hi=16),
    "maze": Field(list, [], "gridworld: the maze's rows ('S' start, 'G' goal, '#' obstacle, "
                            "'.' free); empty: the Fig. 1 maze", item_kind=str),
    "max_steps": Field(int, 500, "gridworld: cap of a gradient rollout (and of a simulated "
                                 "episode)", lo=1),
}

DEFAULTS = {"lam": 0.1, "beta": 10.0, "alpha_q": 0.3, "alpha_sigma": 0.1, "sigma_base": 1.0,
            "sigma0": 0.5, "epsilon": 0.0, "ba_beta": 1.0, "prior_mean": 0.0, "prior_sd": 1.0,
            "noise_sd": 1.0, "gamma": 1.0, "stick": 0.0, "forget": 0.0, "rho": 0.9,
            "capacity": 3.0, "bias_wm": 0.2, "bias_rl": 0.0, "r0": 0.0}
KIND_DEFAULTS = {"rlwm": {"beta": 25.0}}  # Collins & Frank 2012 fix beta = 25
BOUNDS = {"lam": [0.0, 2.0], "beta": [0.5, 50.0], "alpha_q": [0.01, 1.0],
          "alpha_sigma": [0.0, 1.0], "sigma_base": [0.05, 5.0], "sigma0": [0.01, 5.0],
          "epsilon": [0.0, 0.5], "ba_beta": [0.01, 100.0], "prior_mean": [0.0, 5.0],
          "prior_sd": [0.05, 10.0], "noise_sd": [0.05, 10.0], "gamma": [0.0, 1.0],
          "stick": [-0.5, 0.5], "forget": [0.0, 1.0], "rho": [0.0, 1.0], "capacity": [2, 6],
          "bias_wm": [0.0, 1.0], "bias_rl": [0.0, 1.0], "r0": [0.0, 1.0]}
POSITIVE = ("beta", "sigma_base", "sigma0", "ba_beta", "prior_sd", "noise_sd")
SIGNED = ("prior_mean", "stick")  # may be negative (stick < 0: alternation)
UNIT = ("epsilon", "forget", "rho", "bias_wm", "bias_rl")  # in [0, 1]
CAPACITY = (2, 6)  # rlwm's integer capacity K
RLWM_ONLY = ("rho", "capacity", "bias_wm", "bias_rl", "r0")
MODEL_FIT_KEYS = ("restarts", "generations", "popsize", "zeta", "n_zeta")  # [fit] keys a
# model may set for itself (its own search; its own zeta integration, e.g. many shared nodes for
# the one-particle lam0 and fewer for DRA's particles)

RECOVERY_FIELDS = {
    "n_subjects": Field(int, 20, "simulated subjects per generating model", lo=1, hi=10**5),
    "set_sizes": Field(list, [2, 3, 4, 5, 6], "one block per entry", item_kind=int, lo=1, hi=6),
    "reps": Field(int, 13, "presentations of each stimulus in a block", lo=1, hi=10**4),
    "generating": Field(list, [], "models (names of [models]) that generate data; empty: all",
                        item_kind=str),
    "n_blocks": Field(int, 4, "bandits: blocks (fresh arm means ~ N(0, 1)) per subject; "
                              "gridworld: blocks (fresh memories) per subject", lo=1, hi=10**4),
    "n_episodes": Field(int, 30, "gridworld: episodes per block", lo=1, hi=10**5),
    "n_trials": Field(int, 50, "bandits: trials per block", lo=1, hi=10**6),
}


GROUP_FIELDS = {
    "method": Field(str, "none", "group-level inference: none (each subject alone, maximum "
                                 "likelihood) or em (hierarchical EM with a Gaussian group prior "
                                 "in the search's logit coordinates, Laplace E-steps)",
                    choices=("none", "em")),
    "covariance": Field(str, "diag", "the group prior's covariance: diag or full",
                        choices=("diag", "full")),
    "max_iter": Field(int, 100, "EM iterations (E-steps) at most (a fit that hits it is flagged "
                               "not converged)", lo=1, hi=1000),
    "accelerate": Field(str, "squarem", "squarem: EM accelerated by SQUAREM (Varadhan & "
                                         "Roland 2008), an extrapolated prior kept only if the "
                                         "EM map moves it less than the last plain iterate; "
                                         "none: plain EM iterations",
                        choices=("none", "squarem")),
    "tol": _pos(default=1e-3, doc="EM converges when no group mean or SD (logit units) moves "
                                  "by more than tol in an iteration"),
    "generations": Field(int, 8, "stochastic models: CMA-ES generations of each E-step's MAP "
                                 "search (warm started from the last MAP)", lo=1, hi=1000),
    "fd_step": _pos(default=0.05, doc="stochastic models: first finite-difference step of the "
                                      "Laplace Hessian (logit units; doubled while the "
                                      "curvature is below its Monte Carlo noise)"),
    "hessian_reuse": Field(float, 0.25, "stochastic models: a lane's Laplace Hessian is "
                                        "estimated again when its MAP has moved by more than "
                                        "hessian_reuse x its finite-difference step in some "
                                        "coordinate since the last estimate (0: whenever it "
                                        "moved); the final E-step re-estimates every lane that "
                                        "moved", lo=0.0, hi=10.0),
    "n_ibic": Field(int, 500, "samples from the fitted group prior for the integrated BIC",
                    lo=10, hi=100_000),
    "min_subjects": Field(int, 5, "fewest subjects EM accepts", lo=2, hi=10_000),
}

COMPARE_FIELDS = {
    "cv": Field(str, "none", "held-out log-likelihoods: none, or blocks (each fold leaves "
                             "blocks out, fits the rest, scores the held-out ones)",
                choices=("none", "blocks")),
    "folds": Field(int, 0, "0: leave one block out (one fold per block); k >= 2: the blocks "
                           "dealt round-robin into k folds", lo=0, hi=1000),
}

POSTERIOR_FIELDS = {
    "model": Field(str, "", "the model (a name of [models]) whose posterior is drawn; empty: "
                            "the first stochastic model, else the first"),
    "n_chains": Field(int, 4, "independent chains (R-hat needs >= 2)", lo=2, hi=64),
    "n_iter": Field(int, 2000, "Metropolis-Hastings iterations per chain", lo=10, hi=1_000_000),
    "burn": Field(float, 0.5, "fraction of each chain discarded as warm-up (the proposal "
                              "covariance is adapted there)", lo=0.0, hi=0.9),
    "n_particles": Field(int, 32, "particles of each block's likelihood estimate", lo=1,
                         hi=65_536),
    "refresh": Field(int, 1, "blocks whose random numbers are refreshed per iteration "
                             "(block pseudo-marginal; the rest are kept: correlated estimates)",
                     lo=1, hi=10_000),
}


def _section(raw: dict, name: str, fields: dict) -> dict:
    sec = raw.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(name, "expected a table")
    for key in sec:
        if key not in fields:
            raise ConfigError(f"{name}.{key}", f"unknown key; allowed: {', '.join(sorted(fields))}")
    return {k: f.validate(f"{name}.{k}", sec[k]) if k in sec else copy.deepcopy(f.default)
            for k, f in fields.items()}


def _check_model(name: str, raw, task: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"models.{name}", "expected a table")
    for key in raw:
        if key not in ("kind", "free", "bounds", *MODEL_FIT_KEYS, *PARAMS):
            raise ConfigError(f"models.{name}.{key}", "unknown key; allowed: kind, free, "
                              "bounds, " + ", ".join(MODEL_FIT_KEYS + PARAMS))
    kind = Field(str, name if name in KINDS else None, choices=KINDS).validate(
        f"models.{name}.kind", raw.get("kind", name if name in KINDS else None))
    if "gamma" in raw and task != "gridworld":
        raise ConfigError(f"models.{name}.gamma", "the discount is a parameter of task = "
                          "\"gridworld\" only")
    if (kind in BANDIT_KINDS) != (task == "bandits") and kind in BANDIT_KINDS:
        raise ConfigError(f"models.{name}.kind", f"{kind!r} needs task = \"bandits\"")
    if kind == "rlwm" and task != "stimulus_response":
        raise ConfigError(f"models.{name}.kind", "'rlwm' needs task = \"stimulus_response\" "
                          "(blocks of set_size stimuli)")
    for p in COMPONENTS + RLWM_ONLY:  # listed (fixed) for a kind that does not read it
        if p in raw and p not in USES[kind]:
            takes = (", ".join(k for k in KINDS if p in USES[k]))
            raise ConfigError(f"models.{name}.{p}", f"kind {kind!r} cannot take {p!r} "
                              f"(kinds that can: {takes})")
    free = Field(list, [], item_kind=str, choices=PARAMS).validate(
        f"models.{name}.free", raw.get("free", []))
    for p in free:
        if p not in USES[kind]:
            raise ConfigError(f"models.{name}.free", f"{p!r} is not a parameter of kind {kind!r} "
                              f"(it uses {', '.join(USES[kind])})")
    if len(set(free)) != len(free):
        raise ConfigError(f"models.{name}.free", f"repeats a parameter: {free}")
    values = {**DEFAULTS, **KIND_DEFAULTS.get(kind, {})}
    for p in PARAMS:
        if p in raw:
            values[p] = Field(float, lo=None if p in SIGNED else 0.0,
                              hi=1.0 if p in UNIT else None).validate(f"models.{name}.{p}", raw[p])
    bad = [p for p in POSITIVE if values[p] <= 0]
    if bad:
        raise ConfigError(f"models.{name}.{bad[0]}", f"expected a number > 0, got {values[bad[0]]}")
    if values["epsilon"] >= 1:
        raise ConfigError(f"models.{name}.epsilon", f"expected a lapse rate < 1, got {values['epsilon']}")
    cap = values["capacity"]
    if "capacity" in raw and (cap != int(cap) or not CAPACITY[0] <= cap <= CAPACITY[1]):
        raise ConfigError(f"models.{name}.capacity", f"expected an integer in "
                          f"{CAPACITY[0]}..{CAPACITY[1]}, got {raw['capacity']!r}")
    components = [c for c in COMPONENTS if kind in COMPONENT_KINDS and (c in free or c in raw)]
    own = raw.get("bounds", {})
    if not isinstance(own, dict):
        raise ConfigError(f"models.{name}.bounds", "expected a table {parameter = [lo, hi]}")
    search = {k: FIT_FIELDS[k].validate(f"models.{name}.{k}", raw[k]) for k in MODEL_FIT_KEYS
              if k in raw}  # this model's own search and zeta settings (else [fit]'s)
    return {"kind": kind, "free": free, "values": values, "components": components,
            "search": search,
            "bounds": {p: _check_bounds(f"models.{name}.bounds.{p}", p, v) for p, v in own.items()}}


def _check_bounds(key: str, p: str, v) -> list:
    if p not in PARAMS:
        raise ConfigError(key, f"unknown parameter; allowed: {', '.join(PARAMS)}")
    v = Field(list, item_kind=float).validate(key, v)
    if len(v) != 2 or not v[0] < v[1] or not all(map(math.isfinite, v)):
        raise ConfigError(key, f"expected [lo, hi] with lo < hi, both finite, got {v}")
    if p == "capacity":
        lo, hi = CAPACITY
        if v[0] != int(v[0]) or v[1] != int(v[1]) or v[0] < lo or v[1] > hi:
            raise ConfigError(key, f"expected integers within {lo}..{hi}, got {v}")
        return [int(v[0]), int(v[1])]
    if v[0] < (-math.inf if p in SIGNED else 0.0) or (p in UNIT and v[1] > 1.0):
        rng = "lo < hi" if p in SIGNED else ("0 <= lo < hi <= 1" if p in UNIT else "0 <= lo < hi")
        raise ConfigError(key, f"expected [lo, hi] with {rng}, got {v}")
    return v


def validate(raw: dict) -> dict:
    """Check a raw fit config and fill in defaults; raises ConfigError naming the key."""
    raw = dict(raw)
    name = raw.pop("_name", "fit")
    allowed = {"task", "fit", "models", "bounds", "recovery", "group", "compare", "posterior",
               *TOP_FIELDS}
    for key in raw:
        if key not in allowed:
            raise ConfigError(key, f"unknown top-level key; allowed: {', '.join(sorted(allowed))}")
    task = Field(str, choices=TASKS).validate("task", raw.get("task", ""))
    cfg = {"task": task, "name": name}
    for key, f in TOP_FIELDS.items():
        cfg[key] = f.validate(key, raw[key]) if key in raw else copy.deepcopy(f.default)
    if "out" in raw and raw["out"] == "":
        raise ConfigError("out", "expected a folder path, got an empty string (leave the key out "
                                 "for the default results/<config name>)")
    cfg["out"] = cfg["out"] or f"results/{name}"
    sec = raw.get("fit", {})
    if not isinstance(sec, dict):
        raise ConfigError("fit", "expected a table")
    for key in sec:
        if key not in FIT_FIELDS:
            raise ConfigError(f"fit.{key}", f"unknown key; allowed: {', '.join(sorted(FIT_FIELDS))}")
    cfg["fit"] = {k: f.validate(f"fit.{k}", sec[k]) if k in sec else f.default
                  for k, f in FIT_FIELDS.items()}
    if task == "bandits":  # one state (the data's state column is 0)
        if sec.get("n_states", 1) != 1:
            raise ConfigError("fit.n_states", "must be 1 for task = \"bandits\"")
        cfg["fit"]["n_states"] = 1
        if "figures" not in raw:
            cfg["figures"] = []
    if cfg["fit"]["sigma_min"] > cfg["fit"]["sigma_max"]:
        raise ConfigError("fit.sigma_min", "must be <= fit.sigma_max")
    mods = raw.get("models", {k: {} for k in KINDS if k not in BANDIT_KINDS})
    if not isinstance(mods, dict) or not mods:
        raise ConfigError("models", "expected at least one table [models.NAME]")
    cfg["models"] = {n: _check_model(n, m, task) for n, m in mods.items()}
    bounds = raw.get("bounds", {})
    if not isinstance(bounds, dict):
        raise ConfigError("bounds", "expected a table")
    cfg["bounds"] = copy.deepcopy(BOUNDS)
    for p, v in bounds.items():
        cfg["bounds"][p] = _check_bounds(f"bounds.{p}", p, v)
    for n, m in cfg["models"].items():
        for p in m["free"]:
            if p == "capacity":  # profiled over the integers of its box
                continue
            own = p in m["bounds"]
            lo, hi = m["bounds"][p] if own else cfg["bounds"][p]
            if not lo < m["values"][p] < hi:
                where = f"models.{n}.bounds.{p}" if own else f"bounds.{p}"
                raise ConfigError(f"models.{n}.{p}", f"start value {m['values'][p]} must lie "
                                  f"strictly inside {where} = [{lo}, {hi}]")
    if "recovery" in raw:
        rec = raw["recovery"]
        if not isinstance(rec, dict):
            raise ConfigError("recovery", "expected a table")
        for key in rec:
            if key not in RECOVERY_FIELDS:
                raise ConfigError(f"recovery.{key}",
                                  f"unknown key; allowed: {', '.join(sorted(RECOVERY_FIELDS))}")
        r = {k: f.validate(f"recovery.{k}", rec[k]) if k in rec else copy.deepcopy(f.default)
             for k, f in RECOVERY_FIELDS.items()}
        for g in r["generating"]:
            if g not in cfg["models"]:
                raise ConfigError("recovery.generating", f"{g!r} is not a model of [models]")
        if task == "stimulus_response" and max(r["set_sizes"]) > cfg["fit"]["n_states"]:
            raise ConfigError("recovery.set_sizes", "a set size exceeds fit.n_states")
        r["generating"] = r["generating"] or list(cfg["models"])
        cfg["recovery"] = r
    if task == "gridworld":
        _gridworld(cfg, sec)
    cfg["group"] = _section(raw, "group", GROUP_FIELDS)
    cfg["compare"] = _section(raw, "compare", COMPARE_FIELDS)
    cfg["posterior"] = _section(raw, "posterior", POSTERIOR_FIELDS)
    if cfg["group"]["method"] == "em" and task != "stimulus_response":
        raise ConfigError("group.method", f"em is for task = \"stimulus_response\" (this "
                                          f"config's task is {task!r})")
    if cfg["compare"]["cv"] != "none" and task == "gridworld":
        raise ConfigError("compare.cv", "blocks is for the stimulus-response and bandit tasks "
                                        "(the grid-world filter has no held-out scoring yet)")
    pm = cfg["posterior"]["model"]
    if pm and pm not in cfg["models"]:
        raise ConfigError("posterior.model", f"{pm!r} is not a model of [models] "
                          f"({', '.join(cfg['models'])})")
    if task == "bandits" and "ppc" in cfg["figures"]:
        raise ConfigError("figures", "'ppc' (accuracy by set size) is for stimulus_response")
    for fig in cfg["figures"]:
        if fig in ("recovery_scatter", "confusion") and "recovery" not in cfg:
            raise ConfigError("figures", f"{fig!r} needs a [recovery] section")
    return cfg


def _gridworld(cfg: dict, sec: dict) -> None:
    """The maze (default: Fig. 1's) sets ``n_states`` and ``n_actions``."""
    from dra_jax.envs.gridworld import Layout
    from dra_jax.fitting.sequential import task_of

    for key in ("n_states", "n_actions"):
        if key in sec:
            raise ConfigError(f"fit.{key}", "set by fit.maze for task = \"gridworld\"")
    maze = tuple(cfg["fit"]["maze"]) or tuple(Layout().to_maze())
    try:
        task = task_of(maze)
    except ConfigError as e:
        raise ConfigError("fit.maze", str(e).removeprefix("config error: ")) from None
    if (task.tables.start_probs > 0).sum() != 1:
        raise ConfigError("fit.maze", "expected exactly one start cell 'S' (the rollouts' start)")
    cfg["fit"].update(maze=list(maze), n_states=task.n_states, n_actions=task.n_actions)


def load(path, overrides=()) -> dict:
    return validate(load_raw(path, overrides))
