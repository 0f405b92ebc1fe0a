"""Algorithm 1 (DRA) as a step-synchronous lane machine, vmapped over runs.

Each run is ``W = sub_lanes`` *sub-lanes* wide. Every sub-lane takes one environment step per
loop iteration, whatever the run is doing; the run's phase says what that is, in Algorithm 1's
order::

    [EVAL at k = 0] -> ACT -> GRAD -> (sigma update, k += 1) -> [EVAL if k % every == 0] -> ACT

* ACT (l. 3-9): the acting episode, on sub-lane 0 (the means change at every step, so nothing
  can run beside it); the other sub-lanes idle.
* GRAD (l. 10-12): the ``n_traj`` gradient rollouts, which only *read* the memories (q after
  the acting episode, sigma before its update): trajectory ``j`` runs on sub-lane ``j % W``,
  the ones of a sub-lane one after another. It starts at the step after the acting episode
  ends; it is over when every sub-lane has finished its trajectories.
* EVAL (l. 14): the ``n_rollouts`` evaluation rollouts (read only), rollout ``j`` on sub-lane
  ``j % W``.

A sub-lane that is not inside a rollout holds a fresh start state, drawn at every step from its
own reset uniform, and begins its next rollout from it. Steps come in blocks of ``block``
iterations, blocks in superblocks of ``noise_blocks``; the random numbers of a superblock
(``zeta`` for the action, the action's uniform and a uniform for random starts per sub-lane;
``zeta'`` for the expected-SARSA target of the acting episode once per run) are drawn in one
call at its start from ``fold_in(key, superblock_index)``. After GRAD or EVAL the run waits (idle) until the block
ends, where the *sync* applies the sigma update (``sigma += alpha_sigma * (mean_traj_grad - lam
* dKL/dsigma)``, clipped to ``[sigma_min, sigma_max]``), records evaluations and snapshots, and
sends the run on. So a run's numbers depend on its own parameters, key and the static
configuration (``block``, ``noise_blocks``, ``sub_lanes``) only: batch composition, chunking
and device count do not change them. With ``sub_lanes = 1`` this is the one-lane-per-run
engine; wider runs shorten a run's critical path per episode from ``1 + n_traj`` rollouts to
about 2 (:mod:`dra_jax.lane.reference` walks the same timeline in NumPy).

Why this layout (docs/design.md, "The lane engine"): ``vmap`` of a fixed-trip ``fori_loop`` is a loop
over the vmapped body, while ``vmap`` of a per-rollout ``while_loop`` makes every lane wait for
the slowest and re-selects the whole carry every step; drawing noise one step at a time
dominated the naive layout's time.

Public entry points: :class:`AgentStatic` (static configuration), :func:`make_run_params`,
:func:`init`, :func:`advance`, :func:`finish` and :func:`train`; batches of runs: :mod:`dra_jax.lane.batching`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax.core import memory
from dra_jax.core.optim import make_optimizer
from dra_jax.lane.static import (  # noqa: F401
    OBJECTIVE_CODES,
    PSI_CODES,
    RUN_PARAM_KEYS,
    AgentStatic,
    make_run_params,
    stack_params,
)
from dra_jax.lane.step import (
    ACT,
    DONE,
    EVAL,
    F_DISC,
    F_EVACC,
    F_EVH,
    F_EVHT,
    F_EVKL,
    F_EVUND,
    GRAD,
    I_BUSY,
    I_EVTR,
    I_ROW,
    I_STEPS,
    I_SUB,
    I_T,
    I_TRUNC,
    N_ACC,
    N_CURVES,
    NONE,
    RECORD,
    UPDATE,
    WAIT,
    StepCarry,
    block_noise,
    run_step,
    split_noise,
    where_tree,
)

__all__ = ["ACT", "DONE", "EVAL", "GRAD", "N_ACC", "N_CURVES", "WAIT", "AgentStatic", "Lane",
           "RunOutput", "advance", "block_noise", "finish", "init", "make_run_params",
           "sigma_gradient", "split_noise", "stack_params", "train"]

class Lane(NamedTuple):
    """The whole state of one run (a pytree); ``advance`` maps Lane -> Lane. Fields marked [W]
    have one entry per sub-lane."""

    q: jax.Array  # [S, A]
    sigma: jax.Array  # [S, A]
    opt_state: Any
    G: jax.Array  # [W, S, A] per sub-lane sums of Psi-weighted scores (A, Q; R's -S_t part)
    E: jax.Array  # [n_traj, S, A] per-trajectory discounted score sums (Psi = R), else [0]
    R_traj: jax.Array  # [n_traj] return of each gradient trajectory (Psi = R), else [0]
    env_state: Any  # [W]
    X: jax.Array  # [n_traj, S, A] per-trajectory sums of dH_t/dsigma (objective elbo), else [0]
    T_traj: jax.Array  # [n_traj] length of each gradient trajectory (objective elbo), else [0]
    row: jax.Array  # [W] memory row of the current state
    t: jax.Array  # [W] steps in the current rollout
    acc: jax.Array  # float32[W, N_ACC] running sums, indexed by the _F_* constants
    busy: jax.Array  # bool[W]: inside a rollout of the current phase
    sub: jax.Array  # [W] rollout index within the phase
    phase: jax.Array
    k: jax.Array  # completed episodes (sigma updates)
    pending: jax.Array
    next_eval: jax.Array
    next_snap: jax.Array
    eval_trunc: jax.Array  # [W] truncated evaluation rollouts of the current evaluation
    curves: jax.Array  # [n_evals, 6]: objective, expected (discounted) return, cost, truncated
    #                     fraction, entropy term (0 for objective dra), expected undiscounted
    #                     sum of rewards
    snap_q: jax.Array  # [n_snap, S, A]
    snap_sigma: jax.Array
    truncations: jax.Array  # [W] truncated acting + gradient rollouts
    env_steps: jax.Array  # [W]
    block_idx: jax.Array
    nonfinite_at: jax.Array  # completed episodes when q or sigma was first seen non-finite, or -1


def _kl_mask(task) -> np.ndarray:
    return np.asarray(task.learnable, bool)


def init(task, st: AgentStatic, p: dict) -> Lane:
    """The lane of one run before its first step (evaluation at episode 0 pending)."""
    S, A, W = task.n_states, task.n_actions, st.sub_lanes
    if W < 1:
        raise ValueError(f"sub_lanes must be >= 1, got {W}")
    key = jax.random.key(p["seed"])
    if st.q_init == "zero":
        q = jnp.zeros((S, A), jnp.float32)
    elif st.q_init == "optimal":
        q = jnp.asarray(task.q_star(), jnp.float32)
    elif st.q_init == "uniform":
        q = jax.random.uniform(jax.random.fold_in(key, 2**31 - 1), (S, A), jnp.float32, -1.0, 1.0)
    else:
        raise ValueError(f"unknown q_init {st.q_init!r}")
    sigma = jnp.full((S, A), p["sigma0"], jnp.float32)
    opt_state = make_optimizer(st.optimizer, p["alpha_sigma"]).init(sigma)
    n_evals = len(st.eval_episodes)
    n_snap = len(st.snapshots)
    nR = st.n_traj if st.need_R else 0
    nX = st.n_traj if st.need_entropy else 0
    env_state = jax.vmap(lambda u: task.reset(u, p["task"], jnp.int32(0)))(
        jnp.full((W,), 0.5, jnp.float32))
    rows = jax.vmap(lambda e: jnp.asarray(task.row(e, p["task"]), jnp.int32))(env_state)
    zi = jnp.zeros((W,), jnp.int32)
    lane = Lane(
        q=q, sigma=sigma, opt_state=opt_state,
        G=jnp.zeros((W, S, A), jnp.float32),
        E=jnp.zeros((nR, S, A), jnp.float32) if nR else jnp.zeros((0,), jnp.float32),
        R_traj=jnp.zeros((nR,), jnp.float32),
        X=jnp.zeros((nX, S, A), jnp.float32) if nX else jnp.zeros((0,), jnp.float32),
        T_traj=jnp.zeros((nX,), jnp.float32),
        env_state=env_state, row=rows,
        t=zi, acc=jnp.zeros((W, N_ACC), jnp.float32).at[:, F_DISC].set(1.0),
        busy=jnp.zeros((W,), bool), sub=zi,
        phase=jnp.int32(WAIT), k=jnp.int32(0), pending=jnp.int32(NONE),
        next_eval=jnp.int32(0), next_snap=jnp.int32(0),
        eval_trunc=zi,
        curves=jnp.full((n_evals, N_CURVES), jnp.nan, jnp.float32),
        snap_q=jnp.zeros((n_snap, S, A), jnp.float32),
        snap_sigma=jnp.zeros((n_snap, S, A), jnp.float32),
        truncations=zi, env_steps=zi, block_idx=jnp.int32(0),
        nonfinite_at=jnp.int32(-1),
    )
    return _sync(task, st, p, lane)


def sigma_gradient(task, st: AgentStatic, p: dict, lane: Lane) -> jax.Array:
    """Ascent direction of F for sigma from the accumulated trajectories (Algorithm 1, l. 11-13):
    ``mean_traj sum_t Psi_t grad log pi - lam * dKL/dsigma``, zero on memories that are not
    learned; with ``equal_sgd`` (one shared sigma) every learned memory gets the MEAN of the
    learned memories' directions. The sum is the exact derivative for a shared sigma, but its
    curvature grows with the number of memories N (the KL part alone is
    ``lam * N * (1/sigma_base^2 + 1/sigma^2)``), so at a flexible memory's alpha_sigma the
    step is N times too long and the shared sigma oscillates (mountain car: N = 855). The mean
    has the same fixed points and steps like one memory."""
    g = memory.fixed_order_sum(lane.G, axis=0)
    # (sums in a fixed order, so a run's bits do not depend on its batch or device: see
    # memory.fixed_order_sum)
    if st.need_R:
        g = g + memory.fixed_order_sum(lane.R_traj[:, None, None] * lane.E, axis=0)
    if st.need_entropy:  # Eq. 10's bonus (lam / T) sum_t H_t, pathwise gradient
        w = jnp.where(p["objective"] == 2, p["lam"] / jnp.maximum(lane.T_traj, 1.0), 0.0)
        g = g + memory.fixed_order_sum(w[:, None, None] * lane.X, axis=0)
    # the KL cost once per episode (dra, elbo); elbo_step pays it per access, inside G
    kl_w = jnp.where(p["objective"] == 1, 0.0, p["lam"])
    g = g / st.n_traj - kl_w * memory.kl_grad(lane.sigma, p["sigma_base"])
    mask = jnp.asarray(_kl_mask(task))
    g = jnp.where(mask, g, 0.0)
    n_learn = float(max(int(np.asarray(_kl_mask(task)).sum()), 1))
    shared = memory.fixed_order_sum(g) / n_learn
    return jnp.where(p["equal"], jnp.where(mask, shared, 0.0), g)


def _sync(task, st: AgentStatic, p: dict, c: Lane) -> Lane:
    """Block boundary: apply a pending sigma update or evaluation record; route a waiting run."""
    waiting = c.phase == WAIT
    mask = jnp.asarray(_kl_mask(task))

    # 1. sigma update (end of an episode's gradient rollouts)
    do_upd = waiting & (c.pending == UPDATE)
    opt = make_optimizer(st.optimizer, p["alpha_sigma"])
    ascent = sigma_gradient(task, st, p, c)
    updates, opt_state = opt.update(-ascent, c.opt_state, c.sigma)
    sigma_new = jnp.clip(optax.apply_updates(c.sigma, updates), p["sigma_min"], p["sigma_max"])
    learn = do_upd & p["learn_sigma"] & (not st.pinned)
    sigma = jnp.where(learn, sigma_new, c.sigma)
    opt_state = where_tree(learn, opt_state, c.opt_state)
    G = jnp.where(do_upd, 0.0, c.G)
    E = jnp.where(do_upd, 0.0, c.E)
    X = jnp.where(do_upd, 0.0, c.X)
    k = c.k + do_upd.astype(jnp.int32)

    # 2. evaluation record (the sub-lanes' sums added in a fixed order)
    do_rec = waiting & (c.pending == RECORD)
    n_ro = st.n_rollouts
    ev = memory.fixed_order_sum(c.acc, axis=0)
    expected = ev[F_EVACC] / n_ro
    cost_once = p["lam"] * memory.kl_cost(sigma, p["sigma_base"], mask)
    obj_code = p["objective"]
    # elbo_step: the KL of the visited memories per access, and the action entropy per step
    cost = jnp.where(obj_code == 1, p["lam"] * ev[F_EVKL] / n_ro, cost_once)
    ent = jnp.where(obj_code == 1, p["lam"] * ev[F_EVH] / n_ro,
                    jnp.where(obj_code == 2, p["lam"] * ev[F_EVHT] / n_ro, 0.0))
    row = jnp.stack([expected - cost + ent, expected, cost, jnp.sum(c.eval_trunc) / n_ro, ent,
                     ev[F_EVUND] / n_ro])
    ie = jnp.minimum(c.next_eval, c.curves.shape[0] - 1)
    curves = jnp.where(do_rec, c.curves.at[ie].set(row), c.curves)
    next_eval = c.next_eval + do_rec.astype(jnp.int32)

    # 3. snapshots of (q, sigma) after `k` episodes
    if st.snapshots:
        snaps = jnp.asarray(st.snapshots, jnp.int32)
        js = jnp.minimum(c.next_snap, len(st.snapshots) - 1)
        take = waiting & (c.next_snap < len(st.snapshots)) & (snaps[js] == k)
        snap_q = jnp.where(take, c.snap_q.at[js].set(c.q), c.snap_q)
        snap_sigma = jnp.where(take, c.snap_sigma.at[js].set(sigma), c.snap_sigma)
        next_snap = c.next_snap + take.astype(jnp.int32)
    else:
        snap_q, snap_sigma, next_snap = c.snap_q, c.snap_sigma, c.next_snap

    # 4. a run whose memories stop being finite is marked and stopped (the others go on)
    finite = jnp.all(jnp.isfinite(c.q)) & jnp.all(jnp.isfinite(sigma))
    bad = ~finite & (c.nonfinite_at < 0)
    nonfinite_at = jnp.where(bad, k, c.nonfinite_at)

    # 5. route a waiting run: evaluation rollouts j on sub-lanes j % W, or the acting episode
    #    on sub-lane 0
    eval_eps = jnp.asarray(st.eval_episodes)
    je = jnp.minimum(next_eval, len(st.eval_episodes) - 1)
    need_eval = (next_eval < len(st.eval_episodes)) & (eval_eps[je] == k)
    nxt = jnp.where(need_eval, EVAL, jnp.where(k < st.episodes, ACT, DONE))
    phase = jnp.where(nonfinite_at >= 0, DONE, jnp.where(waiting, nxt, c.phase))
    lanes = jnp.arange(st.sub_lanes, dtype=jnp.int32)
    busy = jnp.where(phase == EVAL, lanes < n_ro, jnp.where(phase == ACT, lanes == 0, False))
    busy = jnp.where(waiting | (phase == DONE), busy, c.busy)
    sub = jnp.where(waiting, jnp.where(phase == EVAL, lanes, 0), c.sub)
    pending = jnp.where(waiting, NONE, c.pending)
    eval_sums = np.isin(np.arange(N_ACC), [F_EVACC, F_EVKL, F_EVH, F_EVHT, F_EVUND])
    acc = jnp.where(do_rec & eval_sums, 0.0, c.acc)
    eval_trunc = jnp.where(do_rec, 0, c.eval_trunc)
    return c._replace(sigma=sigma, opt_state=opt_state, G=G, E=E, X=X, k=k, curves=curves,
                      next_eval=next_eval, snap_q=snap_q, snap_sigma=snap_sigma,
                      next_snap=next_snap, phase=phase, pending=pending, busy=busy, sub=sub,
                      acc=acc, eval_trunc=eval_trunc, nonfinite_at=nonfinite_at)


def _pack(c: Lane) -> StepCarry:
    ints = jnp.stack([c.row, c.t, c.busy.astype(jnp.int32), c.sub, c.eval_trunc, c.truncations,
                      c.env_steps], axis=1).astype(jnp.int32)
    return StepCarry(jnp.stack([c.q, c.sigma], axis=1), c.G, c.E, c.R_traj, c.X, c.T_traj,
                      c.env_state, ints, jnp.stack([c.phase, c.pending]).astype(jnp.int32), c.acc)


def _unpack(c: Lane, sc: StepCarry) -> Lane:
    i, f = sc.ints, sc.floats
    return c._replace(q=sc.mem[:, 0], G=sc.G, E=sc.E, R_traj=sc.R_traj, X=sc.X,
                      T_traj=sc.T_traj, env_state=sc.env_state, row=i[:, I_ROW], t=i[:, I_T],
                      busy=i[:, I_BUSY] > 0, sub=i[:, I_SUB], phase=sc.run[0],
                      pending=sc.run[1], eval_trunc=i[:, I_EVTR], truncations=i[:, I_TRUNC],
                      env_steps=i[:, I_STEPS], acc=f)


def _mark_nonfinite(c: Lane) -> Lane:
    """What :func:`_sync` does to a run that is not waiting: mark and stop it if its memories
    are no longer finite (step 4 there), nothing else."""
    finite = jnp.all(jnp.isfinite(c.q)) & jnp.all(jnp.isfinite(c.sigma))
    nonfinite_at = jnp.where(~finite & (c.nonfinite_at < 0), c.k, c.nonfinite_at)
    phase = jnp.where(nonfinite_at >= 0, DONE, c.phase)
    return c._replace(nonfinite_at=nonfinite_at, phase=phase,
                      busy=jnp.where(phase == DONE, False, c.busy))


def _superblock(task, st: AgentStatic, p: dict, c: Lane, axis_name=None) -> Lane:
    """``noise_blocks`` blocks of ``block`` steps, each followed by a sync.

    Under ``vmap(..., axis_name=axis_name)`` the sync's dense work over the table (sigma
    update, evaluation record) runs only at block ends where some run of the batch waits for
    it; at the others every run gets :func:`_mark_nonfinite`, which is what the sync does to a
    run that does not wait, so no run's numbers depend on its batch."""
    K = st.block
    noise = block_noise(jax.random.key(p["seed"]), c.block_idx // st.noise_blocks,
                        task.n_actions, K * st.noise_blocks, st.sub_lanes)

    def one_block(b, cc):
        rows = jax.lax.dynamic_slice_in_dim(noise, b * K, K)
        sc = jax.lax.fori_loop(0, K, lambda i, x: run_step(task, st, p, cc.k, x, rows[i]), _pack(cc),
                               unroll=st.unroll)
        cc = _unpack(cc, sc)._replace(block_idx=cc.block_idx + 1)
        if axis_name is None:
            return _sync(task, st, p, cc)
        any_wait = jax.lax.psum((cc.phase == WAIT).astype(jnp.int32), axis_name) > 0
        return jax.lax.cond(any_wait, lambda x: _sync(task, st, p, x), _mark_nonfinite, cc)

    return jax.lax.fori_loop(0, st.noise_blocks, one_block, c)


