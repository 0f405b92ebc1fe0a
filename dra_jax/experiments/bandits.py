"""Task ``bandits``: capacity-limited bandit agents (TS, satisficing TS, BLASTS, DRA).

The review's bandit figures (capacity-limited Bayesian RL review, Figs. 2-6) plus a regret-vs-rate
comparison of all four agents. ``[task_params] experiment`` selects the computation:

* ``action_probs`` (Figs. 2-3): BLASTS's marginal action distribution for fixed Gaussian beliefs
  (means ``belief_means``, SD ``belief_sd``; then the best mean moved to give each action gap in
  ``gaps``, and each SD in ``sds``) at the cost of information ``info_cost`` = lambda (utils per
  nat; BLASTS beta = 1/lambda), beside TS (the probability that each arm is best) and Boltzmann
  (softmax of the means at temperature lambda). A run is one (lambda, seed); sweep ``info_cost``.
  Final: ``expected_reward`` = sum_a pi(a) mu(a) of BLASTS on the first belief, ``cost`` = its rate
  (nats), ``objective`` = -(distortion + lambda * rate), the negative Lagrangian BA minimizes.
* ``regret`` (Figs. 4, 6 and regret-vs-rate): bandit runs of ``steps`` pulls. A run is one
  (agent, seed), ``agent`` a spec string: ``"ts"``, ``"sts:EPSILON"``, ``"blasts:BETA"``,
  ``"dra"`` (``[dra] lam``) or ``"dra:LAM"``; sweep ``agent`` (and ``kind``). Runs with the same
  seed face the same bandit. Final: ``objective`` = -cumulative regret at the last step,
  ``expected_reward`` = time-average of the pulled arm's mean, ``cost`` = time-average of the
  agent's information rate (nats; see :mod:`dra_jax.bandits.agents`; ``None`` when not tracked).
* ``rate_distortion`` (Fig. 5): the learning target under the prior (Z prior samples, shared by
  all runs of a seed): BLASTS's channel, satisficing TS's ``A_eps``, TS's ``A*``. Final:
  ``objective`` = -distortion (expected squared regret of the target), ``expected_reward`` = the
  target's mean reward, ``cost`` = rate ``I(E; target)`` (nats).

Every per-run value (epsilon, beta, lam, sigma0, tolerances, priors) is traced; runs are grouped
by what shapes the program (agent kind, bandit kind, sizes) and each group is one
``jit(vmap(...))`` call, a ``lax.scan`` over time inside.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.bandits import agents as ba
from dra_jax.bandits import runner as bandit_runner
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
from dra_jax.envs import bandits as envs
from dra_jax.figures import bandits as figures
from dra_jax.results import GridResults

EXPERIMENTS = ("action_probs", "regret", "rate_distortion")
FIGURES = {  # figure -> the experiment that produces it
    "action_probs": "action_probs",
    "gap_uncertainty": "action_probs",
    "regret": "regret",
    "rate_over_time": "regret",
    "regret_vs_rate": "regret",
    "rate_distortion": "rate_distortion",
}


# --------------------------------------------------------------------------- agent specs


AGENT_PARAMS = {"ts": None, "sts": "epsilon", "blasts": "beta", "dra": "lam"}


def parse_agent(spec: str) -> tuple[str, float | None]:
    """``"blasts:10"`` -> ``("blasts", 10.0)``; ``"ts"`` -> ``("ts", None)``. Raises ValueError."""
    return parse_agent_spec(spec, AGENT_PARAMS, required=("sts", "blasts"))


_check_agent = agent_spec_check(parse_agent)


def _check_means(v: list) -> str | None:
    if len(v) < 2:
        return f"needs at least 2 arms, got {len(v)}"
    return None


def _nonempty(v: list) -> str | None:
    return None if v else "expected a non-empty list"


TASK_PARAMS: dict[str, Field] = {
    "experiment": Field(str, "regret", "which computation (see the module doc)", choices=EXPERIMENTS,
                        static=True, sweepable=False),
    "kind": Field(str, "gaussian", "bandit: N(0,1) prior + unit noise, or Beta(1,1) + Bernoulli",
                  choices=envs.KINDS, static=True),
    "arms": Field(int, 10, "number of arms K", lo=2, hi=4096, static=True),
    "steps": Field(int, 1000, "pulls per run (regret experiment)", lo=1, hi=10**8, static=True),
    "record_every": Field(int, 10, "curves keep one point per this many pulls", lo=1, static=True,
                          sweepable=False),
    "agent": Field(str, "ts", "'ts' | 'sts:EPSILON' | 'blasts:BETA' | 'dra' | 'dra:LAM'",
                   check=_check_agent),
    "z_samples": Field(int, 64, "posterior samples Z of BLASTS and of every rate estimate", lo=1, hi=2**16,
                       static=True),
    "ba_tol": Field(float, 1e-4, "Blahut-Arimoto tolerance on max |q_{k+1} - q_k|", lo=0,
                    lo_open=True),
    "ba_max_iter": Field(int, 100, "Blahut-Arimoto iteration cap", lo=1, hi=10**6, static=True),
    "ba_loop": Field(str, "while", "Blahut-Arimoto loop; while (runs until the batch's slowest "
                     "lane converges) or fori (a fixed trip, each lane frozen once converged); "
                     "while is the faster with the runs of one beta batched together "
                     "(docs/results/blasts.md)",
                     choices=ba.BA_LOOPS, static=True),
    "track_rate": Field(bool, True, "estimate the rate of TS / satisficing TS / DRA every step",
                        static=True),
    "dra_q_rule": Field(str, "posterior_mean", "DRA means: the conjugate posterior mean (a running "
                        "average with the prior as one pseudo-pull) or alpha_q steps",
                        choices=("posterior_mean", "alpha_q"), static=True),
    "prior_mean": Field(float, 0.0, "Gaussian bandit: prior mean of the arm means"),
    "prior_sd": Field(float, 1.0, "Gaussian bandit: prior SD of the arm means", lo=0, lo_open=True),
    "noise_sd": Field(float, 1.0, "Gaussian bandit: reward noise SD", lo=0, lo_open=True),
    "prior_a": Field(float, 1.0, "Bernoulli bandit: Beta prior a", lo=0, lo_open=True),
    "prior_b": Field(float, 1.0, "Bernoulli bandit: Beta prior b", lo=0, lo_open=True),
    "info_cost": Field(float, 1.0, "action_probs: cost of information lambda (utils/nat), "
                       "BLASTS beta = 1/lambda", lo=0, lo_open=True),
    "belief_means": Field(list, [-1.0, 0.0, 1.0], "action_probs: means of the Gaussian beliefs",
                          item_kind=float, check=_check_means, static=True, sweepable=False),
    "belief_sd": Field(float, 1.0, "action_probs: SD of the beliefs", lo=0, lo_open=True,
                       sweepable=False),
    "gaps": Field(list, [0.25, 0.5, 1.0, 2.0], "action_probs: action gaps (best - second best)",
                  item_kind=float, lo=0, lo_open=True, check=_nonempty, static=True,
                  sweepable=False),
    "sds": Field(list, [0.5, 1.0, 2.0, 4.0], "action_probs: belief SDs", item_kind=float, lo=0,
                 lo_open=True, check=_nonempty, static=True, sweepable=False),
}

DRA_DEFAULTS = {
    "episodes": 1,  # unused: a bandit run is task_params.steps one-pull episodes
    "beta": 10.0,
    "lam": 0.1,
    "sigma_base": 1.0,  # = the prior SD of the Gaussian bandit
    "sigma0": 1.0,
    "alpha_q": 0.1,
    "alpha_sigma": 0.1,
    "n_traj": 10,
    "sigma_min": 0.01,
    "sigma_max": 10.0,
    "psi": "A",
}


def _record_floats(cfg: dict, tp: dict) -> int:
    """A run's curves (a few per recorded pull) and per-arm records: the grid's memory check."""
    return 4 * (tp["steps"] // tp["record_every"] + 1) + 4 * tp["arms"]


def _check(cfg: dict) -> None:
    """Cross-key checks over every run of the grid."""
    tp, d = cfg["task_params"], cfg["dra"]
    exp = tp["experiment"]
    reject_equal_search(cfg, "bandits")
    if d["episodes"] != 1:
        raise ConfigError("dra.episodes", "the bandits run task_params.steps pulls; leave "
                                          f"dra.episodes unset (1), got {d['episodes']}")
    if d["optimizer"] != "sgd":
        raise ConfigError("dra.optimizer", f"the bandit DRA agent uses plain SGD ascent ('sgd'), "
                                           f"got {d['optimizer']!r}")
    if d["q_init"] != "zero":
        raise ConfigError("dra.q_init", "the bandit DRA agent starts its means at the prior mean "
                                        f"('zero'), got {d['q_init']!r}")
    for fig in cfg["figures"]:
        if FIGURES[fig] != exp:
            raise ConfigError("figures", f"figure {fig!r} needs experiment {FIGURES[fig]!r}, "
                                         f"but task_params.experiment is {exp!r}")
    for run in iter_run_params(cfg):
        t = run["task_params"]
        if t["steps"] % t["record_every"]:
            raise ConfigError("task_params.record_every",
                              f"must divide task_params.steps ({t['steps']}), got {t['record_every']}")
        name, _ = parse_agent(t["agent"])
        if exp == "rate_distortion" and name == "dra":
            raise ConfigError("task_params.agent", "the rate_distortion experiment takes 'ts', "
                                                   "'sts:EPSILON' or 'blasts:BETA'")


# --------------------------------------------------------------------------- helpers


def _env_params(tp: dict) -> envs.EnvParams:
    return envs.EnvParams(prior_mean=tp["prior_mean"], prior_sd=tp["prior_sd"], noise_sd=tp["noise_sd"],
                          prior_a=tp["prior_a"], prior_b=tp["prior_b"])


def _hyper(run: dict) -> ba.Hyper:
    tp, d = run["task_params"], run["dra"]
    name, value = parse_agent(tp["agent"])
    kw = dict(ba_tol=tp["ba_tol"], beta=d["beta"], lam=d["lam"], sigma_base=d["sigma_base"],
              sigma0=d["sigma0"], alpha_q=d["alpha_q"], alpha_sigma=d["alpha_sigma"],
              sigma_min=d["sigma_min"], sigma_max=d["sigma_max"], learn_q=d["learn_q"],
              learn_sigma=d["learn_sigma"], equal=d["allocation"] == "equal_sgd", psi_q=d["psi"] == "Q")
    if name == "sts":
        kw["epsilon"] = value
    elif name == "blasts":
        kw["ba_beta"] = value
    elif name == "dra" and value is not None:
        kw["lam"] = value
    return ba.make_hyper(**kw)


def _stack(items):
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *items)


def _group(runs: list[dict], key_fn) -> dict:
    groups: dict = {}
    for i, run in enumerate(runs):
        groups.setdefault(key_fn(run), []).append(i)
    return groups


def _timed_call(fn, *args):
    """Compile ``jit(fn)`` apart from running it; returns (outputs, compile_s, run_s)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, t1 - t0, time.perf_counter() - t1


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- experiments


