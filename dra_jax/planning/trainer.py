"""The planning trainer: Algorithm 1 on the Huys et al. planning task under a search budget
(Sec. 4, Fig. 3), its evaluation, and the CMA-ES baseline.

Training (one run = one lane; all runs of a static group in ONE ``jit(vmap(...))`` call per
block of ``every`` episodes, a ``lax.fori_loop`` over those episodes inside):

* per episode (Algorithm 1 adapted to planning, :func:`episode`): ``n_traj + 1`` planning
  trials from uniform start states in one vmapped call; the ``n_traj`` gradient trials give the
  ascent direction of :func:`dra_jax.planning.planner.sigma_ascent` (``Psi = max``; the one gradient
  formula, tested against exact derivatives), one optax step on sigma, clipped to
  ``[sigma_min, sigma_max]`` (F, or F-tilde of Eq. 8 with ``w = 1 / (a_dec*b + t_nondec)``). In
  the full mode (``learn_q``) the means are then updated by expected SARSA along the path the
  acting trial (trial 0) executes.
* every ``every`` episodes: ``E[max path reward]`` over ``n_rollouts`` trials, the cost
  ``lam * KL``, F and F-tilde (the learning curve).
* CMA-ES baseline (:func:`run_cma`): fix q = q*, maximize F over sigma with ``cma``.

Batches of runs, checkpoints and resume: :mod:`dra_jax.planning.runner`.

The per-run traced parameters are the numpy scalars of :data:`PARAM_KEYS` plus ``budget``,
``learn_q``, ``learn_sigma``, ``equal``, ``rate`` and ``seed``
(:func:`dra_jax.experiments.planning.make_params` builds them from a config).
"""
from __future__ import annotations

import json
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax.core import memory
from dra_jax.core.optim import make_optimizer
from dra_jax.envs import planning as env
from dra_jax.planning import planner


class PlanStatic(NamedTuple):
    """What shapes the compiled program of a group of runs (hashable)."""

    moves: int = 3
    n_traj: int = 10
    grad: str = "analytic"
    optimizer: str = "sgd"
    lr_schedule: str = "constant"
    q_init: str = "optimal"
    pin_last_move: bool = False
    episodes: int = 2000
    every: int = 100
    n_rollouts: int = 512
    final_rollouts: int = 8192
    # neither q nor sigma is learned (learn_q and learn_sigma false: a pinned equal-precision
    # run with q = q*): training changes nothing an output reads, so the episodes are skipped
    # (the evaluations, which read q and sigma only, give the same numbers)
    frozen: bool = False

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


class TrainState(NamedTuple):
    q: jax.Array  # [6, M, 2]
    sigma: jax.Array  # [6, M, 2]
    opt_state: optax.OptState
    episode: jax.Array  # int: episodes done
    psi_mean: jax.Array  # [6]: running mean of Psi per start state (the loo_start fallback)
    psi_seen: jax.Array  # int [6]: gradient trials seen per start state


def _optimizer(st: PlanStatic, lr) -> optax.GradientTransformation:
    """The sigma ascent's optimizer: ``optimizer`` at rate ``alpha_sigma``, constant or
    (``lr_schedule = "cosine"``) decayed to 0 over the run's episodes."""
    return make_optimizer(st.optimizer, lr, st.lr_schedule, st.episodes)


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
    opt_state = _optimizer(st, p["alpha_sigma"]).init(sigma)
    return TrainState(q=q, sigma=sigma, opt_state=opt_state, episode=jnp.int32(0),
                      psi_mean=jnp.zeros(env.N_STATES, jnp.float32),
                      psi_seen=jnp.zeros(env.N_STATES, jnp.int32))


PSI_MEAN_RATE = 0.1  # the running mean's weight of a new update (1 / count before 10 visits)


