"""One environment step of a run's sub-lanes (Algorithm 1, l. 3-14), and the step noise.

The inner loop of the lane engine (:mod:`dra_jax.lane.agent`, which documents the layout): every
sub-lane of a run takes one step of whatever its run's phase asks for (acting episode with the
expected-SARSA update of the means, gradient rollouts accumulating ``Psi_t * grad_sigma log
pi``, evaluation rollouts), and the phase moves on when its rollouts are done.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dra_jax.core import gradients, memory, policy
from dra_jax.lane.static import AgentStatic

# phases of a run
ACT, GRAD, EVAL, WAIT, DONE = 0, 1, 2, 3, 4
# what a waiting run has pending at the next sync
NONE, UPDATE, RECORD = 0, 1, 2
# the lane's float sums (Lane.acc): return and gamma^t of the current rollout, evaluation
# returns, the current rollout's sums of KL_t and H_t, their evaluation sums (and of H / T),
# the task-reward return when Psi = R runs on ELBO-augmented rewards, and the undiscounted sum
# of the task's rewards of the current rollout and of the evaluation rollouts
(F_RET, F_DISC, F_EVACC, F_KLSUM, F_HSUM, F_EVKL, F_EVH, F_EVHT, F_RETTASK, F_UND,
 F_EVUND) = range(11)
N_ACC = 11
N_CURVES = 6  # columns of Lane.curves



def where_tree(c, new, old):
    return jax.tree.map(lambda a, b: jnp.where(c, a, b), new, old)


def where_lanes(c, new, old):
    """Per sub-lane select: ``c`` is [W], the leaves [W, ...]."""
    return jax.tree.map(lambda a, b: jnp.where(c.reshape(c.shape + (1,) * (a.ndim - 1)), a, b),
                        new, old)


# Inside a block the run's per-step state is packed (fewer, larger arrays make fewer kernels
# per step: XLA on CPU launches one kernel per separately updated array):
#   mem [S, 2, A] = (q, sigma), ints [W, 7] per sub-lane, run [2] = (phase, pending).
I_ROW, I_T, I_BUSY, I_SUB, I_EVTR, I_TRUNC, I_STEPS = range(7)


class StepCarry(NamedTuple):
    mem: jax.Array  # [S, 2, A]: q, sigma (read only within a block)
    G: jax.Array  # [W, S, A]
    E: jax.Array
    R_traj: jax.Array
    X: jax.Array
    T_traj: jax.Array
    env_state: Any  # [W]
    ints: jax.Array  # int32[W, 7]
    run: jax.Array  # int32[2]: phase, pending
    floats: jax.Array  # float32[W, N_ACC]


def run_step(task, st: AgentStatic, p: dict, k, c: StepCarry, noise) -> StepCarry:
    """One environment step of every sub-lane of one run (all phases computed, the run's phase
    selects). ``noise``: one row of :func:`block_noise`.

    ``k`` (completed episodes) is constant within a block: it only changes at a sync.
    """
    A, W, nt = task.n_actions, st.sub_lanes, st.n_traj
    zeta, zeta2, u, u_reset = split_noise(noise, A, W)
    beta, gamma = p["beta"], p["gamma"]
    ints, floats = c.ints, c.floats
    s, t0, busy, sub = ints[:, I_ROW], ints[:, I_T], ints[:, I_BUSY] > 0, ints[:, I_SUB]
    phase, pending = c.run[0], c.run[1]
    ret0, disc0 = floats[:, F_RET], floats[:, F_DISC]
    lanes = jnp.arange(W, dtype=jnp.int32)
    m_s = c.mem[s]  # [W, 2, A]
    q_row, s_row = m_s[:, 0], m_s[:, 1]
    pr = policy.probs(q_row, s_row, zeta, beta)
    a = policy.sample_action(pr, u[:, None])
    env2, r, term = jax.vmap(lambda e, ai: task.step(e, ai, p["task"], k))(c.env_state, a)
    r = jnp.asarray(r, jnp.float32)
    s2 = jax.vmap(lambda e: jnp.asarray(task.row(e, p["task"]), jnp.int32))(env2)
    t1 = t0 + 1
    trunc = (t1 >= st.max_steps) & ~term
    end = term | trunc
    qa = jnp.take_along_axis(q_row, a[:, None], axis=1)[:, 0]

    # expected SARSA on the acting episode, sub-lane 0 (Algorithm 1, l. 6-9); a truncation
    # bootstraps
    m_s2 = c.mem[s2[0]]
    q_next = m_s2[0]
    p2 = policy.probs(q_next, m_s2[1], zeta2, beta)
    target = r[0] + gamma * (1.0 - term[0].astype(jnp.float32)) * memory.fixed_order_sum(p2 * q_next)
    do_q = busy[0] & (phase == ACT) & p["learn_q"]
    dq = jnp.where(do_q, p["alpha_q"] * (target - qa[0]), 0.0)

    # gradient rollouts: sum_t Psi_t * d log pi(a_t|s_t) / d sigma[s_t]  (Eq. 3-5)
    do_g = busy & (phase == GRAD)
    score = jax.vmap(lambda qr, sr, z, ai, pi: gradients.score(st.grad, qr, sr, z, beta, ai, p=pi))(
        q_row, s_row, zeta, a, pr)
    psi_a = qa - memory.fixed_order_sum(q_row, axis=1) / A
    # Psi = R: G_t = gamma^-t (S_T - S_t), S_t = sum_{t'<t} gamma^t' r_t'; the -S_t part goes
    # into G now, the S_T part at the sync through E and R_traj.
    psi_r = -ret0 / disc0
    w = jnp.where(p["psi"] == 0, psi_a, jnp.where(p["psi"] == 1, qa, psi_r))
    g_row = w[:, None] * score
    # trajectory index of each sub-lane's step, out of range (dropped) where it adds nothing
    j_g = jnp.where(do_g, sub, nt)
    j_end = jnp.where(do_g & end, sub, nt)
    X, T_traj = c.X, c.T_traj
    r_eff = r
    if st.need_entropy:
        # the action entropy H_t = H[softmax(beta (q + zeta sigma))] and its reparametrized
        # sigma gradient (autodiff); the visited memories' KL for the per-access cost
        h_t, dh = jax.vmap(jax.value_and_grad(policy.entropy), (0, 0, 0, None))(s_row, q_row,
                                                                               zeta, beta)
        kl_t = memory.fixed_order_sum(memory.kl_per_memory(s_row, p["sigma_base"]), axis=1)
        is_step = p["objective"] == 1
        lam = p["lam"]
        g_row = g_row + jnp.where(is_step, lam * (dh - memory.kl_grad(s_row, p["sigma_base"])), 0.0)
        # Psi = R sees the per-step ELBO terms as part of the reward (Eq. 8's r-tilde)
        r_eff = r + jnp.where(is_step, lam * (h_t - kl_t), 0.0)
        j_x = jnp.where(do_g & (p["objective"] == 2), sub, nt)
        X = X.at[j_x, s].add(dh, mode="drop")
        T_traj = T_traj.at[j_end].set(t1.astype(jnp.float32), mode="drop")
    else:
        h_t = kl_t = jnp.zeros((W,), jnp.float32)
    mem = c.mem.at[s[0], 0, a[0]].add(dq)
    # (pinned: no gradient rollouts, so the score terms are never computed)
    G = c.G if st.pinned else c.G.at[lanes, s].add(jnp.where(do_g[:, None], g_row, 0.0))
    ret = ret0 + disc0 * jnp.where(p["psi"] == 2, r_eff, r)
    E, R_traj = c.E, c.R_traj
    if st.need_R and not st.pinned:
        j_r = jnp.where(p["psi"] == 2, j_g, nt)
        E = E.at[j_r, s].add(score / disc0[:, None], mode="drop")
        R_traj = R_traj.at[j_end].set(ret, mode="drop")

    # end of a rollout: the sub-lane's next rollout (j + W), or the end of its part of the phase;
    # the phase ends when no sub-lane has a rollout left
    fin = busy & end
    eval_end = fin & (phase == EVAL)
    n_phase = jnp.where(phase == ACT, 1, jnp.where(phase == GRAD, nt, st.n_rollouts))
    mid = busy & ~end
    busy_next = mid | (fin & (sub + W < n_phase))
    sub_next = jnp.where(fin, sub + W, sub)
    phase_done = (phase < WAIT) & ~jnp.any(busy_next)
    if st.pinned:  # no gradient rollouts: the acting episode ends at the sync (k += 1 there)
        to_grad = jnp.bool_(False)
        new_phase = jnp.where(phase_done, WAIT, phase)
        upd = phase_done & (phase == ACT)
    else:
        to_grad = phase_done & (phase == ACT)  # the gradient rollouts start at the next step
        new_phase = jnp.where(phase_done, jnp.where(phase == ACT, GRAD, WAIT), phase)
        upd = phase_done & (phase == GRAD)
    new_pending = jnp.where(upd, UPDATE,
                            jnp.where(phase_done & (phase == EVAL), RECORD, pending))
    busy_next = jnp.where(to_grad, lanes < nt, busy_next)
    sub_next = jnp.where(to_grad, lanes, sub_next)

    # a sub-lane not inside a rollout holds a fresh start
    env_reset = jax.vmap(lambda uu: task.reset(uu, p["task"], k))(u_reset)
    row_reset = jax.vmap(lambda e: jnp.asarray(task.row(e, p["task"]), jnp.int32))(env_reset)
    env_state = where_lanes(mid, env2, env_reset)
    ints = jnp.stack([
        jnp.where(mid, s2, row_reset),
        jnp.where(mid, t1, 0),
        busy_next.astype(jnp.int32), sub_next,
        ints[:, I_EVTR] + (eval_end & trunc).astype(jnp.int32),
        ints[:, I_TRUNC] + (fin & trunc & (phase != EVAL)).astype(jnp.int32),
        ints[:, I_STEPS] + busy.astype(jnp.int32),
    ], axis=1)
    # evaluation sums: the return of the task's rewards, and the ELBO terms of the rollout
    ret_task = jnp.where(p["psi"] == 2, floats[:, F_RETTASK] + disc0 * r, ret)
    und = floats[:, F_UND] + r
    kl_sum = floats[:, F_KLSUM] + kl_t
    h_sum = floats[:, F_HSUM] + h_t
    t1f = t1.astype(jnp.float32)
    floats = jnp.stack([
        jnp.where(mid, ret, 0.0),
        jnp.where(mid, disc0 * gamma, 1.0),
        floats[:, F_EVACC] + jnp.where(eval_end, ret_task, 0.0),
        jnp.where(mid, kl_sum, 0.0),
        jnp.where(mid, h_sum, 0.0),
        floats[:, F_EVKL] + jnp.where(eval_end, kl_sum, 0.0),
        floats[:, F_EVH] + jnp.where(eval_end, h_sum, 0.0),
        floats[:, F_EVHT] + jnp.where(eval_end, h_sum / t1f, 0.0),
        jnp.where(mid, ret_task, 0.0),
        jnp.where(mid, und, 0.0),
        floats[:, F_EVUND] + jnp.where(eval_end, und, 0.0),
    ], axis=1)
    return StepCarry(mem, G, E, R_traj, X, T_traj, env_state, ints,
                      jnp.stack([new_phase, new_pending]).astype(jnp.int32), floats)


def block_noise(key, superblock_idx, n_actions: int, rows: int, sub_lanes: int = 1):
    """The random numbers of one superblock, ``[rows, (W + 1) A + 2 W]`` with ``W = sub_lanes``:
    per row ``zeta`` of each sub-lane (``W x A``), ``zeta'`` for the expected-SARSA target of the
    acting episode (``A``, on sub-lane 0 only) (standard normal), then the action's uniform and
    the reset's uniform of each sub-lane (``W x 2``, in [0, 1)), from
    ``fold_in(key, superblock_idx)``. (With ``W = 1``: ``[zeta, zeta', u, u_reset]``.)

    Drawn once per superblock (``noise_blocks * block`` steps): the RNG has a per-call cost,
    which dominates when it is drawn every step and is still sizeable when drawn every block.
    """
    k = jax.random.fold_in(key, superblock_idx)
    kn, ku = jax.random.split(k)
    normals = jax.random.normal(kn, (rows, (sub_lanes + 1) * n_actions), jnp.float32)
    unif = jax.random.uniform(ku, (rows, 2 * sub_lanes), jnp.float32)
    return jnp.concatenate([normals, unif], axis=1)


def split_noise(row, n_actions: int, sub_lanes: int):
    """One row of :func:`block_noise` -> ``zeta [W, A], zeta' [A], u [W], u_reset [W]``."""
    A, W = n_actions, sub_lanes
    u = row[(W + 1) * A:].reshape(W, 2)
    return row[:W * A].reshape(W, A), row[W * A:(W + 1) * A], u[:, 0], u[:, 1]

