"""Task "planning": DRA on the Huys et al. task under a search budget (Sec. 4, Fig. 3, Fig. B.4).

Config (``configs/planning.toml``, ``configs/planning_moves.toml``):

* ``[task_params]``: ``moves`` (M, static), ``pin_last_move`` (static), ``budget`` (the search
  budget b in transitions, traced and sweepable, ``M <= b <= M * 2^M``), ``budget_index``
  (traced, sweepable: when >= 0 the budget is ``[budgets].m<M>[budget_index]``, so a sweep over
  M can use each M's own budgets), ``a_dec``, ``t_nondec`` (the speed-accuracy objective F-tilde,
  Eq. 8), ``objective`` (which objective the sigma ascent maximizes: F or F-tilde);
* ``[dra]``: Table B.1 defaults; ``psi`` is ``max`` (the only choice here);
* ``[cma]``: the CMA-ES baseline; ``[final]``: the rollouts of the final evaluation;
  ``[budgets]``: budget lists per M for ``budget_index``.

Training (one run = one lane; all runs of a static group in ONE ``jit(vmap(...))`` call per
block of ``eval.every`` episodes, a ``lax.fori_loop`` over those episodes inside):

* per episode (Algorithm 1 adapted to planning, :func:`episode`): ``n_traj + 1`` planning
  trials from uniform start states in one vmapped call; the ``n_traj`` gradient trials give
  ``mean_i Psi_i * sum_t grad log pi`` with ``Psi = max`` (:mod:`dra_jax.planner`), and
  ``sigma += alpha_sigma * (w * grad - lam * dKL/dsigma)`` through optax, clipped to
  ``[sigma_min, sigma_max]`` (``w = 1`` for F; ``1 / (a_dec*b + t_nondec)`` for F-tilde);
  equal precision: one shared sigma whose gradient is the sum of the per-memory gradients. In
  the full mode (``learn_q``) the means are then updated by expected SARSA along the path the
  acting trial (trial 0) executes.
* every ``eval.every`` episodes: ``E[max path reward]`` over ``eval.n_rollouts`` trials, the cost
  ``lam * KL``, F and F-tilde (the learning curve).

The paper's Fig. 3 protocol is ``q_init = "optimal"``, ``learn_q = false``: means fixed at q*
(by backward induction, :func:`dra_jax.envs.planning.q_star`), sigma optimized.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax import config as config_mod
from dra_jax import memory, planner
from dra_jax.config import ConfigError, Field, TaskSpec, register_task
from dra_jax.envs import planning as env
from dra_jax.results import Results

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
                         "dimensions is 14)", lo=2, sweepable=False),
        "generations": Field(int, 100, "CMA-ES generations", lo=1, sweepable=False),
        "n_eval_trials": Field(int, 256, "planning trials per F estimate of a candidate", lo=1,
                               sweepable=False),
        "restarts": Field(int, 5, "independent CMA-ES runs per budget (seeds seed, seed+1, ...)",
                          lo=1, sweepable=False),
        "step0": Field(float, 20.0, "initial CMA-ES step size (in sigma units)", lo=0,
                       lo_open=True, sweepable=False),
    },
    "final": {
        "n_rollouts": Field(int, 8192, "planning trials of the final evaluation (finals, CMA-ES "
                            "solutions)", lo=1, static=True, sweepable=False),
    },
    "budgets": {f"m{m}": _budget_list(m) for m in env.MOVES_CHOICES},
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
        if d["episodes"] % cfg["eval"]["every"]:
            raise ConfigError("eval.every", f"must divide dra.episodes ({d['episodes']}), got "
                                            f"{cfg['eval']['every']}")


# ------------------------------------------------------------------ training (pure, traced)


class PlanStatic(NamedTuple):
    """What shapes the compiled program of a group of runs (hashable)."""

    moves: int = 3
    n_traj: int = 10
    grad: str = "analytic"
    optimizer: str = "sgd"
    q_init: str = "optimal"
    pin_last_move: bool = False
    episodes: int = 2000
    every: int = 100
    n_rollouts: int = 512
    final_rollouts: int = 8192

    @property
    def horizon(self) -> int:
        return env.full_budget(self.moves)

    @property
    def n_evals(self) -> int:
        return self.episodes // self.every + 1  # evaluation at episode 0 too

    @property
    def learn_mask(self) -> np.ndarray:
        """Memories that are learned and cost KL: all, or all but k = 1 when pinned."""
        mask = np.ones((env.N_STATES, self.moves, env.N_ACTIONS), bool)
        if self.pin_last_move:
            mask[:, 0, :] = False
        return mask


PARAM_KEYS = ("alpha_q", "alpha_sigma", "beta", "gamma", "lam", "sigma_base", "sigma0",
              "sigma_min", "sigma_max", "a_dec", "t_nondec")


def make_params(cfg: dict, run: dict) -> dict:
    """The traced per-run parameters of one run (numpy scalars)."""
    d, tp = run["dra"], run["task_params"]
    p = {k: np.float32(d[k] if k in d else tp[k]) for k in PARAM_KEYS}
    p["budget"] = np.int32(resolve_budget(cfg, run))
    p["learn_q"] = np.bool_(d["learn_q"])
    p["learn_sigma"] = np.bool_(d["learn_sigma"])
    p["equal"] = np.bool_(d["allocation"] == "equal")
    p["rate"] = np.bool_(tp["objective"] == "F_tilde")
    p["seed"] = np.uint32(run["seed"])
    return p


class TrainState(NamedTuple):
    q: jax.Array  # [6, M, 2]
    sigma: jax.Array  # [6, M, 2]
    opt_state: optax.OptState
    episode: jax.Array  # int: episodes done


def _optimizer(name: str, lr) -> optax.GradientTransformation:
    return {"sgd": optax.sgd, "adam": optax.adam, "rmsprop": optax.rmsprop}[name](lr)


def _keys(p: dict):
    base = jax.random.key(p["seed"])
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1), jax.random.fold_in(base, 2)


def init(st: PlanStatic, p: dict) -> TrainState:
    """Memories before the first episode: q from ``q_init``, sigma = sigma0 (pinned ones 1)."""
    shape = (env.N_STATES, st.moves, env.N_ACTIONS)
    if st.q_init == "optimal":
        q = jnp.asarray(env.q_star(st.moves))
    elif st.q_init == "zero":
        q = jnp.zeros(shape, jnp.float32)
    else:  # uniform in [-1, 1], as the other tasks
        q = jax.random.uniform(jax.random.fold_in(_keys(p)[0], 2**31 - 1), shape, jnp.float32,
                               -1.0, 1.0)
    sigma = jnp.where(st.learn_mask, p["sigma0"], 1.0).astype(jnp.float32)
    opt_state = _optimizer(st.optimizer, p["alpha_sigma"]).init(sigma)
    return TrainState(q=q, sigma=sigma, opt_state=opt_state, episode=jnp.int32(0))


def objective_terms(st: PlanStatic, p: dict, reward: jax.Array, sigma: jax.Array) -> dict:
    """Cost ``lam * KL`` over the learned memories, F (Eq. 1) and F-tilde (Eq. 8)."""
    cost = p["lam"] * memory.kl_cost(sigma, p["sigma_base"], jnp.asarray(st.learn_mask))
    time_per_trial = p["a_dec"] * p["budget"] + p["t_nondec"]
    return {"expected_reward": reward, "cost": cost, "objective": reward - cost,
            "objective_tilde": reward / time_per_trial - cost}


def _sarsa_path(st: PlanStatic, p: dict, q, sigma, s0, path, zeta_next):
    """Expected-SARSA updates along an executed path (Algorithm 1, step 1):
    ``q[s,k,a] += alpha_q * (r + gamma * 1{k>1} * <p', q[s', k-1]> - q[s,k,a])``, with
    ``p' = softmax(beta * (q[s',k-1] + zeta' * sigma[s',k-1]))`` from a fresh ``zeta'``."""
    nxt, rew = jnp.asarray(env.NEXT_STATE), jnp.asarray(env.REWARD)

    def body(carry, xs):
        q, s = carry
        t, a, z = xs
        k = st.moves - t
        s2, r = nxt[s, a], rew[s, a]
        k2 = jnp.maximum(k - 2, 0)
        pn = jax.nn.softmax(p["beta"] * (q[s2, k2] + z * sigma[s2, k2]))
        target = r + p["gamma"] * (k > 1) * jnp.dot(pn, q[s2, k2])
        q = q.at[s, k - 1, a].add(p["alpha_q"] * (target - q[s, k - 1, a]))
        return (q, s2), None

    (q, _), _ = jax.lax.scan(body, (q, s0), (jnp.arange(st.moves), path, zeta_next))
    return q


