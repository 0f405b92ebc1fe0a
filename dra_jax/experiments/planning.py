"""Task "planning": DRA on the Huys et al. task under a search budget (Sec. 4, Fig. 3, Fig. B.4).

Config (``configs/planning.toml``, ``configs/planning_moves.toml``):

* ``[task_params]``: ``moves`` (M, static), ``pin_last_move`` (static), ``budget`` (the search
  budget b in transitions, traced and sweepable, ``M <= b <= M * 2^M``), ``budget_index``
  (traced, sweepable: when >= 0 the budget is ``[budgets].m<M>[budget_index]``, so a sweep over
  M can use each M's own budgets), ``a_dec``, ``t_nondec`` (the speed-accuracy objective F-tilde,
  Eq. 8), ``objective`` (which objective the sigma ascent maximizes: F or F-tilde);
* ``[dra]``: Table B.1 defaults; ``psi`` is ``max`` (the only choice here); planning-only keys
  (:data:`PLANNING_DRA_FIELDS`): ``baseline`` (``none``, the paper's estimator; ``loo`` and
  ``loo_start``, unbiased leave-one-out baselines, :func:`dra_jax.planning.planner.psi_baseline`) and
  ``lr_schedule`` (``constant`` or ``cosine`` decay of ``alpha_sigma`` to 0);
* ``[cma]``: the CMA-ES baseline; ``[final]``: the rollouts of the final evaluation;
  ``[budgets]``: budget lists per M for ``budget_index``.

Training and evaluation (Algorithm 1 with ``Psi = max``, the CMA-ES baseline) are
:mod:`dra_jax.planning.trainer`, figures :mod:`dra_jax.figures.planning`; this module holds the
config spec (fields, defaults, cross-key checks) and the glue: config -> traced parameters and
static groups (:func:`make_params`, :func:`_static_of`), the sweep's runner (:func:`run`: all
runs of a static group in ONE ``jit(vmap(...))`` call per block of ``eval.every`` episodes,
then CMA-ES) and the per-run table the figures read.

The paper's Fig. 3 protocol is ``q_init = "optimal"``, ``learn_q = false``: means fixed at q*
(by backward induction, :func:`dra_jax.envs.planning.q_star`), sigma optimized.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import jax
import numpy as np

from dra_jax import config as config_mod
from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.core.stats import tail_trend
from dra_jax.envs import planning as env
from dra_jax.figures import planning as figures
from dra_jax.planning import equal_search as plan_equal
from dra_jax.planning import planner
from dra_jax.planning.runner import eval_static, train_batches
from dra_jax.planning.trainer import PARAM_KEYS, PlanStatic, run_cma
from dra_jax.results import GridResults
from dra_jax.runtime.checkpoint import config_fingerprint
from dra_jax.runtime.execution import ExecOptions

FIGURES = ("fig3c", "fig3d", "fig3e", "fig3f", "figB4")

# ------------------------------------------------------------------ config


def _budget_list(m: int) -> Field:
    return Field(list, [], f"search budgets for M = {m} (used with task_params.budget_index)",
                 item_kind=int, lo=m, hi=env.full_budget(m), static=True, sweepable=False)


TASK_PARAMS = {
    "moves": Field(int, 3, "moves per trial, M", lo=3, hi=5, static=True),
    "pin_last_move": Field(bool, False, "false: all 6*M*2 memories learnable (the paper's 36 for "
                           "M = 3); true: memories with one move left pinned at sigma = 1 and "
                           "costless (the authors' code)", static=True),
    "budget": Field(int, 12, "search budget b: state transitions per planning trial, "
                    "M <= b <= M*2^M (traced)", lo=1),
    "budget_index": Field(int, -1, "when >= 0, b = budgets.m<M>[budget_index] (traced)", lo=-1),
    # F-tilde = E[max path reward] / (a_dec * b + t_nondec) - lam * KL (Eq. 8). The time unit
    # is the non-decision time (t_nondec = 1); with a_dec = 0.025 a full M = 3 search (24
    # transitions) adds 60% to the time of a trial. The expected reward at the optimized sigma
    # rises steeply over the first transitions and saturates well before b = M*2^M (measured
    # with configs/planning.toml: 51, 57, 61, 64, 67 at b = 3, 6, 9, 12, 24), while the time
    # grows linearly, so the reward rate R(b) / (a_dec*b + 1) peaks inside the range (at b = 9-12
    # for M = 3) whatever the KL term does. As t_nondec -> 0 the peak moves to b = M (rate ~ R/b);
    # as a_dec -> 0 to b = M*2^M (no time cost): the defaults sit between the two boundaries.
    "a_dec": Field(float, 0.025, "decision time per transition (F-tilde, Eq. 8)", lo=0, lo_open=True),
    "t_nondec": Field(float, 1.0, "non-decision time per trial (F-tilde, Eq. 8)", lo=0),
    "objective": Field(str, "F", "what the sigma ascent maximizes: F (Eq. 1) or F_tilde (Eq. 8)",
                       choices=("F", "F_tilde")),
}

EXTRA_SECTIONS = {
    "cma": {
        "enabled": Field(bool, True, "run the CMA-ES baseline (fixed q*, sigma only)",
                         sweepable=False),
        "popsize": Field(int, 14, "CMA-ES population per generation (cma's default for 36 "
                         "dimensions is 14)", lo=2, hi=10**4, sweepable=False),
        "generations": Field(int, 100, "CMA-ES generations", lo=1, hi=10**6, sweepable=False),
        "n_eval_trials": Field(int, 256, "planning trials per F estimate of a candidate", lo=1, hi=2**20,
                               sweepable=False),
        "restarts": Field(int, 5, "independent CMA-ES runs per budget (seeds seed, seed+1, ...)",
                          lo=1, sweepable=False),
        "step0": Field(float, 20.0, "initial CMA-ES step size (in sigma units)", lo=0,
                       lo_open=True, sweepable=False),
    },
    "final": {
        "n_rollouts": Field(int, 8192, "planning trials of the final evaluation (finals, CMA-ES "
                            "solutions)", lo=1, hi=2**24, static=True, sweepable=False),
    },
    "budgets": {f"m{m}": _budget_list(m) for m in env.MOVES_CHOICES},
}

# [dra] keys of the planning task only (TaskSpec.dra_fields)
PLANNING_DRA_FIELDS = {
    "baseline": Field(str, "none", "baseline b_i subtracted from Psi = max in the sigma "
                      "gradient (traced): none (the paper's estimator), loo (leave-one-out over "
                      "the n_traj trials of the update, b_i = mean_{j != i} Psi_j) or loo_start "
                      "(the same over the other trials from trial i's start state, loo when "
                      "there is none); all unbiased; loo and loo_start need n_traj >= 2",
                      choices=planner.BASELINES),
    "lr_schedule": Field(str, "constant", "learning rate of the sigma optimizer: constant "
                         "alpha_sigma (the paper's), or cosine decay from alpha_sigma to 0 over "
                         "the episodes (optax.cosine_decay_schedule)", choices=("constant", "cosine"),
                         static=True),
}

DRA_DEFAULTS = {  # Table B.1, planning column
    "episodes": 2000,
    "alpha_q": 0.1,
    "alpha_sigma": 0.1,
    "beta": 10.0,
    "gamma": 1.0,
    "lam": 1.0,
    "sigma_base": 100.0,
    "sigma0": 50.0,
    "n_traj": 10,
    "psi": "max",
    "sigma_min": 0.01,
    "sigma_max": 100.0,
    "q_init": "optimal",
    "learn_q": False,
}

EVAL_DEFAULTS = {"every": 100, "n_rollouts": 512}


def resolve_budget(cfg: dict, run: dict) -> int:
    """The search budget b of one run (``budget``, or ``budgets.m<M>[budget_index]``)."""
    tp = run["task_params"]
    if tp["budget_index"] >= 0:
        return int(cfg["budgets"][f"m{tp['moves']}"][tp["budget_index"]])
    return int(tp["budget"])


def _key_of(cfg: dict, name: str) -> str:
    return f"sweep.{name}" if name in cfg["sweep"] else f"task_params.{name}"


def _key_of_dra(cfg: dict, name: str) -> str:
    if name in cfg["sweep"]:
        return f"sweep.{name}"
    v = next((v for v, o in cfg["variants"].items() if name in o), None)
    return f"variants.{v}.{name}" if v is not None else f"dra.{name}"


def check(cfg: dict) -> None:
    """Cross-key checks of every run: ``M <= b <= M*2^M``, ``budget_index`` in range,
    ``episodes`` a multiple of ``eval.every``."""
    for run in config_mod.iter_run_params(cfg):
        tp = run["task_params"]
        m = tp["moves"]
        full = env.full_budget(m)
        if tp["budget_index"] >= 0:
            lst = cfg["budgets"][f"m{m}"]
            if tp["budget_index"] >= len(lst):
                raise ConfigError(_key_of(cfg, "budget_index"),
                                  f"index {tp['budget_index']} is past the end of budgets.m{m} "
                                  f"({len(lst)} budgets)")
        else:
            b = tp["budget"]
            if not m <= b <= full:
                key = _key_of(cfg, "budget")
                if "budget" in cfg["sweep"]:
                    key += f"[{cfg['sweep']['budget'].index(b)}]"
                raise ConfigError(key, f"search budget must be in [M, M*2^M] = [{m}, {full}] for "
                                       f"M = {m} moves, got {b}")
        d = run["dra"]
        if d["baseline"] != "none" and d["n_traj"] < 2:
            v = run["point"].get("variant")
            where = (f"variants.{v}" if "n_traj" in cfg["variants"].get(v, {})
                     else "sweep" if "n_traj" in cfg["sweep"] else "dra")
            raise ConfigError(_key_of_dra(cfg, "baseline"),
                              f"{d['baseline']!r} (leave-one-out over the n_traj trials of an "
                              f"update) needs "
                              f"n_traj >= 2, got n_traj = {d['n_traj']} (from {where}.n_traj)")
        if d["allocation"] == "equal" and d["learn_q"]:
            raise ConfigError(config_mod.dra_key_of(cfg, run, "allocation"),
                              "'equal' searches the shared sigma with q = q* (Fig. 3's protocol), "
                              "so it needs learn_q = false; with learned means use 'equal_sgd'")
        if d["episodes"] % cfg["eval"]["every"]:
            raise ConfigError("eval.every", f"must divide dra.episodes ({d['episodes']}), got "
                                            f"{cfg['eval']['every']}")


# ------------------------------------------------------------------ the runner


def make_params(cfg: dict, run: dict) -> dict:
    """The traced per-run parameters of one run (numpy scalars)."""
    d, tp = run["dra"], run["task_params"]
    p = {k: np.float32(d[k] if k in d else tp[k]) for k in PARAM_KEYS}
    p["budget"] = np.int32(resolve_budget(cfg, run))
    p["learn_q"] = np.bool_(d["learn_q"])
    p["learn_sigma"] = np.bool_(d["learn_sigma"])
    p["equal"] = np.bool_(d["allocation"] == "equal_sgd")
    p["rate"] = np.bool_(tp["objective"] == "F_tilde")
    p["baseline"] = np.int32(planner.BASELINES.index(d["baseline"]))
    p["seed"] = np.uint32(run["seed"])
    return p


def _static_of(cfg: dict, run: dict) -> PlanStatic:
    d, tp = run["dra"], run["task_params"]
    return PlanStatic(moves=tp["moves"], n_traj=d["n_traj"], grad=d["grad"],
                      optimizer=d["optimizer"], lr_schedule=d["lr_schedule"], q_init=d["q_init"],
                      pin_last_move=tp["pin_last_move"], episodes=d["episodes"],
                      every=cfg["eval"]["every"], n_rollouts=cfg["eval"]["n_rollouts"],
                      final_rollouts=cfg["final"]["n_rollouts"],
                      frozen=not d["learn_q"] and not d["learn_sigma"])


def run(cfg: dict, runs: list[dict], progress=None) -> GridResults:
    """The sweep's runner: group runs by their static values, train each group in one compiled
    vmapped call (batches of at most ``max_batch`` runs, checkpointed after every evaluation
    block into ``OUT/checkpoint/`` and resumed with ``--resume``: the sweep command's
    :class:`dra_jax.runtime.execution.ExecOptions`, ``progress.options``), evaluate, then (if ``[cma]
    enabled``) the CMA-ES baseline. Every run is judged converged or not from its curve of F
    (:func:`dra_jax.core.stats.tail_trend`)."""
    opts = getattr(progress, "options", None) or ExecOptions()
    t_search = time.perf_counter()
    runs, searched = plan_equal.resolve_planning(
        cfg, runs, lambda r: _static_of(cfg, r), lambda r: resolve_budget(cfg, r), progress)
    t_search = time.perf_counter() - t_search
    ckpt_dir = Path(opts.out) / "checkpoint" if opts.out is not None else None
    fingerprint = config_fingerprint(cfg)
    max_batch = opts.max_batch or cfg.get("max_batch", 0)
    groups: dict[PlanStatic, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(_static_of(cfg, r), []).append(i)
    n = len(runs)
    m_max = max(r["task_params"]["moves"] for r in runs)
    n_evals = max(st.n_evals for st in groups)
    shape_t = (n, env.N_STATES, m_max)
    q = np.full(shape_t + (env.N_ACTIONS,), np.nan, np.float32)
    sigma = np.full_like(q, np.nan)
    dprime = np.full(shape_t, np.nan, np.float32)
    mean_sigma = np.full(shape_t, np.nan, np.float32)
    impact = np.full(shape_t, np.nan, np.float32)
    curves = np.full((n, n_evals, 4), np.nan, np.float32)
    finals_arr = np.zeros((n, 4), np.float32)
    compile_s = run_s = 0.0
    env_steps = 0
    eval_sets: dict[PlanStatic, list[PlanStatic]] = {}
    for st in groups:
        eval_sets.setdefault(eval_static(st), []).append(st)
    params = [make_params(cfg, r) for r in runs]
    done = 0.0
    for si, sts in enumerate(eval_sets.values()):
        out, cs, rs, d = train_batches([(st, groups[st]) for st in sts], params, max_batch,
                                       progress, ckpt_dir, fingerprint, opts.resume, si, done)
        compile_s, run_s, done = compile_s + cs, run_s + rs, done + d
        for st in sts:
            m = st.moves
            for i in groups[st]:
                summ, curve, final = out[i]
                q[i, :, :m] = summ["q"]
                sigma[i, :, :m] = summ["sigma"]
                dprime[i, :, :m] = summ["dprime"]
                mean_sigma[i, :, :m] = summ["mean_sigma"]
                impact[i, :, :m] = env.impact(m)
                curves[i, :curve.shape[0]] = curve
                finals_arr[i] = final
                if not st.frozen:
                    env_steps += int(params[i]["budget"]) * st.episodes * (st.n_traj + 1)
    finals = [{"objective": float(f[2]), "expected_reward": float(f[0]), "cost": float(f[1]),
               "objective_tilde": float(f[3])} for f in finals_arr]
    run_extra = []
    every = cfg["eval"]["every"]
    for i, r in enumerate(runs):
        b, m = resolve_budget(cfg, r), r["task_params"]["moves"]
        n_ev = r["dra"]["episodes"] // every + 1
        trend = tail_trend(curves[i, :n_ev, 2], np.arange(n_ev) * every)
        run_extra.append({"budget": b, "moves": m,
                          "budget_pct": 100.0 * b / env.full_budget(m),
                          "n_traj": r["dra"]["n_traj"], "allocation": r["dra"]["allocation"],
                          "baseline": r["dra"]["baseline"], "optimizer": r["dra"]["optimizer"],
                          "converged": trend["converged"],
                          "tail_change_of_objective": trend["change"],
                          "tail_noise_of_objective": trend["noise"]})
        if r["dra"]["allocation"] == "equal":
            run_extra[-1]["equal_sigma"] = r["dra"]["sigma0"]
    res = GridResults(
        finals=finals,
        curves={"curve_reward": curves[..., 0], "curve_cost": curves[..., 1],
                "curve_objective": curves[..., 2], "curve_objective_tilde": curves[..., 3],
                "q": q, "sigma": sigma, "dprime": dprime, "mean_sigma": mean_sigma,
                "impact": impact},
        arrays={"eval_episode": np.arange(n_evals, dtype=np.int32) * every},
        summary={"unconverged_runs": [i for i, e in enumerate(run_extra) if e["converged"] is False],
                 "converged_definition": tail_trend.__doc__.split("\n\n")[0].replace("\n    ", " "),
                 "definitions": {
            "objective": "F = E[max path reward] - lam * KL (Eq. 1), final evaluation; the "
                         "expectation is exact over the six start states (the mean of the six "
                         "conditional expectations), Monte Carlo over the planner's noise",
            "objective_tilde": "F-tilde = E[max path reward] / (a_dec * b + t_nondec) - lam * KL "
                               "(Eq. 8)",
            "dprime": "|q1 - q2| / sqrt((sigma1^2 + sigma2^2) / 2) per extended state (s, k)",
            "impact": "|q*1 - q*2| per extended state (s, k)"}},
        run_extra=run_extra,
        timing={"compile_s": compile_s, "run_s": run_s, "env_steps": env_steps,
                "devices": jax.device_count()},
    )
    if searched:
        res.summary["equal_search"] = searched
        res.timing["equal_search_s"] = round(t_search, 3)  # compile and run
    if cfg["cma"]["enabled"]:
        base = {"dra": cfg["dra"], "task_params": cfg["task_params"], "seed": cfg["seed"]}
        st0 = _static_of(cfg, base)
        budgets = sorted({resolve_budget(cfg, r) for r in runs
                          if r["task_params"]["moves"] == st0.moves}) or [resolve_budget(cfg, base)]
        if progress is not None:
            progress.message(f"CMA-ES: M={st0.moves}, budgets {budgets}, "
                             f"{cfg['cma']['restarts']} restarts, popsize {cfg['cma']['popsize']}")
        cm = run_cma(cfg, st0, budgets, progress)
        res.arrays.update({f"cma_{k}": v for k, v in cm.items()
                           if k not in ("compile_s", "run_s", "env_steps", "reused")})
        res.summary["cma"] = {
            "moves": st0.moves, "budgets": budgets,
            # solved earlier in this process (the same problem): the numbers it gave
            "reused_from_this_process": cm["reused"],
            "objective_mean": cm["objective"].mean(axis=1).tolist(),
            "objective_sd": cm["objective"].std(axis=1).tolist(),
            "expected_reward_mean": cm["expected_reward"].mean(axis=1).tolist(),
            "cost_mean": cm["cost"].mean(axis=1).tolist(),
            # the best F of a generation (mean over restarts) judged like a learning curve
            "converged": [tail_trend(h.mean(axis=0), np.arange(h.shape[-1]))["converged"]
                          for h in cm["history"]]}
        res.timing.update({"cma_compile_s": cm["compile_s"], "cma_run_s": cm["run_s"],
                           "compile_s": compile_s + cm["compile_s"],
                           "run_s": run_s + cm["run_s"],
                           "env_steps": env_steps + cm["env_steps"]})
    if ckpt_dir is not None and ckpt_dir.exists() and jax.process_index() == 0:
        shutil.rmtree(ckpt_dir)  # finished: the results are written next
    return res


# ------------------------------------------------------------------ figure glue


def _table(cfg: dict, results: GridResults) -> dict:
    """Per-run columns (grid order) for the figures."""
    runs = list(config_mod.iter_run_params(cfg))
    col = {
        "budget": np.asarray([resolve_budget(cfg, r) for r in runs]),
        "moves": np.asarray([r["task_params"]["moves"] for r in runs]),
        "n_traj": np.asarray([r["dra"]["n_traj"] for r in runs]),
        "equal": np.asarray([r["dra"]["allocation"] in ("equal", "equal_sgd") for r in runs]),
        "baseline": np.asarray([r["dra"]["baseline"] for r in runs]),
        "seed": np.asarray([r["seed"] for r in runs]),
    }
    for k in ("objective", "expected_reward", "cost", "objective_tilde"):
        col[k] = np.asarray([f[k] for f in results.finals], float)
    col["budget_pct"] = 100.0 * col["budget"] / np.asarray([env.full_budget(m) for m in col["moves"]])
    return col


def plot(cfg: dict, results: GridResults, fig_dir: Path) -> list[Path]:
    """Fig. 3c-f and Fig. B.4 (those listed in ``figures``, :mod:`dra_jax.figures.planning`)."""
    return figures.plot(cfg, results, _table(cfg, results), fig_dir)


@register_task("planning")
def _spec() -> TaskSpec:
    return TaskSpec(name="planning", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
                    figures=FIGURES, run=run, plot=plot, extra_sections=EXTRA_SECTIONS,
                    eval_defaults=EVAL_DEFAULTS, psi_choices=("max",), check=check,
                    dra_fields=PLANNING_DRA_FIELDS)