def _run_regret(cfg, runs, progress):
    groups = _group(runs, lambda r: (parse_agent(r["task_params"]["agent"])[0], r["task_params"]["kind"],
                                     r["task_params"]["arms"], r["task_params"]["steps"],
                                     r["task_params"]["record_every"], r["task_params"]["z_samples"],
                                     r["task_params"]["ba_max_iter"], r["task_params"]["ba_loop"],
                                     r["task_params"]["track_rate"], r["dra"]["n_traj"], r["dra"]["grad"],
                                     r["task_params"]["dra_q_rule"]))
    names = ("agent", "kind", "arms", "steps", "record_every", "z_samples", "ba_max_iter",
             "ba_loop", "track_rate", "n_traj", "grad", "q_rule")
    statics = {ba.Static(**dict(zip(names, key))): idx for key, idx in groups.items()}

    def inputs(i):
        return runs[i]["seed"], _hyper(runs[i]), _env_params(runs[i]["task_params"])

    outs, compile_s, run_s, group_timing = bandit_runner.run_groups(cfg, runs, statics, inputs,
                                                                    progress)
    env_steps = sum(r["task_params"]["steps"] for r in runs)

    finals, extra = [], []
    for run, o in zip(runs, outs):
        finals.append({"objective": -float(o.total_regret), "expected_reward": float(o.mean_reward),
                       "cost": _f(o.mean_rate)})
        name, value = parse_agent(run["task_params"]["agent"])
        extra.append({"agent": name, "agent_param": value, "kl": _f(o.mean_kl),
                      "ba_max_iters": int(o.max_iters), "ba_mean_iters": float(o.mean_iters),
                      "ba_capped_steps": int(o.n_capped)})
    stack = lambda f: np.stack([f(o) for o in outs])  # noqa: E731
    curves = {"cum_regret": stack(lambda o: o.cum_regret), "rate": stack(lambda o: o.rate),
              "kl": stack(lambda o: o.kl)}
    k_max = max(len(o.q) for o in outs)
    if all(len(o.q) == k_max for o in outs):
        curves.update(q=stack(lambda o: o.q), sigma=stack(lambda o: o.sigma),
                      counts=stack(lambda o: o.counts), means=stack(lambda o: o.means))
    every = runs[0]["task_params"]["record_every"]
    p = curves["cum_regret"].shape[1] if all(o.cum_regret.shape == outs[0].cum_regret.shape for o in outs) else 0
    arrays = {"t": every * np.arange(1, p + 1)}
    timing = {"compile_s": compile_s, "run_s": run_s, "env_steps": env_steps, "devices": 1,
              "agent_steps_per_s": env_steps / run_s if run_s else None, "groups": group_timing}
    summary = {"definitions": {
        "objective": "-cumulative pseudo-regret sum_t (max theta - theta[a_t]) at the last pull",
        "expected_reward": "time-average of theta[a_t]",
        "cost": "time-average information rate (nats) of the agent's learning target: TS H(A*), "
                "satisficing TS H(A_eps), BLASTS the Blahut-Arimoto channel rate, DRA "
                "H(argmax(q + sigma*zeta)) under its memories (plug-in on z_samples samples)",
        "kl": "DRA only: time-average of KL(N(q,sigma^2)||N(q,sigma_base^2)) summed over arms (nats)",
    }}
    return GridResults(finals=finals, curves=curves, arrays=arrays, summary=summary, run_extra=extra,
                   timing=timing)


