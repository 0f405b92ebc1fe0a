"""Search-budget planning with soft Thompson sampling (Sec. 4.1, Fig. 3b) and its sigma gradient.

One *planning trial* from start state ``s0`` with memories ``q, sigma`` (``[6, M, 2]``, index
``[s, k-1, a]``, k = moves left) and search budget ``b`` (state transitions):

1. at the current node (state ``s``, ``k`` moves left) draw a fresh ``zeta ~ N(0, I_2)`` and act
   with the soft Thompson policy ``softmax(beta * (q[s,k-1] + zeta * sigma[s,k-1]))``
   (:mod:`dra_jax.core.policy`), restricted to the moves whose subtree still holds an unexplored
   path; each move costs one transition of the budget;
2. after ``M`` moves the path is complete: its total reward is compared to the best so far,
   its leaf is marked explored, and the search restarts at the root (free);
3. the trial stops when ``b`` transitions are spent (a path cut off by the budget does not
   count) or every path has been explored; the agent then executes the best complete path.

Because a fully explored subtree is never re-entered, every complete path is new, so
``b = M * 2^M`` explores all ``2^M`` paths and the best path is optimal whatever sigma is.

**Which distribution is differentiated.** Where one move's subtree is fully explored, the
planner samples from the soft Thompson distribution *renormalized over the allowed moves*,
which with two moves is a point mass on the other move. We differentiate the log-probability of
that distribution, the one actually sampled from (REINFORCE needs the score of the sampling
distribution to be unbiased): its score is zero at such a forced step. This is implemented by
masking the forbidden move's mean with ``-1e30`` (:data:`MASK`) before the softmax, so the
sampling probabilities, Eq. 5 (``beta * zeta * (onehot(a) - p_renorm)``, zero on the masked
entry) and ``jax.grad`` of ``log_softmax(beta * (q_masked + zeta * sigma))[a]`` all refer to
the same renormalized distribution.

**The gradient** (Sec. 2.3 with ``Psi = max``): ``Psi * sum_t grad_sigma log pi(a_t|s_t)``,
summed over every transition the planner took in the trial (also those of a path the budget
cut off: their score has zero mean, so they add variance, not bias), with
``Psi = max_i sum_t r_{t,i}``, the best total reward among the paths explored in the trial.

Everything is a pure function of arrays and the trial's noise; the loop has a fixed trip count
(``horizon``, by default ``M * 2^M``) with the steps beyond the budget masked, so ``b`` is a
traced value and a vmap over budgets is one program.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dra_jax.core import gradients, memory, policy
from dra_jax.envs.planning import NEXT_STATE, REWARD, full_budget

MASK = -1e30  # mean given to a move whose subtree is fully explored (probability exactly 0)


class PlanResult(NamedTuple):
    """One planning trial. Per-step arrays have the loop's fixed length ``horizon``."""

    best_reward: jax.Array  # float: reward of the best complete path (Psi = max)
    best_path: jax.Array  # int [M]: its moves (0/1)
    n_paths: jax.Array  # int: complete paths explored
    spent: jax.Array  # int: transitions spent (<= budget)
    score: jax.Array  # float [6, M, 2]: sum_t grad_sigma log pi(a_t|s_t) over the trial
    step_state: jax.Array  # int [T]: state before each step
    step_k: jax.Array  # int [T]: moves left before each step
    step_action: jax.Array  # int [T]
    step_reward: jax.Array  # float [T]
    step_active: jax.Array  # bool [T]: the step was taken (within budget)
    step_score: jax.Array  # float [T, 2]: grad_sigma log pi(a_t|s_t) of the step's row


class _Carry(NamedTuple):
    s: jax.Array
    depth: jax.Array
    prefix: jax.Array  # moves of the current path as bits, first move most significant
    cum: jax.Array
    done: jax.Array  # uint32 bit mask of explored leaves (2^M <= 32 leaves)
    best_reward: jax.Array
    best_leaf: jax.Array
    n_paths: jax.Array
    spent: jax.Array


def leaf_moves(leaf: jax.Array, moves: int) -> jax.Array:
    """The ``M`` moves (first move first) encoded by a leaf index of the search tree."""
    shifts = jnp.arange(moves - 1, -1, -1, dtype=jnp.int32)
    return jnp.right_shift(jnp.asarray(leaf, jnp.int32), shifts) & 1