def advance(task, st: AgentStatic, p: dict, c: Lane, max_superblocks, axis_name=None) -> Lane:
    """Run superblocks until the run is done or ``max_superblocks`` (traced) more have run.
    ``axis_name``: the name of the ``vmap`` axis over runs, if any (see :func:`_superblock`)."""
    room = (jnp.int32(2**31 - 1) - c.block_idx) // st.noise_blocks
    stop = c.block_idx + jnp.minimum(max_superblocks, room) * st.noise_blocks
    return jax.lax.while_loop(lambda cc: (cc.phase != DONE) & (cc.block_idx < stop),
                              lambda cc: _superblock(task, st, p, cc, axis_name), c)


class RunOutput(NamedTuple):
    q: jax.Array
    sigma: jax.Array
    curves: jax.Array  # [n_evals, N_CURVES] (see Lane.curves)
    snap_q: jax.Array
    snap_sigma: jax.Array
    truncations: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    nonfinite_at: jax.Array


def finish(c: Lane) -> RunOutput:
    return RunOutput(c.q, c.sigma, c.curves, c.snap_q, c.snap_sigma, jnp.sum(c.truncations),
                     jnp.sum(c.env_steps), c.k, c.nonfinite_at)


def train(task, st: AgentStatic, p: dict) -> RunOutput:
    """One whole run (unbatched, uncompiled; wrap in ``jax.jit(jax.vmap(...))`` for sweeps)."""
    c = init(task, st, p)
    c = advance(task, st, p, c, jnp.int32(2**31 - 1 - 1))
    return finish(c)
