"""Task ``episodic``: capacity-limited episodic RL on tabular MDPs (the review's Appendix B).

Agents (``task_params.agent``, a grid axis as in the bandit configs):

* ``"psrl"``: posterior sampling for RL (Algorithm 6);
* ``"vepsrl:BETA"``: value-equivalent rate-distortion sampling (Algorithm 7) at ``beta``;
* ``"dra"`` / ``"dra:LAM"``: the DRA agent (Algorithm 1 of Patel et al. 2020) through the lane
  engine :mod:`dra_jax.lane.agent`, memories per ``(step, state)``, at ``[dra] lam`` or ``LAM``.

Environments (``task_params.env``): ``riverswim``, ``random`` (a true MDP drawn from the prior
per seed: Bayesian regret) and ``grid`` (the DRA grid-world, slippery). Runs of the same seed
face the same MDP and the same environment noise; PSRL and VE-PSRL of a seed draw the same
posterior samples (:mod:`dra_jax.episodic.psrl`).

Per run: ``final.cumulative_regret`` = ``sum_k rho . (V*_{M*} - V^{pi_k}_{M*})`` over the
``[dra] episodes`` episodes (exact for PSRL / VE-PSRL; for DRA the regret of its current policy
estimated from ``eval.n_rollouts`` rollouts every ``eval.every`` episodes, held between
evaluations); ``final.rate`` = the cumulative rate in nats: VE-PSRL the sum over episodes of its
channel's ``I(Z; J)``, PSRL ``episodes * log Z`` (its target M* on Z samples), DRA the sum over
episodes of its KL cost ``KL(N(q, sigma^2) || N(q, sigma_base^2))`` in nats (``rate_kind``
names which). ``objective`` = -cumulative regret, ``expected_reward`` = mean return per episode
(``V* - regret``), ``cost`` = ``rate``.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.config import (
    ConfigError,
    Field,
    TaskSpec,
    agent_spec_check,
    iter_run_params,
    parse_agent_spec,
    register_task,
    reject_equal_search,
)
from dra_jax.core import memory
from dra_jax.envs import episodic as envs
from dra_jax.episodic import psrl
from dra_jax.lane import agent as lane_engine
from dra_jax.lane import batching
from dra_jax.results import GridResults
from dra_jax.runtime.devices import jit_over_runs, pad_batch

AGENTS = ("psrl", "vepsrl", "dra")
FIGURES = ("regret", "rate", "regret_vs_rate")
RATE_KINDS = {"psrl": "psrl_log_z", "vepsrl": "channel_rate", "dra": "dra_kl_cost"}


AGENT_PARAMS = {"psrl": None, "vepsrl": "beta", "dra": "lam"}


def parse_agent(spec: str) -> tuple[str, float | None]:
    """``"vepsrl:10"`` -> ``("vepsrl", 10.0)``; ``"psrl"`` -> ``("psrl", None)``."""
    return parse_agent_spec(spec, AGENT_PARAMS, required=("vepsrl",))


_check_agent = agent_spec_check(parse_agent)


TASK_PARAMS: dict[str, Field] = {
    "env": Field(str, "riverswim", "the MDP: riverswim | random (drawn from the prior per seed) | "
                 "grid (slippery DRA grid-world)", choices=envs.TASKS, static=True),
    "horizon": Field(int, 20, "episode length H", lo=1, hi=10**5, static=True),
    "agent": Field(str, "psrl", "'psrl' | 'vepsrl:BETA' | 'dra' | 'dra:LAM'", check=_check_agent),
    "z_samples": Field(int, 64, "posterior samples Z of VE-PSRL", lo=2, hi=2**16, static=True),
    "pi_class": Field(str, "all", "policy class of the distortion: all deterministic rules, or "
                      "the Z samples' optimal ones", choices=psrl.PI_CLASSES, static=True),
    "value_class": Field(str, "optimal", "value class: the samples' optimal values, or the box "
                         "[0, H]^S", choices=psrl.VALUE_CLASSES, static=True),
    "n_values": Field(int, 8, "value class 'optimal': this many samples' optimal values, evenly "
                      "spaced in rank (0: all Z)", lo=0, hi=4096, static=True),
    "ba_tol": Field(float, 1e-5, "Blahut-Arimoto tolerance on max |q_{k+1} - q_k|", lo=0,
                    lo_open=True),
    "ba_max_iter": Field(int, 200, "Blahut-Arimoto iteration cap", lo=1, hi=10**6, static=True),
    "ba_loop": Field(str, "while", "Blahut-Arimoto loop", choices=("while", "fori"), static=True),
    "warm_start": Field(bool, True, "start Blahut-Arimoto from the last episode's marginal",
                        static=True),
    "warm_mix": Field(float, 1e-3, "weight of the uniform mixed into the warm start", lo=0,
                      lo_open=True, hi=1.0),
    "prior_alpha": Field(float, 1.0, "Dirichlet prior concentration of each candidate successor",
                         lo=0, lo_open=True),
    "reward_a": Field(float, 1.0, "Beta prior a of the reward means", lo=0, lo_open=True),
    "reward_b": Field(float, 1.0, "Beta prior b of the reward means", lo=0, lo_open=True),
    "river_states": Field(int, 6, "RiverSwim: number of states", lo=2, hi=10**4, static=True),
    "random_states": Field(int, 5, "random MDP: states", lo=2, hi=10**4, static=True),
    "random_actions": Field(int, 3, "random MDP: actions", lo=2, hi=1024, static=True),
    "slip": Field(float, 0.2, "grid: probability that a move is replaced by a uniform one",
                  lo=0.0, hi=1.0),
}

DRA_DEFAULTS = {"episodes": 500, "lam": 0.1, "beta": 10.0, "sigma_base": 1.0, "sigma0": 1.0,
                "alpha_q": 0.1, "alpha_sigma": 0.1, "gamma": 1.0, "n_traj": 10, "psi": "A",
                "max_steps": 1000}


def _check(cfg: dict) -> None:
    d = cfg["dra"]
    if "episodes" in cfg["sweep"]:
        raise ConfigError("sweep.episodes", "every run of an episodic sweep has the same "
                                            "episodes (curves share one episode axis)")
    if d["q_init"] != "zero":
        raise ConfigError("dra.q_init", f"the episodic task starts DRA's means at 'zero', got {d['q_init']!r}")
    if d["objective"] != "dra":
        raise ConfigError("dra.objective", f"the episodic task runs objective 'dra', got {d['objective']!r}")
    reject_equal_search(cfg, "episodic")
    for run in iter_run_params(cfg):
        tp = run["task_params"]
        if run["dra"]["max_steps"] < tp["horizon"]:
            raise ConfigError("dra.max_steps", f"must be >= task_params.horizon ({tp['horizon']}), "
                                               f"got {run['dra']['max_steps']}")
        if tp["n_values"] > tp["z_samples"]:
            raise ConfigError("task_params.n_values", f"must be <= task_params.z_samples "
                                                      f"({tp['z_samples']}), got {tp['n_values']}")


# --------------------------------------------------------------------------- MDPs


@functools.lru_cache(maxsize=None)
def structure(env: str, river_states: int, random_states: int, random_actions: int):
    if env == "riverswim":
        return envs.riverswim(river_states)[0]
    if env == "random":
        return envs.dense_structure(random_states, random_actions)
    return envs.slippery_grid()[0]


def _key_tp(tp: dict):
    return (tp["env"], tp["river_states"], tp["random_states"], tp["random_actions"])


def true_mdp(tp: dict, seed: int) -> envs.MDP:
    """The run's true MDP (numpy arrays): fixed for riverswim and grid, drawn from the prior by
    the seed for random (the same for every agent of the seed)."""
    st = structure(*_key_tp(tp))
    if tp["env"] == "riverswim":
        m = envs.riverswim(tp["river_states"])[1]
    elif tp["env"] == "grid":
        m = envs.slippery_grid(tp["slip"])[1]
    else:
        with jax.threefry_partitionable(False):
            m = envs.random_mdp(jax.random.fold_in(jax.random.key(seed), 0x4D4450), st,
                                tp["prior_alpha"], tp["reward_a"], tp["reward_b"])
    return envs.MDP(np.asarray(m.P, np.float32), np.asarray(m.R, np.float32))


@functools.lru_cache(maxsize=None)
def _lane_task(key_tp: tuple, H: int) -> envs.EpisodicTask:
    return envs.EpisodicTask(structure(*key_tp), H)


# --------------------------------------------------------------------------- helpers


def _stack(items):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


def _sharded(fn, n_dev: int):
    """``jit(vmap(fn))``, its batch split over ``n_dev`` devices by ``shard_map`` when > 1."""
    return jit_over_runs(jax.vmap(fn), n_dev)


def run_psrl_batch(st: psrl.Static, struct, seeds, hypers, trues, n_dev: int | None = None):
    """Run a batch of PSRL / VE-PSRL runs; returns (RunOut as numpy, compile_s, run_s)."""
    n_dev = n_dev or len(jax.local_devices())
    n = len(seeds)
    keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])
    args, _ = pad_batch({"k": keys, "hp": _stack(hypers), "m": _stack(trues)},
                                    n_dev, 2)
    run = psrl.make_run(st, struct)

    def one(a):
        return run(jax.random.wrap_key_data(a["k"]), a["hp"], a["m"])

    with jax.threefry_partitionable(False):
        t0 = time.perf_counter()
        f = _sharded(one, n_dev).lower(args).compile()
        t1 = time.perf_counter()
        out = jax.block_until_ready(f(args))
        t2 = time.perf_counter()
    return jax.tree.map(lambda x: np.asarray(x)[:n], out), t1 - t0, t2 - t1


def _step_fill(values: np.ndarray, eval_eps: np.ndarray, episodes: int) -> np.ndarray:
    """Per-episode values ``[n, episodes]`` from evaluations ``[n, n_evals]`` at ``eval_eps``:
    episode k takes the last evaluation at or before k."""
    idx = np.searchsorted(eval_eps, np.arange(episodes), side="right") - 1
    return values[:, idx]


# --------------------------------------------------------------------------- runs


def _run_dra(cfg, runs, idx, progress):
    tp0 = runs[idx[0]]["task_params"]
    d0 = runs[idx[0]]["dra"]
    H, E = tp0["horizon"], d0["episodes"]
    task = _lane_task(_key_tp(tp0), H)
    every = cfg["eval"]["every"]
    eval_eps = tuple(int(e) for e in range(0, E + 1, every)) + (() if E % every == 0 else (E,))
    st = lane_engine.AgentStatic(episodes=E, n_traj=d0["n_traj"], grad=d0["grad"], max_steps=H,
                                 eval_every=every, n_rollouts=cfg["eval"]["n_rollouts"],
                                 snapshots=eval_eps, optimizer=d0["optimizer"])
    params, v_star = [], []
    for i in idx:
        r = runs[i]
        dra = dict(r["dra"])
        lam = parse_agent(r["task_params"]["agent"])[1]
        if lam is not None:
            dra["lam"] = lam
        m = true_mdp(r["task_params"], r["seed"])
        params.append(lane_engine.make_run_params(dra, r["seed"], {"P": m.P, "R": m.R}))
        _, V, _ = envs.value_iteration(envs.MDP(jnp.asarray(m.P), jnp.asarray(m.R)), task.st.succ, H)
        v_star.append(float(np.asarray(V[0]) @ task.st.rho))
    t0 = time.perf_counter()
    out = batching.train_batch(task, st, lane_engine.stack_params(params))
    out = jax.tree.map(np.asarray, jax.block_until_ready(out))
    run_s = time.perf_counter() - t0
    v_star = np.asarray(v_star)
    ev = np.asarray(st.eval_episodes)
    regret_ev = v_star[:, None] - out.curves[:, :, 1]
    base = np.asarray([params[j]["sigma_base"] for j in range(len(idx))], np.float32)
    kl_ev = np.asarray(jnp.sum(memory.kl_per_memory(jnp.asarray(out.snap_sigma),
                                                    jnp.asarray(base)[:, None, None, None]),
                               axis=(-2, -1)))  # every memory is learned: [n, n_evals]
    regret = _step_fill(regret_ev, ev, E)
    rate = _step_fill(kl_ev, ev, E)
    extra = [{"env_steps": int(out.env_steps[j]), "truncated_rollouts": int(out.truncations[j])}
             for j in range(len(idx))]
    return regret, rate, np.full_like(regret, np.nan), np.zeros_like(regret), v_star, extra, 0.0, run_s


def _run_model_based(cfg, runs, idx, name, progress):
    tp0 = runs[idx[0]]["task_params"]
    E = runs[idx[0]]["dra"]["episodes"]
    st = psrl.Static(name, tp0["horizon"], E, tp0["z_samples"], tp0["pi_class"],
                     tp0["value_class"], tp0["n_values"], tp0["ba_max_iter"], tp0["ba_loop"],
                     tp0["warm_start"])
    hyps, trues, seeds = [], [], []
    for i in idx:
        t = runs[i]["task_params"]
        beta = parse_agent(t["agent"])[1]
        hyps.append(psrl.make_hyper(beta=beta if beta is not None else 1.0, ba_tol=t["ba_tol"],
                                    alpha0=t["prior_alpha"], r_a=t["reward_a"], r_b=t["reward_b"],
                                    warm_mix=t["warm_mix"]))
        trues.append(true_mdp(t, runs[i]["seed"]))
        seeds.append(runs[i]["seed"])
    out, c_s, r_s = run_psrl_batch(st, structure(*_key_tp(tp0)), seeds, hyps, trues)
    extra = [{"ba_iters_mean": float(out.iters[j].mean()), "ba_iters_max": int(out.iters[j].max()),
              "ba_capped_episodes": int(out.capped[j].sum()),
              "ba_gap_max": float(out.gap[j].max()),
              "moved_fraction": float(out.moved[j].mean())} for j in range(len(idx))]
    return out.regret, out.rate, out.distortion, out.iters, out.v_star, extra, c_s, r_s


def run(cfg: dict, runs: list[dict], progress) -> GridResults:
    """The sweep's runner: one compiled batch per static group (agent family x env x sizes)."""
    n = len(runs)
    E = runs[0]["dra"]["episodes"]
    groups: dict = {}
    for i, r in enumerate(runs):
        t = r["task_params"]
        name = parse_agent(t["agent"])[0]
        key = (name, tuple(sorted((k, v) for k, v in t.items() if k not in
                                  ("agent", "ba_tol", "warm_mix", "prior_alpha", "reward_a",
                                   "reward_b", "slip"))))
        if name == "dra":
            key += (r["dra"]["n_traj"], r["dra"]["grad"], r["dra"]["optimizer"], t["slip"])
        groups.setdefault(key, []).append(i)
    regret = np.zeros((n, E), np.float32)
    rate = np.zeros((n, E), np.float32)
    dist = np.zeros((n, E), np.float32)
    iters = np.zeros((n, E), np.int32)
    v_star = np.zeros(n)
    extras: list = [None] * n
    compile_s = run_s = 0.0
    done = 0
    for (name, _, *rest), idx in groups.items():
        progress.message(f"{name} on {runs[idx[0]]['task_params']['env']}: {len(idx)} runs x {E} episodes")
        if name == "dra":
            res = _run_dra(cfg, runs, idx, progress)
        else:
            res = _run_model_based(cfg, runs, idx, name, progress)
        g_reg, g_rate, g_dist, g_it, g_v, g_extra, c_s, r_s = res
        regret[idx], rate[idx], dist[idx], iters[idx], v_star[idx] = g_reg, g_rate, g_dist, g_it, g_v
        for j, i in enumerate(idx):
            extras[i] = g_extra[j]
        compile_s += c_s
        run_s += r_s
        done += len(idx) * E
        progress.update(done, extra=f"{name}: compile {c_s:.1f}s run {r_s:.1f}s", force=True)

    cum_regret = np.cumsum(regret, axis=1)
    cum_rate = np.cumsum(rate, axis=1)
    finals, run_extra = [], []
    for i, r in enumerate(runs):
        name, value = parse_agent(r["task_params"]["agent"])
        cr, rt = float(cum_regret[i, -1]), float(cum_rate[i, -1])
        finals.append({"objective": -cr, "expected_reward": float(v_star[i] - regret[i].mean()),
                       "cost": rt, "cumulative_regret": cr, "rate": rt,
                       "rate_kind": RATE_KINDS[name], "v_star": float(v_star[i])})
        run_extra.append({"agent": name, "agent_param": value, **extras[i]})
    curves = {"regret": regret, "cum_regret": cum_regret, "rate": rate, "cum_rate": cum_rate,
              "distortion": dist, "ba_iters": iters}
    summary = {"definitions": {
        "cumulative_regret": "sum over episodes of rho.(V*_{M*} - V^{pi_k}_{M*}) at h = 1; exact for "
                             "psrl/vepsrl, DRA: its policy's return estimated by eval rollouts "
                             "every eval.every episodes (held in between)",
        "rate": "cumulative over episodes, nats. channel_rate: Blahut-Arimoto I(Z; J) on the Z "
                "posterior samples; psrl_log_z: log Z per episode (PSRL's target M* on Z samples, "
                "the identity channel); dra_kl_cost: KL(N(q,sigma^2)||N(q,sigma_base^2)) summed "
                "over memories, per episode (DRA's cost, not a mutual information)",
        "objective": "-cumulative_regret", "cost": "= rate",
    }}
    timing = {"compile_s": compile_s, "run_s": run_s, "env_steps": int(n * E * runs[0]["task_params"]["horizon"]),
              "devices": len(jax.local_devices())}
    return GridResults(finals=finals, curves=curves, arrays={"episode": np.arange(1, E + 1)},
                   summary=summary, run_extra=run_extra, timing=timing)


def plot(cfg: dict, results: GridResults, fig_dir: Path) -> list[Path]:
    from dra_jax.figures import episodic as figs

    return figs.plot(cfg, results, fig_dir, [r for r in iter_run_params(cfg)], parse_agent)


@register_task("episodic")
def spec() -> TaskSpec:
    return TaskSpec(name="episodic", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
                    figures=FIGURES, run=run, plot=plot, psi_choices=("A", "Q", "R"), check=_check,
                    eval_defaults={"every": 10, "n_rollouts": 20})