def plan(q: jax.Array, sigma: jax.Array, s0: jax.Array, budget: jax.Array, beta: jax.Array,
         zeta: jax.Array, u: jax.Array, *, grad: str = "analytic") -> PlanResult:
    """One planning trial (module docstring). Pure; jit/vmap-able over every argument.

    ``q, sigma``: ``[6, M, 2]``; ``s0``: start state; ``budget``: transitions (traced int);
    ``zeta``: ``[T, 2]`` standard normals and ``u``: ``[T]`` uniforms, one per loop step
    (``T >= budget``; ``T = M * 2^M`` covers every budget); ``grad``: 'analytic' (Eq. 5) or
    'autodiff' (``jax.grad`` of the reparametrized log-softmax), static.
    """
    moves = q.shape[1]
    n_leaves = 2 ** moves
    all_done = jnp.uint32(2 ** n_leaves - 1)
    horizon = zeta.shape[0]
    next_state = jnp.asarray(NEXT_STATE)
    reward = jnp.asarray(REWARD, q.dtype)
    budget = jnp.asarray(budget, jnp.int32)
    s0 = jnp.asarray(s0, jnp.int32)
    one = jnp.uint32(1)

    def step(c: _Carry, xs):
        z, uu = xs
        active = (c.spent < budget) & (c.done != all_done)
        k = moves - c.depth  # moves left, >= 1
        # the leaves below child a are the bits [a_idx * w, (a_idx + 1) * w) of the mask,
        # w = 2^(moves left after the move) <= 16; a move is allowed iff one is unexplored
        w = jnp.left_shift(one, (k - 1).astype(jnp.uint32))
        block = jnp.left_shift(one, w) - one
        child = (2 * c.prefix + jnp.arange(2, dtype=jnp.int32)).astype(jnp.uint32)
        sub = jnp.left_shift(block, child * w)
        allowed = (c.done & sub) != sub
        q_row = jnp.where(allowed, q[c.s, k - 1], MASK)
        sigma_row = sigma[c.s, k - 1]
        p = policy.probs(q_row, sigma_row, z, beta)
        a = policy.sample_action(p, uu)
        if grad == "analytic":
            sc = gradients.score_analytic(p, z, beta, a)
        else:
            sc = gradients.score_autodiff(q_row, sigma_row, z, beta, a)
        sc = jnp.where(active, sc, 0.0)
        r = reward[c.s, a]
        cum = c.cum + r
        prefix = 2 * c.prefix + a
        complete = c.depth + 1 == moves
        better = complete & (cum > c.best_reward)
        new = _Carry(
            s=jnp.where(complete, s0, next_state[c.s, a]),
            depth=jnp.where(complete, 0, c.depth + 1),
            prefix=jnp.where(complete, 0, prefix),
            cum=jnp.where(complete, 0.0, cum),
            done=c.done | jnp.where(complete, jnp.left_shift(one, prefix.astype(jnp.uint32)),
                                    jnp.uint32(0)),
            best_reward=jnp.where(better, cum, c.best_reward),
            best_leaf=jnp.where(better, prefix, c.best_leaf),
            n_paths=c.n_paths + complete.astype(jnp.int32),
            spent=c.spent + 1,
        )
        out = (c.s, k, a, r, active, sc)
        c = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, c)
        return c, out

    init = _Carry(s=s0, depth=jnp.int32(0), prefix=jnp.int32(0), cum=jnp.zeros((), q.dtype),
                  done=jnp.uint32(0), best_reward=jnp.full((), -jnp.inf, q.dtype),
                  best_leaf=jnp.int32(0), n_paths=jnp.int32(0), spent=jnp.int32(0))
    c, (st, sk, sa, sr, sact, ssc) = jax.lax.scan(step, init, (zeta, u), length=horizon)
    # one scatter of the per-step scores into the table (cheaper than one per step)
    score = jnp.zeros_like(sigma).at[st, sk - 1].add(ssc)
    return PlanResult(best_reward=c.best_reward, best_path=leaf_moves(c.best_leaf, moves),
                      n_paths=c.n_paths, spent=c.spent, score=score, step_state=st, step_k=sk,
                      step_action=sa, step_reward=sr, step_active=sact, step_score=ssc)


# ------------------------------------------------------------------ trials with their noise


class TrialNoise(NamedTuple):
    """The random numbers of ``n`` planning trials: start states, zeta and action uniforms."""

    s0: jax.Array  # int [n]
    zeta: jax.Array  # float [n, T, 2]
    u: jax.Array  # float [n, T]