def _running_psi_mean(ts: TrainState, s0: jax.Array, psi: jax.Array):
    """Per start state, the mean Psi of this update's gradient trials folded into the running
    mean: ``m[s] += w (mean_i{s0_i = s} Psi_i - m[s])``, ``w = max(1/count, PSI_MEAN_RATE)``."""
    hit = s0[None, :] == jnp.arange(env.N_STATES)[:, None]  # [6, n]
    cnt = jnp.sum(hit, axis=1)
    mean_now = jnp.sum(jnp.where(hit, psi[None, :], 0.0), axis=1) / jnp.maximum(cnt, 1)
    seen = ts.psi_seen + cnt
    w = jnp.where(cnt > 0, jnp.maximum(cnt / jnp.maximum(seen, 1), PSI_MEAN_RATE), 0.0)
    return ts.psi_mean + w * (mean_now - ts.psi_mean), seen


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
    2. sigma ascent: ``g = w * mean_i (Psi_i - b_i) sum_t grad log pi - lam * dKL/dsigma``
       (Eqs. 3, 5, 6, ``Psi = max``, ``b_i`` the config's baseline,
       :func:`dra_jax.planning.planner.psi_baseline`; ``loo_start`` falls back on the running mean of
       Psi per start state over the previous updates), one optax step, clip to
       ``[sigma_min, sigma_max]``; ``equal_sgd`` gives every memory the mean of the learned
       memories' directions;
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
    grad_res = jax.tree.map(lambda x: x[1:], res)
    s0_grad = noise.s0[1:]
    g = planner.sigma_ascent(grad_res, sigma, p["lam"], p["sigma_base"], mask, p["equal"], w,
                             p.get("baseline", 0), ts.psi_mean[s0_grad])
    psi_mean, psi_seen = _running_psi_mean(ts, s0_grad, grad_res.best_reward)
    opt = _optimizer(st, p["alpha_sigma"])
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
    return TrainState(q=q, sigma=sigma_out, opt_state=opt_state, episode=ts.episode + 1,
                      psi_mean=psi_mean, psi_seen=psi_seen)


def advance(st: PlanStatic, p: dict, ts: TrainState, n_episodes: int) -> TrainState:
    """``n_episodes`` episodes in one ``lax.fori_loop``. Keys come from the episode index
    (``fold_in``), so a run advanced in any chunking gives the same numbers."""
    if st.frozen:
        return ts._replace(episode=ts.episode + n_episodes)
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


def vec_to_table(st: PlanStatic, x: np.ndarray) -> np.ndarray:
    """CMA-ES vectors ``[..., n_learned]`` -> sigma tables (pinned memories 1)."""
    mask = st.learn_mask
    out = np.ones(x.shape[:-1] + mask.shape, np.float32)
    out[..., mask] = x
    return out


_CMA_DONE: dict = {}  # the CMA-ES problems solved in this process (see run_cma)


def cma_problem(cfg: dict, st: PlanStatic, budgets: list[int]) -> str:
    """Everything a CMA-ES result depends on: the ``[cma]`` section, the seed, the equations'
    values (beta, lam, sigma_base, sigma0, bounds), the tree (M, learned memories), the final
    evaluation's trials and the budgets. Not the sigma gradient's settings (episodes,
    n_traj, optimizer, baseline): CMA-ES never reads them."""
    d = cfg["dra"]
    return json.dumps({"cma": cfg["cma"], "seed": cfg["seed"],
                       "dra": {k: d[k] for k in ("beta", "lam", "sigma_base", "sigma0",
                                                 "sigma_min", "sigma_max")},
                       "moves": st.moves, "learn_mask": np.asarray(st.learn_mask).tolist(),
                       "final_rollouts": st.final_rollouts, "budgets": list(map(int, budgets))},
                      sort_keys=True, default=str)


def run_cma(cfg: dict, st: PlanStatic, budgets: list[int], progress=None) -> dict:
    """CMA-ES (``cma``) maximizing F over sigma with q = q*, for every budget and restart.

    All ``len(budgets) * restarts`` strategies advance in lockstep: each generation asks every
    strategy for its population, evaluates all candidates in ONE jitted vmapped call, and tells
    each strategy its values (ask -> evaluate -> tell).

    A problem already solved in this process (the same :func:`cma_problem`: the paper command
    runs ``planning`` and ``planning_loo``, whose CMA-ES baselines are the same problem) is not
    solved again: its result is returned (``reused = True``, compile and run time 0). CMA-ES is
    deterministic given its seeds, so the numbers are those a second run would give.
    """
    key_problem = cma_problem(cfg, st, budgets)
    if key_problem in _CMA_DONE:
        if progress is not None:
            progress.message("CMA-ES: the same problem was solved earlier in this process; "
                             "its result is reused")
        return {**_CMA_DONE[key_problem], "compile_s": 0.0, "run_s": 0.0, "env_steps": 0,
                "reused": True}
    out = _run_cma(cfg, st, budgets, progress)
    _CMA_DONE[key_problem] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                              for k, v in out.items()}
    return {**out, "reused": False}


def _run_cma(cfg: dict, st: PlanStatic, budgets: list[int], progress=None) -> dict:
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
    # the candidates split over this process's devices (each on its own: the same numbers)
    from dra_jax.runtime.devices import devices_dividing, jit_over_runs

    eval_pop = jit_over_runs(lambda s, b, k: population_objective(st, p, s, b, k, n_eval),
                             devices_dividing([len(strategies) * pop]), (1, 1, 0))
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
        f = np.asarray(eval_pop(jnp.asarray(vec_to_table(st, flat)), budgets_pop,
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
    best = vec_to_table(st, np.asarray([es.result.xfavorite for es in strategies]))
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