def episode(st: PlanStatic, p: dict, ts: TrainState, key_train) -> TrainState:
    """One episode of Algorithm 1 on planning, from the memories at the episode's start:

    1. ``n_traj + 1`` planning trials in one vmapped call (trial 0 is the acting trial, the
       others the gradient trials);
    2. sigma ascent: ``g = w * mean_i Psi_i sum_t grad log pi - lam * dKL/dsigma`` (Eqs. 3, 5, 6,
       ``Psi = max``), one optax step, clip to ``[sigma_min, sigma_max]``; equal precision uses
       the sum of the per-memory gradients for every memory;
    3. if ``learn_q``: expected SARSA along the acting trial's executed (best) path.

    The gradient trials use the same memories as the acting trial (those at the episode's
    start), so all ``n_traj + 1`` trials share one loop; with ``learn_q = false`` (Fig. 3) this
    is exactly Algorithm 1.
    """
    # all the episode's noise in one block: n_traj + 1 trials, then the SARSA zeta'
    n_trial = planner.noise_size(st.horizon)
    v = jax.random.uniform(jax.random.fold_in(key_train, ts.episode),
                           ((st.n_traj + 1) * n_trial + 2 * st.moves,), jnp.float32)
    noise = planner.noise_from_uniform(v[:-2 * st.moves].reshape(st.n_traj + 1, n_trial),
                                       st.horizon)
    mask = jnp.asarray(st.learn_mask)
    q, sigma = ts.q, ts.sigma
    res = planner.plan_batch(q, sigma, p["budget"], p["beta"], noise, grad=st.grad)
    # sigma ascent with Psi = max from the gradient trials 1..n_traj
    w = jnp.where(p["rate"], 1.0 / (p["a_dec"] * p["budget"] + p["t_nondec"]), 1.0)
    g = planner.sigma_ascent(jax.tree.map(lambda x: x[1:], res), sigma, p["lam"],
                             p["sigma_base"], mask, p["equal"], w)
    opt = _optimizer(st.optimizer, p["alpha_sigma"])
    updates, opt_state = opt.update(-g, ts.opt_state, sigma)  # optax minimizes
    sigma_new = jnp.clip(optax.apply_updates(sigma, updates), p["sigma_min"], p["sigma_max"])
    sigma_new = jnp.where(mask, sigma_new, sigma)  # pinned memories stay at 1
    sigma_out = jnp.where(p["learn_sigma"], sigma_new, sigma)
    opt_state = jax.tree.map(lambda n, o: jnp.where(p["learn_sigma"], n, o), opt_state,
                             ts.opt_state)
    # expected SARSA along the executed path of the acting trial
    zn = planner.uniform_to_normal(v[-2 * st.moves:]).reshape(st.moves, env.N_ACTIONS)
    q_new = _sarsa_path(st, p, q, sigma, noise.s0[0], res.best_path[0], zn)
    q = jnp.where(p["learn_q"], q_new, q)
    return TrainState(q=q, sigma=sigma_out, opt_state=opt_state, episode=ts.episode + 1)