def noise_size(horizon: int) -> int:
    """Uniforms per trial: 2 per step for zeta, 1 per step for the action, 1 for the start."""
    return 3 * horizon + 1


def uniform_to_normal(v: jax.Array) -> jax.Array:
    """Standard normals from uniforms in [0, 1) (inverse CDF, as ``jax.random.normal``)."""
    w = jnp.maximum(2.0 * v - 1.0, jnp.nextafter(jnp.asarray(-1.0, v.dtype), 0.0).astype(v.dtype))
    return jnp.sqrt(jnp.asarray(2.0, v.dtype)) * jax.lax.erf_inv(w)


def noise_from_uniform(v: jax.Array, horizon: int) -> TrialNoise:
    """The noise of ``n`` trials from a block ``v [n, noise_size(horizon)]`` of uniforms."""
    n = v.shape[0]
    return TrialNoise(s0=jnp.minimum((v[:, 0] * NEXT_STATE.shape[0]).astype(jnp.int32),
                                     NEXT_STATE.shape[0] - 1),
                      zeta=uniform_to_normal(v[:, 1:1 + 2 * horizon]).reshape(n, horizon, 2),
                      u=v[:, 1 + 2 * horizon:])


def trial_noise(key: jax.Array, n: int, horizon: int, dtype=jnp.float32) -> TrialNoise:
    """Draw the noise of ``n`` trials (start state uniform over the six) in ONE block call:
    every RNG call compiles to a sizeable threefry kernel, so fewer calls compile faster."""
    v = jax.random.uniform(key, (n, noise_size(horizon)), dtype)
    return noise_from_uniform(v, horizon)


def plan_batch(q, sigma, budget, beta, noise: TrialNoise, *, grad: str = "analytic") -> PlanResult:
    """``n`` independent trials with the same memories (vmap of :func:`plan` over the noise)."""
    return jax.vmap(lambda s0, z, u: plan(q, sigma, s0, budget, beta, z, u, grad=grad))(
        noise.s0, noise.zeta, noise.u)


def trial_gradient(res: PlanResult) -> jax.Array:
    """Sec. 2.3 with ``Psi = max``: ``Psi * sum_t grad_sigma log pi(a_t|s_t)`` of one trial,
    ``Psi`` the best total reward among the trial's explored paths; ``[6, M, 2]``."""
    return res.best_reward * res.score


BASELINES = ("none", "loo", "loo_start")  # index = the traced baseline code


def psi_baseline(psi: jax.Array, baseline, s0: jax.Array | None = None,
                 b_past: jax.Array | None = None) -> jax.Array:
    """``Psi_i - b_i`` for the ``n`` gradient trials of one update (``baseline``: a traced
    index into :data:`BASELINES`):

    * ``none`` (0, the paper's estimator): ``b_i = 0``;
    * ``loo`` (1, leave-one-out): ``b_i = mean_{j != i} Psi_j = (sum_j Psi_j - Psi_i) / (n - 1)``;
    * ``loo_start`` (2, leave-one-out within the start state): ``b_i = mean Psi_j`` over the
      other trials ``j != i`` of the update that started in trial ``i``'s start state ``s0_i``;
      when no other trial did, ``b_past[i]`` (the trainer passes a running mean of Psi from
      ``s0_i`` over the PREVIOUS updates), or the ``loo`` baseline when ``b_past`` is None.

    All three are unbiased: ``b_i`` is a function of the other trials and of the past
    (independent of trial ``i``'s own noise) and of ``s0_i`` only, and the score of trial ``i``
    has zero mean given its start state, so ``E[b_i * score_i] = E[b_i E[score_i | s0_i,
    others, past]] = 0`` (Eq. 3). They lower the
    variance by removing the level of Psi (Psi = max is 0-140 on this task): ``loo`` its common
    level, ``loo_start`` also the part that depends on the start state (the best path is 0-100
    by start state for M = 3): at the full budget, where Psi is the start state's best path
    whatever sigma is and the reward gradient is zero, a ``loo_start`` trial with a partner
    contributes no noise at all. Needs ``n >= 2``; ``s0`` (``[n]``) is needed for
    ``loo_start``.
    """
    n = psi.shape[0]
    if n < 2:
        return psi  # (the config refuses a baseline with n_traj < 2)
    others = (jnp.sum(psi) - psi) / (n - 1)
    b_start = others if b_past is None else b_past
    if s0 is not None:
        same = (s0[:, None] == s0[None, :]) & ~jnp.eye(n, dtype=bool)
        cnt = jnp.sum(same, axis=1)
        b_start = jnp.where(cnt > 0, jnp.sum(jnp.where(same, psi[None, :], 0.0), axis=1)
                            / jnp.maximum(cnt, 1), b_start)
    code = jnp.asarray(baseline, jnp.int32)
    zero = jnp.zeros_like(others)
    return psi - jnp.where(code == 1, others, jnp.where(code == 2, b_start, zero))