def _prior_samples(kind: str, key, z: int, arms: int, ep: envs.EnvParams):
    belief = envs.prior_belief(kind, arms, ep)
    return envs.sample_belief(kind, key, belief, z)


def _run_rate_distortion(cfg, runs, progress):
    n = len(runs)
    groups = _group(runs, lambda r: (parse_agent(r["task_params"]["agent"])[0], r["task_params"]["kind"],
                                     r["task_params"]["arms"], r["task_params"]["z_samples"],
                                     r["task_params"]["ba_max_iter"], r["task_params"]["ba_loop"]))
    res = [None] * n
    compile_s = run_s = 0.0
    done = 0
    for (agent, kind, arms, z, cap, loop), idx in groups.items():
        def one(key, hp, ep):
            theta = _prior_samples(kind, key, z, arms, ep)
            if agent == "blasts":
                r = ba.blahut_arimoto(ba.regret_distortion(theta), hp.ba_beta, hp.ba_tol, cap, loop)
                reward = jnp.sum(jnp.exp(r.log_delta) * theta) / z
                return r.rate, r.distortion, reward, r.iters, r.capped
            eps = hp.epsilon if agent == "sts" else jnp.float32(0.0)
            rate, dist, reward = ba.sts_rate_distortion(theta, eps)
            return rate, dist, reward, jnp.int32(0), jnp.array(False)

        keys = jnp.stack([jax.random.key(runs[i]["seed"]) for i in idx])
        hps = _stack([_hyper(runs[i]) for i in idx])
        eps_ = _stack([_env_params(runs[i]["task_params"]) for i in idx])
        with jax.threefry_partitionable(False):
            out, c_s, r_s = _timed_call(jax.vmap(one), keys, hps, eps_)
        compile_s += c_s
        run_s += r_s
        out = [np.asarray(o) for o in out]
        for j, i in enumerate(idx):
            res[i] = [o[j] for o in out]
        done += len(idx)
        progress.update(done, extra=f"{agent}/{kind}: compile {c_s:.1f}s run {r_s:.1f}s", force=True)
    finals, extra = [], []
    for run, (rate, dist, reward, iters, capped) in zip(runs, res):
        finals.append({"objective": -float(dist), "expected_reward": float(reward), "cost": float(rate)})
        name, value = parse_agent(run["task_params"]["agent"])
        extra.append({"agent": name, "agent_param": value, "ba_iters": int(iters),
                      "ba_capped": bool(capped)})
    curves = {"rate": np.array([r[0] for r in res]), "distortion": np.array([r[1] for r in res]),
              "reward": np.array([r[2] for r in res]), "ba_iters": np.array([r[3] for r in res])}
    summary = {"definitions": {
        "objective": "-expected distortion E[(max theta - theta[target])^2] under the prior samples",
        "expected_reward": "E[theta[target]] under the prior samples",
        "cost": "rate I(E; target) in nats on the z_samples prior samples (plug-in)",
    }}
    timing = {"compile_s": compile_s, "run_s": run_s, "env_steps": 0, "devices": 1}
    return GridResults(finals=finals, curves=curves, summary=summary, run_extra=extra, timing=timing)