def advance(st: PlanStatic, p: dict, ts: TrainState, n_episodes: int) -> TrainState:
    """``n_episodes`` episodes in one ``lax.fori_loop``. Keys come from the episode index
    (``fold_in``), so a run advanced in any chunking gives the same numbers."""
    key_train = _keys(p)[0]
    return jax.lax.fori_loop(0, n_episodes, lambda i, t: episode(st, p, t, key_train), ts)


FINAL_TAG = 2**30  # evaluation-key tag of the final evaluation (curve points use the episode)


def evaluate(st: PlanStatic, p: dict, q, sigma, tag, n) -> jax.Array:
    """``[E[max path reward], lam*KL, F, F-tilde]`` from ``n`` planning trials (uniform start
    states) with the key ``fold_in(eval_key(seed), tag)``: runs sharing a seed are evaluated on
    the same trials (common random numbers for differences such as DRA - equal)."""
    key = jax.random.fold_in(_keys(p)[1], tag)
    reward = planner.expected_reward(key, q, sigma, p["budget"], p["beta"], n,
                                     chunk=min(EVAL_CHUNK, st.n_rollouts, st.final_rollouts))
    t = objective_terms(st, p, reward, sigma)
    return jnp.stack([t["expected_reward"], t["cost"], t["objective"], t["objective_tilde"]])


EVAL_CHUNK = 256


def summarize(st: PlanStatic, q, sigma) -> dict:
    """d' (discriminability) and mean sigma per extended state ``(s, k)``."""
    return {"q": q, "sigma": sigma,
            "dprime": memory.dprime(q[..., 0], q[..., 1], sigma[..., 0], sigma[..., 1]),
            "mean_sigma": jnp.mean(sigma, axis=-1)}