def sigma_ascent(res: PlanResult, sigma: jax.Array, lam, sigma_base, mask, equal,
                 weight=1.0, baseline=0, b_past=None) -> jax.Array:
    """Ascent direction of F (Eq. 1; F-tilde, Eq. 8, with ``weight = 1 / (a_dec b + t_nondec)``)
    for sigma from a batch of ``n`` gradient trials ``res`` (leading axis = trials):

        g = weight * mean_i (Psi_i - b_i) * score_i - lam * dKL/dsigma   (Eqs. 3, 5, 6)

    with ``score_i = sum_t grad_sigma log pi(a_t|s_t)`` of trial ``i``, ``Psi_i`` its best path
    reward (``Psi = max``) and ``b_i`` the baseline ``baseline`` (traced index into
    :data:`BASELINES`): 0 (the paper's estimator, :func:`trial_gradient`), the leave-one-out
    ``mean_{j != i} Psi_j`` or its start-state version (:func:`psi_baseline`, with
    ``b_past`` ``[n]`` the past-only fallback of ``loo_start``; all unbiased). Zero on memories
    outside ``mask``; with ``equal`` (``equal_sgd``: one shared sigma) every learned memory gets the
    mean of the learned memories' directions (the sum's step grows with their number: see
    :func:`dra_jax.lane.agent.sigma_gradient`). The planning trainer's only gradient formula
    (tests/test_planning_gradient.py checks it against exact derivatives).
    """
    psi = psi_baseline(res.best_reward, baseline, res.step_state[:, 0], b_past)
    g_reward = jnp.mean(psi[:, None, None, None] * res.score, axis=0)
    g = jnp.where(mask, weight * g_reward - lam * memory.kl_grad(sigma, sigma_base), 0.0)
    shared = jnp.sum(g) / jnp.maximum(jnp.sum(mask), 1)
    return jnp.where(equal, jnp.where(mask, shared, 0.0), g)


def expected_reward(key: jax.Array, q, sigma, budget, beta, n: int | jax.Array,
                    chunk: int = 256) -> jax.Array:
    """``E[max path reward]`` (the first term of F, Eq. 1; start state uniform over the six)
    as the exact average over the six start states of a Monte-Carlo estimate per start state:

        E = (1/6) sum_{s0} E[max path reward | s0],

    each conditional expectation from ``n / 6`` trials; only the planner's own noise (zeta and
    the action draws) is sampled, never the start state, which removes the start-state part of
    the estimate's variance (the best path is 0...100 depending on s0 for M = 3) without
    changing its meaning. A loop over ``ceil(n / chunk)`` chunks of ``chunk`` vmapped trials;
    ``chunk`` (static) is rounded up to a multiple of 6 and trial ``j`` of a chunk starts in
    state ``j mod 6``, so every chunk holds each start state equally often; ``n`` may be traced
    (unbatched), so one compiled program serves every number of trials, and is rounded up to a
    multiple of ``chunk``.

    The trials of chunk ``i`` use the noise of ``fold_in(key, i)``, so a candidate's estimate
    does not depend on what else is evaluated alongside it (common random numbers across
    candidates that share ``key``).
    """
    horizon = full_budget(q.shape[1])
    n_start = NEXT_STATE.shape[0]
    chunk = -(-chunk // n_start) * n_start
    n_chunks = (jnp.asarray(n, jnp.int32) + chunk - 1) // chunk
    starts = jnp.arange(chunk, dtype=jnp.int32) % n_start

    def body(i, total):
        noise = trial_noise(jax.random.fold_in(key, i), chunk, horizon, q.dtype)._replace(s0=starts)
        res = plan_batch(q, sigma, budget, beta, noise)
        return total + jnp.sum(res.best_reward)

    total = jax.lax.fori_loop(0, n_chunks, body, jnp.zeros((), q.dtype))
    return total / (n_chunks * chunk).astype(q.dtype)