def belief_setups(tp: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The beliefs of Figs. 2-3: the base belief, one per action gap, one per SD.

    Returns means ``[S, K]``, SDs ``[S]`` and labels. A gap ``g`` moves the best mean to the
    second-best mean plus ``g``.
    """
    base = np.asarray(tp["belief_means"], np.float32)
    order = np.argsort(base)
    means, sds, labels = [base], [tp["belief_sd"]], ["base"]
    for g in tp["gaps"]:
        m = base.copy()
        m[order[-1]] = base[order[-2]] + g
        means.append(m)
        sds.append(tp["belief_sd"])
        labels.append(f"gap={g:g}")
    for s in tp["sds"]:
        means.append(base.copy())
        sds.append(s)
        labels.append(f"sd={s:g}")
    return np.stack(means), np.asarray(sds, np.float32), labels


def _run_action_probs(cfg, runs, progress):
    tp0 = runs[0]["task_params"]
    means, sds, labels = belief_setups(tp0)
    z, cap, loop = tp0["z_samples"], tp0["ba_max_iter"], tp0["ba_loop"]
    k = means.shape[1]

    def one(key, lam, tol):
        noise = jax.random.normal(key, (z, k))  # common to every belief setup

        def setup(m, s):
            theta = m[None, :] + s * noise
            r = ba.blahut_arimoto(ba.regret_distortion(theta), 1.0 / lam, tol, cap, loop)
            ts = ba.action_histogram(ba.ts_action(theta), k)
            boltz = ba.boltzmann_probs(m, lam)
            return jnp.exp(r.log_q), ts, boltz, r.rate, r.distortion, r.iters, r.capped

        return jax.vmap(setup)(jnp.asarray(means), jnp.asarray(sds))

    keys = jnp.stack([jax.random.key(r["seed"]) for r in runs])
    lams = jnp.asarray([r["task_params"]["info_cost"] for r in runs], jnp.float32)
    tols = jnp.asarray([r["task_params"]["ba_tol"] for r in runs], jnp.float32)
    with jax.threefry_partitionable(False):
        out, c_s, r_s = _timed_call(jax.vmap(one), keys, lams, tols)
    blasts, ts, boltz, rate, dist, iters, capped = [np.asarray(o) for o in out]
    progress.update(len(runs), extra=f"compile {c_s:.1f}s run {r_s:.1f}s", force=True)
    finals, extra = [], []
    for i, run in enumerate(runs):
        lam = run["task_params"]["info_cost"]
        finals.append({"objective": -float(dist[i, 0] + lam * rate[i, 0]),
                       "expected_reward": float(blasts[i, 0] @ means[0]), "cost": float(rate[i, 0])})
        extra.append({"ba_iters_max": int(iters[i].max()), "ba_capped_setups": int(capped[i].sum())})
    curves = {"blasts_probs": blasts, "ts_probs": ts, "boltzmann_probs": boltz, "rate": rate,
              "distortion": dist, "ba_iters": iters, "ba_capped": capped}
    arrays = {"setup_means": means, "setup_sds": sds}
    summary = {"setups": labels, "definitions": {
        "objective": "-(distortion + info_cost * rate) of BLASTS on the first belief (BA's Lagrangian)",
        "expected_reward": "sum_a pi(a) mu(a) of BLASTS's marginal on the first belief",
        "cost": "rate I(E; A~) of BLASTS on the first belief (nats)",
    }}
    timing = {"compile_s": c_s, "run_s": r_s, "env_steps": 0, "devices": 1}
    return GridResults(finals=finals, curves=curves, arrays=arrays, summary=summary, run_extra=extra,
                   timing=timing)


def run(cfg: dict, runs: list[dict], progress) -> GridResults:
    """The sweep's runner: dispatch on ``task_params.experiment``."""
    exp = cfg["task_params"]["experiment"]
    if exp == "regret":
        return _run_regret(cfg, runs, progress)
    if exp == "rate_distortion":
        return _run_rate_distortion(cfg, runs, progress)
    return _run_action_probs(cfg, runs, progress)


# --------------------------------------------------------------------------- figure glue


def plot(cfg: dict, results: GridResults, fig_dir: Path) -> list[Path]:
    """The config's ``figures`` (:mod:`dra_jax.figures.bandits`)."""
    return figures.plot(cfg, results, fig_dir, parse_agent, ba.AGENTS)


@register_task("bandits")
def bandits_task() -> TaskSpec:
    return TaskSpec(name="bandits", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
                    figures=tuple(FIGURES), run=run, plot=plot, psi_choices=("A", "Q"), check=_check,
                    record_floats=_record_floats)