def train(st: PlanStatic, p: dict):
    """A whole run in one call (init -> eval -> (advance ``every`` -> eval)* -> final eval);
    ``jax.vmap`` it over runs. Returns (final ``[4]``, curve ``[n_evals, 4]``, summary)."""
    ts = init(st, p)
    ev0 = evaluate(st, p, ts.q, ts.sigma, 0, st.n_rollouts)

    def block(ts, _):
        ts = advance(st, p, ts, st.every)
        return ts, evaluate(st, p, ts.q, ts.sigma, ts.episode, st.n_rollouts)

    ts, curve = jax.lax.scan(block, ts, None, length=st.episodes // st.every)
    final = evaluate(st, p, ts.q, ts.sigma, FINAL_TAG, st.final_rollouts)
    return final, jnp.concatenate([ev0[None], curve]), summarize(st, ts.q, ts.sigma)


# ------------------------------------------------------------------ CMA-ES baseline


def reward_and_cost(st: PlanStatic, p: dict, sigma, budget, key, n) -> jax.Array:
    """``[E[max path reward], lam*KL]`` of a sigma table at ``budget`` with q = q* (Monte Carlo
    over ``n`` trials drawn from ``key``)."""
    q = jnp.asarray(env.q_star(st.moves))
    reward = planner.expected_reward(key, q, sigma, budget, p["beta"], n,
                                     chunk=min(EVAL_CHUNK, n))
    return jnp.stack([reward, p["lam"] * memory.kl_cost(sigma, p["sigma_base"],
                                                        jnp.asarray(st.learn_mask))])


def objective_estimate(st: PlanStatic, p: dict, sigma, budget, key, n: int) -> jax.Array:
    """Monte-Carlo F (Eq. 1) of a sigma table at budget ``budget`` with q = q*."""
    rc = reward_and_cost(st, p, sigma, budget, key, n)
    return rc[0] - rc[1]


def population_objective(st: PlanStatic, p: dict, sigmas, budgets, key, n: int) -> jax.Array:
    """F of a whole population ``sigmas [P, 6, M, 2]`` at budgets ``[P]`` in one vmapped call,
    every candidate on the same trials (common random numbers)."""
    return jax.vmap(lambda s, b: objective_estimate(st, p, s, b, key, n))(sigmas, budgets)


def _vec_to_table(st: PlanStatic, x: np.ndarray) -> np.ndarray:
    """CMA-ES vectors ``[..., n_learned]`` -> sigma tables (pinned memories 1)."""
    mask = st.learn_mask
    out = np.ones(x.shape[:-1] + mask.shape, np.float32)
    out[..., mask] = x
    return out


def run_cma(cfg: dict, st: PlanStatic, budgets: list[int], progress=None) -> dict:
    """CMA-ES (``cma``) maximizing F over sigma with q = q*, for every budget and restart.

    All ``len(budgets) * restarts`` strategies advance in lockstep: each generation asks every
    strategy for its population, evaluates all candidates in ONE jitted vmapped call, and tells
    each strategy its values (ask -> evaluate -> tell).
    """
    import cma as cma_mod

    c, d = cfg["cma"], cfg["dra"]
    p = {k: jnp.float32(d[k]) for k in ("beta", "lam", "sigma_base")}
    mask = st.learn_mask
    dim = int(mask.sum())
    pop, gens = c["popsize"], c["generations"]
    strategies, inst_budget = [], []
    for b in budgets:
        for r in range(c["restarts"]):
            es = cma_mod.CMAEvolutionStrategy(
                [d["sigma0"]] * dim, c["step0"],
                {"bounds": [d["sigma_min"], d["sigma_max"]], "popsize": pop,
                 "seed": int(cfg["seed"]) * 1000 + r + 1, "verbose": -9, "maxiter": gens,
                 "tolfun": 0, "tolx": 0, "tolfunhist": 0, "tolflatfitness": gens + 1,
                 "tolstagnation": gens + 1})
            strategies.append(es)
            inst_budget.append(b)
    budgets_pop = jnp.asarray(np.repeat(np.asarray(inst_budget, np.int32), pop))
    n_eval = c["n_eval_trials"]
    eval_pop = jax.jit(lambda s, b, k: population_objective(st, p, s, b, k, n_eval))
    key = jax.random.fold_in(jax.random.key(cfg["seed"]), 7)
    t0 = time.perf_counter()
    dummy = jnp.ones((len(strategies) * pop,) + mask.shape, jnp.float32)
    eval_pop = eval_pop.lower(dummy, budgets_pop, key).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = np.zeros((len(strategies), gens), np.float32)
    for g in range(gens):
        xs = [es.ask() if not es.stop() else [es.result.xfavorite] * pop for es in strategies]
        flat = np.asarray(xs, np.float64).reshape(-1, dim)
        f = np.asarray(eval_pop(jnp.asarray(_vec_to_table(st, flat)), budgets_pop,
                                jax.random.fold_in(key, g))).reshape(len(strategies), pop)
        for i, es in enumerate(strategies):
            if not es.stop():
                es.tell(xs[i], (-f[i]).tolist())  # cma minimizes
        history[:, g] = f.max(axis=1)
        if progress is not None and (g + 1) % max(1, gens // 10) == 0:
            progress.message(f"CMA-ES generation {g + 1}/{gens}: best F by budget "
                             + ", ".join(f"{b}:{history[i * c['restarts']:(i + 1) * c['restarts'], g].mean():.1f}"
                                         for i, b in enumerate(budgets)))
    # final: each strategy's mean (xfavorite), evaluated on final.n_rollouts fresh trials
    best = _vec_to_table(st, np.asarray([es.result.xfavorite for es in strategies]))
    fin_key = jax.random.fold_in(key, 10**6)
    n_fin = st.final_rollouts
    final_eval = jax.jit(jax.vmap(lambda s, b: reward_and_cost(st, p, s, b, fin_key, n_fin)))
    rc = np.asarray(final_eval(jnp.asarray(best), jnp.asarray(inst_budget, jnp.int32)))
    fin = np.stack([rc[:, 0], rc[:, 1], rc[:, 0] - rc[:, 1]], axis=1)
    run_s = time.perf_counter() - t0
    shape = (len(budgets), c["restarts"])
    return {"budget": np.asarray(budgets, np.int32),
            "expected_reward": fin[:, 0].reshape(shape), "cost": fin[:, 1].reshape(shape),
            "objective": fin[:, 2].reshape(shape), "sigma": best.reshape(shape + mask.shape),
            "history": history.reshape(shape + (gens,)), "compile_s": compile_s, "run_s": run_s,
            "env_steps": int(gens * len(strategies) * pop * n_eval * np.mean(inst_budget))}


# ------------------------------------------------------------------ the runner


def _static_of(cfg: dict, run: dict) -> PlanStatic:
    d, tp = run["dra"], run["task_params"]
    return PlanStatic(moves=tp["moves"], n_traj=d["n_traj"], grad=d["grad"],
                      optimizer=d["optimizer"], q_init=d["q_init"],
                      pin_last_move=tp["pin_last_move"], episodes=d["episodes"],
                      every=cfg["eval"]["every"], n_rollouts=cfg["eval"]["n_rollouts"],
                      final_rollouts=cfg["final"]["n_rollouts"])


@functools.partial(jax.jit, static_argnums=0)
def _init_batch(st: PlanStatic, p: dict) -> TrainState:
    return jax.vmap(lambda pp: init(st, pp))(p)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _advance_batch(st: PlanStatic, p: dict, ts: TrainState) -> TrainState:
    return jax.vmap(lambda pp, t: advance(st, pp, t, st.every))(p, ts)


@functools.partial(jax.jit, static_argnums=0)
def _eval_batch(st: PlanStatic, p: dict, q, sigma, tag, n):
    return jax.vmap(lambda pp, qq, ss: evaluate(st, pp, qq, ss, tag, n))(p, q, sigma)


def _eval_static(st: PlanStatic) -> PlanStatic:
    """The part of a group's static values the evaluation program depends on."""
    return PlanStatic(moves=st.moves, pin_last_move=st.pin_last_move, episodes=st.episodes,
                      every=st.every, n_rollouts=st.n_rollouts, final_rollouts=st.final_rollouts)


def train_groups(groups: list[tuple[PlanStatic, list[dict]]], progress=None, done0: float = 0.0):
    """Train static groups of runs that share an evaluation program (same M, episodes, ...),
    in lockstep over evaluation blocks: per block, ONE compiled ``jit(vmap(...))`` call per
    group advances all its runs ``every`` episodes (a ``lax.fori_loop`` over episodes inside),
    then ONE vmapped call evaluates every run of every group. The final evaluation is the same
    compiled program with ``final.n_rollouts`` trials. Same numbers as :func:`train`.

    Returns per group ``(summary, curve [R, n_evals, 4], final [R, 4])``, compile and run time.
    """
    st_eval = _eval_static(groups[0][0])
    assert all(_eval_static(st) == st_eval for st, _ in groups)
    stacked = [{k: jnp.asarray(np.stack([pp[k] for pp in params])) for k in params[0]}
               for _, params in groups]
    p_all = {k: jnp.concatenate([sp[k] for sp in stacked]) for k in stacked[0]}
    n_runs = int(p_all["budget"].shape[0])
    t0 = time.perf_counter()
    ts = [_init_batch(st, sp) for (st, _), sp in zip(groups, stacked)]
    adv = [_advance_batch.lower(st, sp, t).compile()
           for (st, _), sp, t in zip(groups, stacked, ts)]

    def cat(ts):
        return (jnp.concatenate([t.q for t in ts]), jnp.concatenate([t.sigma for t in ts]))

    q0, s0 = cat(ts)
    n0 = jnp.int32(st_eval.n_rollouts)
    ev_c = _eval_batch.lower(st_eval, p_all, q0, s0, jnp.int32(0), n0).compile()
    jax.block_until_ready(ts)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    curves = [ev_c(p_all, q0, s0, jnp.int32(0), n0)]
    n_blocks = st_eval.episodes // st_eval.every
    for i in range(n_blocks):
        ts = [f(sp, t) for f, sp, t in zip(adv, stacked, ts)]
        curves.append(ev_c(p_all, *cat(ts), jnp.int32((i + 1) * st_eval.every), n0))
        if progress is not None:
            progress.update(done0 + (i + 1) * st_eval.every * n_runs,
                            extra=f"M={st_eval.moves}: mean F {float(curves[-1][:, 2].mean()):.1f}")
    final = np.asarray(ev_c(p_all, *cat(ts), jnp.int32(FINAL_TAG),
                            jnp.int32(st_eval.final_rollouts)))
    curve = np.stack([np.asarray(c) for c in curves], axis=1)  # [R_all, n_evals, 4]
    out, start = [], 0
    for (st, params), t in zip(groups, ts):
        n = len(params)
        summ = jax.tree.map(np.asarray, summarize(st, t.q, t.sigma))
        out.append((summ, curve[start:start + n], final[start:start + n]))
        start += n
    run_s = time.perf_counter() - t0
    return out, compile_s, run_s


def run(cfg: dict, runs: list[dict], progress=None) -> Results:
    """The sweep's runner: group runs by their static values, train each group in one compiled
    vmapped call, evaluate, then (if ``[cma] enabled``) the CMA-ES baseline."""
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
    done = 0.0
    eval_sets: dict[PlanStatic, list[PlanStatic]] = {}
    for st in groups:
        eval_sets.setdefault(_eval_static(st), []).append(st)
    for sts in eval_sets.values():
        batch = [(st, [make_params(cfg, runs[i]) for i in groups[st]]) for st in sts]
        out, cs, rs = train_groups(batch, progress, done)
        compile_s += cs
        run_s += rs
        for (st, params), (summ, curve, final) in zip(batch, out):
            done += st.episodes * len(params)
            m = st.moves
            ii = np.asarray(groups[st])
            q[ii, :, :m] = summ["q"]
            sigma[ii, :, :m] = summ["sigma"]
            dprime[ii, :, :m] = summ["dprime"]
            mean_sigma[ii, :, :m] = summ["mean_sigma"]
            impact[ii, :, :m] = env.impact(m)
            curves[ii, :curve.shape[1]] = curve
            finals_arr[ii] = final
            budgets = np.asarray([pp["budget"] for pp in params], np.int64)
            env_steps += int(np.sum(budgets * st.episodes * (st.n_traj + 1)))
    finals = [{"objective": float(f[2]), "expected_reward": float(f[0]), "cost": float(f[1]),
               "objective_tilde": float(f[3])} for f in finals_arr]
    run_extra = []
    for r in runs:
        b, m = resolve_budget(cfg, r), r["task_params"]["moves"]
        run_extra.append({"budget": b, "moves": m,
                          "budget_pct": 100.0 * b / env.full_budget(m),
                          "n_traj": r["dra"]["n_traj"], "allocation": r["dra"]["allocation"]})
    every = cfg["eval"]["every"]
    res = Results(
        finals=finals,
        curves={"curve_reward": curves[..., 0], "curve_cost": curves[..., 1],
                "curve_objective": curves[..., 2], "curve_objective_tilde": curves[..., 3],
                "q": q, "sigma": sigma, "dprime": dprime, "mean_sigma": mean_sigma,
                "impact": impact},
        arrays={"eval_episode": np.arange(n_evals, dtype=np.int32) * every},
        summary={"definitions": {
            "objective": "F = E[max path reward] - lam * KL (Eq. 1), final evaluation",
            "objective_tilde": "F-tilde = E[max path reward] / (a_dec * b + t_nondec) - lam * KL "
                               "(Eq. 8)",
            "dprime": "|q1 - q2| / sqrt((sigma1^2 + sigma2^2) / 2) per extended state (s, k)",
            "impact": "|q*1 - q*2| per extended state (s, k)"}},
        run_extra=run_extra,
        timing={"compile_s": compile_s, "run_s": run_s, "env_steps": env_steps,
                "devices": jax.device_count()},
    )
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
                           if k not in ("compile_s", "run_s", "env_steps")})
        res.summary["cma"] = {
            "moves": st0.moves, "budgets": budgets,
            "objective_mean": cm["objective"].mean(axis=1).tolist(),
            "objective_sd": cm["objective"].std(axis=1).tolist(),
            "expected_reward_mean": cm["expected_reward"].mean(axis=1).tolist(),
            "cost_mean": cm["cost"].mean(axis=1).tolist()}
        res.timing.update({"cma_compile_s": cm["compile_s"], "cma_run_s": cm["run_s"],
                           "compile_s": compile_s + cm["compile_s"],
                           "run_s": run_s + cm["run_s"],
                           "env_steps": env_steps + cm["env_steps"]})
    return res


