"""Fittable agents of a sequential tabular task (the grid-world): the observed transition
``(s, a, r, s', done)`` updates the means, and DRA's sigma moves once per episode from its own
gradient rollouts in the task's known dynamics (Patel et al. 2020, Algorithm 1, as
:mod:`dra_jax.lane.step` runs it).

Per observed step (every kind reads ``theta`` in :data:`dra_jax.fitting.models.PARAMS` order,
``gamma`` included):

* the choice probability is that of the stimulus-response models
  (:func:`dra_jax.fitting.models.chosen_prob`: soft Thompson marginalized over fixed zeta nodes,
  or with ``fit.zeta = "rqmc"`` over the lane's nodes of that step, :mod:`dra_jax.fitting.zeta`,
  keyed by the subject's own step index; ``qlearn``: ``softmax(beta * q[s])``);
* the means move by expected SARSA (Algorithm 1 l. 6-9, the engine's ``lane_step._step``):
  ``q[s, a] += alpha_q * (r + gamma * (1 - done) * sum_a' p'(a') q[s', a'] - q[s, a])``. For
  ``dra``, ``dra_equal`` and ``lam0`` ``p' = softmax(beta * (q[s'] + zeta' * sigma[s']))`` with
  the agent's OWN draw ``zeta' ~ N(0, I)``, as in the engine: latent randomness, so ``lam0`` is
  stochastic on this task (it needs particles, unlike on the one-step task, whose target has
  no next state). ``qlearn`` is expected SARSA under its own softmax ``p' = softmax(beta *
  q[s'])``: deterministic, one particle is exact.

At the end of an episode (``done``, a truncation, or the block's last step) ``dra`` and
``dra_equal`` run ``n_traj`` gradient rollouts from the task's start state under the current
memories (q after the episode, sigma before its update; the engine's GRAD phase): at each step
``zeta ~ N(0, I)``, ``a ~ softmax(beta * (q[s] + zeta * sigma[s]))``, ``s'`` from the task's
tables, capped at ``max_steps``, accumulating ``Psi * beta * zeta * (onehot(a) - pi)`` (Eq. 5;
``Psi = q[s, a] - mean_a q[s, a]`` (A) or ``q[s, a]`` (Q)). Then ``sigma`` ascends
``G / n_traj - lam * dKL/dsigma`` (Eq. 6) on the learnable memories by the optax optimizer,
clipped to ``[sigma_min, sigma_max]`` (equal precision: every learnable memory gets the sum).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax.core import memory, policy
from dra_jax.envs.tabular import TabularTask
from dra_jax.fitting import models, particle, zeta
from dra_jax.runtime.devices import jit_over_runs

GAMMA = models.PARAMS.index("gamma")
_ROLL = 0x40000000  # stream tag of an episode's rollouts: fold_in(key, _ROLL + episode)


class SeqStatic(NamedTuple):
    """The compiled program's shape: the per-step model (``base``), the maze text (the agent's
    internal model of the dynamics) and the rollout cap."""

    base: models.Static
    maze: tuple[str, ...]
    max_steps: int = 500


@functools.lru_cache(maxsize=None)
def task_of(maze: tuple[str, ...]) -> TabularTask:
    """The maze as a :class:`TabularTask` (rewards -1 a step, +10 at the goal: the paper's)."""
    return TabularTask.from_maze(list(maze), name="gridworld")


def stochastic(kind: str) -> bool:
    """Whether the latent state is random given the data on a sequential task."""
    return kind != "qlearn"


def q_update(st: models.Static, th, lat: models.Latent, s, a, r, s2, done, zeta2) -> models.Latent:
    """Expected SARSA on one observed step (one particle; ``zeta2 [A]`` its own ``zeta'``)."""
    beta, alpha_q, gamma = th[1], th[2], th[GAMMA]
    q_next = lat.q[s2]
    if st.kind == "qlearn":
        p2 = policy.probs(q_next, jnp.zeros_like(q_next), jnp.zeros_like(q_next), beta)
    else:
        p2 = policy.probs(q_next, lat.sigma[s2], zeta2, beta)
    target = r + gamma * (1.0 - done.astype(jnp.float32)) * memory.fixed_order_sum(p2 * q_next)
    q = lat.q
    if st.forget:  # the means decay toward 0 (their initial value) on every step
        q = q * (1.0 - th[models.FORGET])
    lat = lat._replace(q=q.at[s, a].add(alpha_q * (target - q[s, a])))
    return lat._replace(prev=models.choice_onehot(a, lat.prev)) if st.stick else lat


def _lanes(f):
    return jax.vmap(jax.vmap(f))


def sigma_step(sst: SeqStatic, theta, lat: models.Latent, keys, ep, end) -> models.Latent:
    """Gradient rollouts and the sigma update of every lane whose episode ends (``end [N, C]``);
    ``lat`` leaves ``[N, C, P, ...]``, ``keys [N, C]``, ``ep [N, C]`` the lane's own episode
    index (its rollouts' noise stream). One ``while_loop`` over rollout steps for the batch,
    until every trajectory of an ending lane has reached the goal or ``max_steps``."""
    st = sst.base
    if not models.STOCHASTIC[st.kind] or st.kind == "lam0":
        return lat
    task = task_of(sst.maze)
    nxt = jnp.asarray(task.tables.next_state[0])
    term = jnp.asarray(task.tables.terminal[0])
    learn = jnp.asarray(task.learnable)
    n, c, p = lat.q.shape[:3]
    j, na = st.n_traj, st.n_actions
    start = jnp.int32(task.tables.start)
    if np.count_nonzero(task.tables.start_probs) != 1:
        raise ValueError("gradient rollouts need a single start state")

    def lane_step(th, q, sigma, s, run, g, key, e, i):
        k = jax.random.fold_in(jax.random.fold_in(key, _ROLL + e), i)
        k1, k2 = jax.random.split(k)
        z = models.normal_box_muller(k1, (p, j, na))
        u = jax.random.uniform(k2, (p, j))
        beta = th[1]
        qr = jax.vmap(lambda qq, ss: qq[ss])(q, s)  # [P, J, A]
        sr = jax.vmap(lambda xx, ss: xx[ss])(sigma, s)
        pr = policy.probs(qr, sr, z, beta)
        a = policy.sample_action(pr, u[..., None])
        onehot = jax.nn.one_hot(a, na, dtype=jnp.float32)
        q_sa = memory.fixed_order_sum(qr * onehot, axis=-1)
        psi = q_sa - memory.fixed_order_sum(qr, axis=-1) / na if st.psi == "A" else q_sa
        contrib = jnp.where(run[..., None], psi[..., None] * beta * z * (onehot - pr), 0.0)
        g = jax.vmap(lambda gg, ss, cc: gg.at[ss].add(cc))(g, s, contrib)
        s2 = nxt[s, a]
        run = run & ~term[s2] & (i + 1 < sst.max_steps)
        return jnp.where(run, s2, s), run, g

    def body(carry):
        i, s, run, g = carry
        s, run, g = _lanes(lambda th, q, sg, ss, rr, gg, kk, ee: lane_step(th, q, sg, ss, rr, gg,
                                                                           kk, ee, i))(
            theta, lat.q, lat.sigma, s, run, g, keys, ep)
        return i + 1, s, run, g

    s0 = jnp.full((n, c, p, j), start, jnp.int32)
    run0 = jnp.broadcast_to(end[:, :, None, None], (n, c, p, j))
    g0 = jnp.zeros_like(lat.q)
    _, _, _, g = jax.lax.while_loop(lambda cr: (cr[0] < sst.max_steps) & jnp.any(cr[2]), body,
                                    (jnp.int32(0), s0, run0, g0))

    def update(th, q, sigma, opt, gg):
        lam, sigma_base = th[0], th[4]
        asc = jnp.where(learn, gg / j - lam * memory.kl_grad(sigma, sigma_base), 0.0)
        if st.kind == "dra_equal":
            asc = jnp.where(learn, memory.fixed_order_sum(asc), 0.0)
        upd, opt2 = models.optimizer(st, th[3]).update(-asc, opt, sigma)
        sig2 = jnp.clip(optax.apply_updates(sigma, upd), st.sigma_min, st.sigma_max)
        return sig2, opt2

    per_particle = jax.vmap(update, in_axes=(None, 0, 0, 0, 0))
    sig2, opt2 = _lanes(per_particle)(theta, lat.q, lat.sigma, lat.opt, g)
    new = lat._replace(sigma=sig2, opt=opt2)
    def sel(x1, x0):
        return jnp.where(end.reshape(end.shape + (1,) * (x1.ndim - 2)), x1, x0)

    return jax.tree.map(sel, new, lat)


# --------------------------------------------------------------------------- the particle filter


class SeqTrials(NamedTuple):
    """Subjects' steps ``[N, T]``, episode-aligned: episode k of every subject starts at the
    same position (padding after a shorter episode), so the rollouts of the k-th episodes run in
    one call (:mod:`dra_jax.fitting.data.sequential`)."""

    s: jax.Array  # int32 state
    a: jax.Array  # int32 action, -1 = missed
    r: jax.Array  # float32 reward
    s2: jax.Array  # int32 next state
    done: jax.Array  # bool: the next state is terminal (the target does not bootstrap)
    end: jax.Array  # bool: an episode ends here (sigma update after this position)
    new_block: jax.Array  # bool: the first step of a block (memories reset)
    valid: jax.Array  # bool: a real step (False on padding)
    t_own: jax.Array  # int32: the step's index among the subject's own rows (noise stream)
    ep_own: jax.Array  # int32: the subject's own episode index (rollout noise stream)


def _filter(sst: SeqStatic, n_particles: int, ess_threshold: float, theta, tr: SeqTrials, keys):
    """The bootstrap filter of :mod:`dra_jax.fitting.particle` on a sequential task: weigh by
    ``P(a | s)``, resample systematically when ESS < threshold, move each particle by expected
    SARSA on the observed step (its own zeta'), and at an episode's end the rollouts and the
    sigma update (:func:`sigma_step`, under a ``lax.cond`` taken only where some lane ends)."""
    st = sst.base
    p = n_particles
    n, c = theta.shape[:2]
    lat0 = _lanes(functools.partial(models.init, st))(theta)
    lat_p = jax.tree.map(lambda x: jnp.broadcast_to(x[:, :, None], (n, c, p) + x.shape[2:]), lat0)
    logw0 = jnp.full((n, c, p), -jnp.log(float(p)), jnp.float32)

    def weigh(th, key, t, lat, logw, ll, s, a, new_block, valid):
        lat = jax.tree.map(lambda x, x0: jnp.where(new_block, x0, x), lat, models.init(st, th))
        logw = jnp.where(new_block, -jnp.log(float(p)), logw)
        nodes = zeta.trial_nodes(st.n_zeta, st.n_actions, key, t) if st.zeta == "rqmc" else None
        w = jax.vmap(functools.partial(models.chosen_prob, st, th, nodes=nodes),
                     in_axes=(0, None, None))(lat, s, jnp.maximum(a, 0))
        return (lat,) + particle.reweigh(logw, ll, w, valid & (a >= 0), ess_threshold)

    def resample(key, do, lat, logw, n_res):
        idx, logw = particle.resample_indices(key, do, logw)
        return jax.tree.map(lambda x: x[idx], lat), logw, n_res + do.astype(jnp.int32)

    def move(th, key, lat, obs, s, a, r, s2, done):
        zeta2 = models.normal_box_muller(key, (p, st.n_actions))
        new = jax.vmap(functools.partial(q_update, st, th),
                       in_axes=(0, None, None, None, None, None, 0))(
            lat, s, jnp.maximum(a, 0), r, s2, done, zeta2)
        return jax.tree.map(lambda x1, x0: jnp.where(obs, x1, x0), new, lat)

    def step(carry, xs):
        lat, logw, ll, n_res = carry
        s, a, r, s2, done, end, new_block, valid, t_own, ep_own = (
            jnp.broadcast_to(x[:, None], (n, c) + x.shape[1:]) for x in xs)
        lat, logw, ll, do = _lanes(weigh)(theta, keys, t_own, lat, logw, ll, s, a, new_block,
                                          valid)
        kt = _lanes(lambda k, t: jax.random.split(jax.random.fold_in(k, t)))(keys, t_own)
        if p > 1:
            lat, logw, n_res = jax.lax.cond(jnp.any(do), _lanes(resample),
                                            lambda k, d, x, w, m: (x, w, m),
                                            kt[:, :, 0], do, lat, logw, n_res)
        obs = valid & (a >= 0)
        lat = _lanes(move)(theta, kt[:, :, 1], lat, obs, s, a, r, s2, done)
        lat = jax.lax.cond(jnp.any(end), lambda x: sigma_step(sst, theta, x, keys, ep_own, end),
                           lambda x: x, lat)
        return (lat, logw, ll, n_res), None

    xs = tuple(jnp.moveaxis(jnp.asarray(x), 1, 0) for x in tr)
    init = (lat_p, logw0, particle.ll_zeros((n, c)), jnp.zeros((n, c), jnp.int32))
    (_, _, ll, n_res), _ = jax.lax.scan(step, init, xs)
    return particle.ll_value(ll), n_res


@functools.lru_cache(maxsize=64)
def _compiled(sst: SeqStatic, n_particles: int, ess_threshold: float, n_devices: int):
    """The jitted filter, its subjects axis split over ``n_devices`` devices (as
    :func:`dra_jax.fitting.particle._compiled`; episodes stay aligned within every device)."""
    return jit_over_runs(functools.partial(_filter, sst, n_particles, ess_threshold), n_devices,
                         (1, 1, 1))


def loglik(sst: SeqStatic, n_particles: int, ess_threshold: float, theta, trials: SeqTrials,
           keys, n_devices: int = 1) -> tuple[jax.Array, jax.Array]:
    """Log-likelihood estimates ``[N, C]`` and resampling counts of N subjects x C candidates
    (``theta [N, C, len(PARAMS)]``, ``keys [N, C]``), as :func:`dra_jax.fitting.particle.loglik`
    (``n_devices``: the subjects split over devices)."""
    return particle.call_split(_compiled(sst, n_particles, float(ess_threshold), n_devices),
                               n_devices, theta, trials, keys)