# ------------------------------------------------------------------ figures


def _table(cfg: dict, results: Results) -> dict:
    """Per-run columns (grid order) for the figures."""
    runs = list(config_mod.iter_run_params(cfg))
    col = {
        "budget": np.asarray([resolve_budget(cfg, r) for r in runs]),
        "moves": np.asarray([r["task_params"]["moves"] for r in runs]),
        "n_traj": np.asarray([r["dra"]["n_traj"] for r in runs]),
        "equal": np.asarray([r["dra"]["allocation"] == "equal" for r in runs]),
        "seed": np.asarray([r["seed"] for r in runs]),
    }
    for k in ("objective", "expected_reward", "cost", "objective_tilde"):
        col[k] = np.asarray([f[k] for f in results.finals], float)
    col["budget_pct"] = 100.0 * col["budget"] / np.asarray([env.full_budget(m) for m in col["moves"]])
    return col


def _ref_n_traj(col: dict, cfg: dict) -> int:
    """The n_traj of the DRA-vs-equal comparison: that of the equal runs if any, else the base."""
    eq = col["n_traj"][col["equal"]]
    return int(eq[0]) if eq.size else int(cfg["dra"]["n_traj"])


def _dprime_panel(ax, col, results, sel, key, ylabel, title=None):
    """Scatter of ``key`` per extended state against impact, one regression line per budget."""
    import matplotlib.pyplot as plt

    budgets = sorted(set(col["budget"][sel].tolist()))
    cmap = plt.get_cmap("viridis")
    fits = {}
    for j, b in enumerate(budgets):
        idx = np.flatnonzero(sel & (col["budget"] == b))
        m = int(col["moves"][idx[0]])
        y = np.nanmean(np.asarray(results.curves[key])[idx][:, :, :m], axis=0).ravel()
        x = np.asarray(results.curves["impact"])[idx[0]][:, :m].ravel()
        ok = np.isfinite(y)
        color = cmap(j / max(1, len(budgets) - 1))
        pct = 100.0 * b / env.full_budget(m)
        ax.scatter(x[ok], y[ok], s=12, color=color, alpha=0.6)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slope, icpt = np.polyfit(x[ok], y[ok], 1)
            xx = np.linspace(x.min(), x.max(), 10)
            ax.plot(xx, slope * xx + icpt, color=color, label=f"b={b} ({pct:.0f}%)")
            fits[b] = (float(slope), float(icpt))
    ax.set_xlabel("impact |q*1 - q*2| (difference in cumulative reward)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, title="search budget", title_fontsize=7)
    return fits


def plot(cfg: dict, results: Results, fig_dir: Path) -> list[Path]:
    """Fig. 3c-f and Fig. B.4 (those listed in ``figures``), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dra_jax.results import atomic_savefig

    fig_dir = Path(fig_dir)
    col = _table(cfg, results)
    ref = _ref_n_traj(col, cfg)
    m0 = int(cfg["task_params"]["moves"])
    flex = ~col["equal"]
    paths: list[Path] = []

    def save(fig, name):
        path = fig_dir / f"{name}.png"
        fig.tight_layout()
        atomic_savefig(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)

    def by_budget(sel, key):
        bs = np.asarray(sorted(set(col["budget"][sel].tolist())))
        vals = [col[key][sel & (col["budget"] == b)] for b in bs]
        return bs, np.asarray([v.mean() for v in vals]), np.asarray([v.std() for v in vals])

    figs = cfg["figures"]
    if "fig3c" in figs:
        fig, ax = plt.subplots(figsize=(9, 4))
        sel0 = flex & (col["moves"] == m0)
        ns = sorted(set(col["n_traj"][sel0].tolist()))
        bs = sorted(set(col["budget"][sel0].tolist()))
        cma_b = list(np.asarray(results.arrays.get("cma_budget", [])))
        n_bars = len(ns) + (1 if cma_b else 0)
        width = 0.8 / max(n_bars, 1)
        for j, n in enumerate(ns):
            b_, mu, sd = by_budget(sel0 & (col["n_traj"] == n), "objective")
            x = np.searchsorted(bs, b_) + (j - (n_bars - 1) / 2) * width
            ax.bar(x, mu, width, yerr=sd, capsize=2, label=f"gradient, n_traj={n}")
        if cma_b:
            f = np.asarray(results.arrays["cma_objective"])
            x = np.searchsorted(bs, cma_b) + (len(ns) - (n_bars - 1) / 2) * width
            ax.bar(x, f.mean(axis=1), width, yerr=f.std(axis=1), capsize=2, label="CMA-ES",
                   color="0.4")
        ax.set_xticks(range(len(bs)), [f"{b}\n({100 * b / env.full_budget(m0):.0f}%)" for b in bs])
        ax.set_xlabel("search budget b (transitions)")
        ax.set_ylabel("objective F* (Eq. 1)")
        ax.set_title(f"Fig. 3c: optimal F by the stochastic gradient and CMA-ES (M={m0}); "
                     f"SD over restarts", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, "fig3c")
    if "fig3d" in figs and col["equal"].any():
        fig, ax = plt.subplots(figsize=(5, 4))
        sel_f = flex & (col["n_traj"] == ref) & (col["moves"] == m0)
        sel_e = col["equal"] & (col["n_traj"] == ref) & (col["moves"] == m0)
        bs = sorted(set(col["budget"][sel_f].tolist()) & set(col["budget"][sel_e].tolist()))
        for key, label in (("objective", "objective F"), ("expected_reward", "expected reward")):
            mu, sd = [], []
            for b in bs:
                f = {s: v for s, v in zip(col["seed"][sel_f & (col["budget"] == b)],
                                          col[key][sel_f & (col["budget"] == b)])}
                e = {s: v for s, v in zip(col["seed"][sel_e & (col["budget"] == b)],
                                          col[key][sel_e & (col["budget"] == b)])}
                d = np.asarray([f[s] - e[s] for s in f if s in e])
                mu.append(d.mean())
                sd.append(d.std())
            pct = 100.0 * np.asarray(bs) / env.full_budget(m0)
            ax.errorbar(pct, mu, yerr=sd, marker="o", capsize=2, label=label)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("search budget (%)")
        ax.set_ylabel("performance difference (flexible - equal)")
        ax.set_title(f"Fig. 3d: DRA vs equal precision (n_traj={ref})", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "fig3d")
    if "fig3e" in figs:
        fig, axs = plt.subplots(1, 2, figsize=(10, 4))
        sel = flex & (col["n_traj"] == ref) & (col["moves"] == m0)
        _dprime_panel(axs[0], col, results, sel, "dprime", "d' (discriminability)")
        _dprime_panel(axs[1], col, results, sel, "mean_sigma", "mean sigma of the state's memories")
        fig.suptitle(f"Fig. 3e: memories per extended state (s, k), mean over seeds; M={m0}, "
                     f"n_traj={ref}", fontsize=9)
        save(fig, "fig3e")
    if "fig3f" in figs:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        sel = flex & (col["n_traj"] == ref) & (col["moves"] == m0)
        bs, mu, sd = by_budget(sel, "objective")
        pct = 100.0 * bs / env.full_budget(m0)
        ax.plot(pct, mu, "o-", color="tab:green", label="F* (Eq. 1)")
        ax.fill_between(pct, mu - sd, mu + sd, color="tab:green", alpha=0.2)
        ax.set_xlabel("search budget (%)")
        ax.set_ylabel("objective F (exp. reward)", color="tab:green")
        ax2 = ax.twinx()
        _, mt, st_ = by_budget(sel, "objective_tilde")
        ax2.plot(pct, mt, "o-", color="tab:orange", label="F-tilde* (Eq. 8)")
        ax2.fill_between(pct, mt - st_, mt + st_, color="tab:orange", alpha=0.2)
        i = int(np.argmax(mt))
        ax2.plot(pct[i], mt[i], "*", color="gold", markersize=18, markeredgecolor="k")
        ax2.set_ylabel("modified objective F-tilde (exp. reward rate)", color="tab:orange")
        tp = cfg["task_params"]
        ax.set_title(f"Fig. 3f: a_dec={tp['a_dec']}, t_nondec={tp['t_nondec']}; "
                     f"F-tilde peaks at b={bs[i]}", fontsize=9)
        save(fig, "fig3f")
    if "figB4" in figs:
        ms = sorted(set(col["moves"].tolist()))
        fig, axs = plt.subplots(1, len(ms), figsize=(5 * len(ms), 4), squeeze=False)
        for ax, m in zip(axs[0], ms):
            sel = flex & (col["n_traj"] == ref) & (col["moves"] == m)
            _dprime_panel(ax, col, results, sel, "dprime", "d' (discriminability)", f"M = {m}")
        fig.suptitle("Fig. B.4: d' against impact per extended state, mean over seeds",
                     fontsize=9)
        save(fig, "figB4")
    return paths


@register_task("planning")
def _spec() -> TaskSpec:
    return TaskSpec(name="planning", task_params=TASK_PARAMS, dra_defaults=DRA_DEFAULTS,
                    figures=FIGURES, run=run, plot=plot, extra_sections=EXTRA_SECTIONS,
                    eval_defaults=EVAL_DEFAULTS, psi_choices=("max",), check=check)
