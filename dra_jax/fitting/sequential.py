"""Fittable agents of a sequential tabular task (the grid-world): the observed transition
``(s, a, r, s', done)`` updates the means, and DRA's sigma moves once per episode from its own
gradient rollouts in the task's known dynamics (Patel et al. 2020, Algorithm 1, as
:mod:`dra_jax.lane_step` runs it).

Per observed step (every kind reads ``theta`` in :data:`dra_jax.fitting.models.PARAMS` order,
``gamma`` included):

* the choice probability is that of the stimulus-response models
  (:func:`dra_jax.fitting.models.chosen_prob`: soft Thompson marginalized over fixed zeta nodes;
  ``qlearn``: ``softmax(beta * q[s])``);
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

The likelihood integrates over those draws with a particle filter (:func:`loglik`): the
bootstrap filter by default; ``SeqStatic.rqmc`` draws the particles' zeta' as one randomized
Sobol set a step, ``SeqStatic.n_guide`` twists the filter by the next observed choices of
every state (:func:`guided_move`). Both keep ``exp(loglik)`` unbiased; on the Fig. 1 maze
neither lowered the Monte Carlo SD per CPU second (README, "Fitting sequential tasks").
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax import memory, policy
from dra_jax.batching import jit_over_runs
from dra_jax.envs.tabular import TabularTask
from dra_jax.fitting import models, particle

GAMMA = models.PARAMS.index("gamma")
_ROLL = 0x40000000  # stream tag of an episode's rollouts: fold_in(key, _ROLL + episode)


class SeqStatic(NamedTuple):
    """The compiled program's shape: the per-step model (``base``), the maze text (the agent's
    internal model of the dynamics) and the rollout cap."""

    base: models.Static
    maze: tuple[str, ...]
    max_steps: int = 500
    n_guide: int = 0  # candidates of the twisted zeta' proposal (0: the bootstrap filter)
    n_ahead: int = 2  # observed choices per state in the twist (1 .. seqdata.AHEAD)
    rqmc: bool = False  # bootstrap move: the particles' zeta' one randomized Sobol set a step


@functools.lru_cache(maxsize=None)
def task_of(maze: tuple[str, ...]) -> TabularTask:
    """The maze as a :class:`TabularTask` (rewards -1 a step, +10 at the goal: the paper's)."""
    return TabularTask.from_maze(list(maze), name="gridworld")


def stochastic(kind: str) -> bool:
    """Whether the latent state is random given the data on a sequential task."""
    return kind != "qlearn"


def q_target(st: models.Static, th, lat: models.Latent, r, s2, done, zeta2):
    """The expected-SARSA target ``r + gamma (1 - done) sum_a' p'(a') q[s', a']`` of one
    particle; ``zeta2 [..., A]`` its own ``zeta'`` draw(s) (leading axes: candidates)."""
    beta, gamma = th[1], th[GAMMA]
    q_next = lat.q[s2]
    if st.kind == "qlearn":
        p2 = policy.probs(q_next, jnp.zeros_like(q_next), jnp.zeros_like(q_next), beta)
    else:
        p2 = policy.probs(q_next, lat.sigma[s2], zeta2, beta)
    return r + gamma * (1.0 - done.astype(jnp.float32)) * memory.fixed_order_sum(
        p2 * q_next, axis=-1)


def q_update(st: models.Static, th, lat: models.Latent, s, a, r, s2, done, zeta2) -> models.Latent:
    """Expected SARSA on one observed step (one particle; ``zeta2 [A]`` its own ``zeta'``)."""
    target = q_target(st, th, lat, r, s2, done, zeta2)
    return lat._replace(q=lat.q.at[s, a].add(th[2] * (target - lat.q[s, a])))


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
        upd, opt2 = models._optimizer(st, th[3]).update(-asc, opt, sigma)
        sig2 = jnp.clip(optax.apply_updates(sigma, upd), st.sigma_min, st.sigma_max)
        return sig2, opt2

    per_particle = jax.vmap(update, in_axes=(None, 0, 0, 0, 0))
    sig2, opt2 = _lanes(per_particle)(theta, lat.q, lat.sigma, lat.opt, g)
    new = models.Latent(lat.q, sig2, opt2)
    def sel(x1, x0):
        return jnp.where(end.reshape(end.shape + (1,) * (x1.ndim - 2)), x1, x0)

    return jax.tree.map(sel, new, lat)


# --------------------------------------------------------------------------- the particle filter


class SeqTrials(NamedTuple):
    """Subjects' steps ``[N, T]``, episode-aligned: episode k of every subject starts at the
    same position (padding after a shorter episode), so the rollouts of the k-th episodes run in
    one call (:mod:`dra_jax.fitting.seqdata`)."""

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
    ahead: jax.Array  # [N, T, M] int32: actions of the state's next M observed visits, -1 = none
    ahead_begin: jax.Array  # [N, E, S, M]: per own episode and state, from the episode's start
    ahead_end: jax.Array  # [N, E, S, M]: per own episode and state, after the episode's end


@functools.lru_cache(maxsize=None)
def _sobol(k: int, d: int) -> np.ndarray:
    """``k`` scrambled Sobol points in ``[0, 1)^d`` (fixed seed): the candidates' point set,
    shifted by a fresh uniform per particle and step (Cranley-Patterson rotation)."""
    from scipy.stats import qmc

    return qmc.Sobol(d, scramble=True, seed=1).random(k).astype(np.float32)


def candidate_zetas(key, n_particles: int, k: int, na: int) -> jax.Array:
    """``zeta' [P, k, A]``: for each particle ``k`` randomized-QMC normals, the fixed Sobol set
    (:func:`_sobol`) rotated by one uniform shift, then Box-Muller on coordinate pairs. Every
    candidate is marginally N(0, I_A) (a rotated point is uniform on the cube, Box-Muller maps
    uniform pairs to normal pairs); the k candidates of a particle are dependent (stratified)."""
    d = 2 * ((na + 1) // 2)
    shift = jax.random.uniform(key, (n_particles, 1, d))
    u = jnp.asarray(_sobol(k, d))[None] + shift
    u = u - jnp.floor(u)  # [P, k, d] in [0, 1)
    rad = jnp.sqrt(-2.0 * jnp.log1p(-u[..., 0::2]))
    ang = (2.0 * np.pi) * u[..., 1::2]
    return jnp.concatenate([rad * jnp.cos(ang), rad * jnp.sin(ang)], -1)[..., :na]


def _log_chosen(st: models.Static, th, lat: models.Latent, s, acts) -> jax.Array:
    """``sum_m log P(acts[m] | s)`` over the actions ``acts [M]`` (-1 = none: no term), one
    particle, or ``[*B]`` when ``lat``'s arrays carry trailing candidate axes."""
    out = 0.0
    for m in range(acts.shape[0]):  # static, M small
        p = models.chosen_prob(st, th, lat, s, jnp.maximum(acts[m], 0))
        out = out + jnp.where(acts[m] >= 0, jnp.log(jnp.maximum(p, 1e-30)), 0.0)
    return out


def log_twist(st: models.Static, th, lat: models.Latent, ahead) -> jax.Array:
    """``log psi`` of one particle over every state: ``sum_s sum_m log P(ahead[s, m] | s)``
    (``ahead [S, M]``, -1 = none) under its current means and sigma."""
    return memory.fixed_order_sum(jax.vmap(
        lambda x, acts: _log_chosen(st, th, lat, x, acts))(jnp.arange(st.n_states), ahead))


def guided_move(st: models.Static, th, lat: models.Latent, s, a, r, s2, done, ahead, zeta2, u):
    """The twisted move of one particle on an observed step ``(s, a)`` whose state's next
    observed choices are ``ahead [M]`` (-1 = none). The twist (Guarniero et al. 2017; Heng et
    al. 2020, "twisted SMC") is ``psi(x) = prod_s prod_m P(ahead_s[m] | s; x)``: the particle's
    probability of the next M observed choices in every state under its current memories.
    ``k`` candidate ``zeta2 [k, A]`` give candidate means ``q_k[s, a]``; the particle keeps
    candidate ``k*`` with probability ``psi_k / sum_j psi_j`` (``psi_k``: the state's factor
    with ``q_k``, one uniform ``u``), and its weight for the step is

        P(a | s) psi_t / psi_{t-1} with the proposal's correction
        = mean_k psi_s(q_k) / prod_{m < M - 1} P(ahead[m] | s; q before the step)

    (``psi_{t-1}``'s factor of ``s`` held ``P(a | s)`` itself and ``ahead[:M - 1]``; the other
    states' factors do not move: only acting in ``s`` changes ``q[s]``). Unbiased for any
    positive twist: the candidates' selection is an extended-space importance sampler
    (proposal ``prod_j p(zeta_j) psi_k* / sum_j psi_j``, target ``p(zeta_k*) / k`` times the
    other candidates' conditional; each candidate is marginally N(0, I),
    :func:`candidate_zetas`), and the twist telescopes (``psi`` = 1 after a block's last
    choice). Returns the moved particle and the log weight."""
    k = zeta2.shape[0]
    target = q_target(st, th, lat, r, s2, done, zeta2)  # [k]
    q_sa = lat.q[s, a] + th[2] * (target - lat.q[s, a])  # [k]
    rows = jnp.where(jnp.arange(st.n_actions)[:, None] == a, q_sa[None], lat.q[s][:, None])
    sig = jnp.broadcast_to(lat.sigma[s][:, None], rows.shape)
    probe = lat._replace(q=rows[None], sigma=sig[None])  # one state, candidates trailing
    lpsi = _log_chosen(st, th, probe, 0, ahead)  # [k]
    mx = jnp.max(lpsi)
    cdf = jnp.cumsum(jnp.exp(lpsi - mx))
    pick = jnp.minimum(jnp.sum(cdf <= u * cdf[-1]), k - 1)
    new = lat._replace(q=lat.q.at[s, a].set(q_sa[pick]))
    den = _log_chosen(st, th, lat, s, ahead[:-1]) if ahead.shape[0] > 1 else 0.0
    return new, mx + jnp.log(cdf[-1] / k) - den


def _filter(sst: SeqStatic, n_particles: int, ess_threshold: float, theta, tr: SeqTrials, keys,
            trace: bool = False):
    """The particle filter of :mod:`dra_jax.fitting.particle` on a sequential task. With
    ``sst.n_guide = k > 0`` (stochastic kinds) it is twisted by the next ``sst.n_ahead``
    observed choices of every state (:func:`guided_move`): the block's first weight is
    ``psi_0`` (the initial memories), each observed step moves a particle by the twisted
    proposal with the weight that :func:`guided_move` returns, and at an episode's end the
    rollouts and sigma update (:func:`sigma_step`) weigh by ``psi(new sigma) / psi(old)``.
    Else the bootstrap filter: one own draw of zeta', weight ``P(a | s)``. Systematic
    resampling where ESS < threshold is decided on observed steps only, before the episode's
    end: an episode ends at its aligned slot's last position, which may be padding after the
    subject's last row, so deciding there would make a subject's numbers depend on its
    batch-mates (the end's weight is folded into the next observed step's decision).
    ``exp(loglik)`` is unbiased either way."""
    st = sst.base
    p = n_particles
    n, c = theta.shape[:2]
    guide = sst.n_guide if stochastic(st.kind) else 0
    m_ahead = sst.n_ahead
    if guide and models.Latent._fields != ("q", "sigma", "opt"):
        # the twist's weights assume P(a | s) reads only q[s] and sigma[s], which only acting
        # in s (and a sigma update) moves; a latent with more (e.g. the previous action) would
        # break the telescoping and bias the estimate
        raise NotImplementedError("n_guide > 0 needs a latent of q, sigma and opt only")
    lat0 = _lanes(functools.partial(models.init, st))(theta)
    lat_p = jax.tree.map(lambda x: jnp.broadcast_to(x[:, :, None], (n, c, p) + x.shape[2:]), lat0)
    logw0 = jnp.full((n, c, p), -jnp.log(float(p)), jnp.float32)
    begin = tr.ahead_begin[..., :m_ahead]
    if guide:  # log psi_0 of every own episode (used where it starts a block) [N, C, E]
        psi0 = jax.vmap(jax.vmap(lambda th, l0, ab: jax.vmap(
            lambda x: log_twist(st, th, l0, x))(ab), in_axes=(0, 0, None)))(theta, lat0, begin)
    else:
        psi0 = jnp.zeros((n, c, begin.shape[1]), jnp.float32)

    def lane(th, key, lat, logw, ll, s, a, r, s2, done, new_block, valid, ahead, lpsi0):
        """Reset at a block's start, weigh and move one lane's particles."""
        lat = jax.tree.map(lambda x, x0: jnp.where(new_block, x0, x), lat, models.init(st, th))
        logw = jnp.where(new_block, -jnp.log(float(p)), logw)
        ll = ll + jnp.where(new_block & valid, lpsi0, 0.0)
        obs = valid & (a >= 0)
        a0 = jnp.maximum(a, 0)
        k_move, k_pick = jax.random.split(key)
        if guide:
            z = candidate_zetas(k_move, p, guide, st.n_actions)
            u = jax.random.uniform(k_pick, (p,))
            new, logg = jax.vmap(functools.partial(guided_move, st, th),
                                 in_axes=(0, None, None, None, None, None, None, 0, 0))(
                lat, s, a0, r, s2, done, ahead, z, u)
        else:
            logg = jnp.log(jnp.maximum(jax.vmap(functools.partial(
                models.chosen_prob, st, th), in_axes=(0, None, None))(lat, s, a0), 1e-30))
            zeta2 = (candidate_zetas(k_move, 1, p, st.n_actions)[0] if sst.rqmc else
                     models.normal_box_muller(k_move, (p, st.n_actions)))
            new = jax.vmap(functools.partial(q_update, st, th),
                           in_axes=(0, None, None, None, None, None, 0))(
                lat, s, a0, r, s2, done, zeta2)
        lat = jax.tree.map(lambda x1, x0: jnp.where(obs, x1, x0), new, lat)
        return (lat,) + _weigh(logw, ll, logg, obs)

    def _weigh(logw, ll, logg, obs):
        lw = logw + logg
        inc = particle._log_sum_exp(lw)
        return jnp.where(obs, lw - inc, logw), ll + jnp.where(obs, inc, 0.0)

    def ending(lat, logw, ll, ep_own, end):
        new = sigma_step(sst, theta, lat, keys, ep_own, end)
        if guide and st.kind in ("dra", "dra_equal"):
            ae = jnp.take_along_axis(tr.ahead_end[..., :m_ahead],
                                     ep_own[:, 0, None, None, None], axis=1)[:, 0]
            twist = jax.vmap(jax.vmap(jax.vmap(functools.partial(log_twist, st),
                                               in_axes=(None, 0, None)), in_axes=(0, 0, None)))
            logg = twist(theta, new, ae) - twist(theta, lat, ae)  # [N, C, P]
            logw, ll = jax.vmap(jax.vmap(_weigh))(logw, ll, logg, end)
        return new, logw, ll

    def resample(key, do, lat, logw, n_res):
        idx, logw = particle.resample_indices(key, do, logw)
        return jax.tree.map(lambda x: x[idx], lat), logw, n_res + do.astype(jnp.int32)

    def step(carry, xs):
        lat, logw, ll, n_res = carry
        s, a, r, s2, done, end, new_block, valid, t_own, ep_own, ahead = (
            jnp.broadcast_to(x[:, None], (n, c) + x.shape[1:]) for x in xs)
        lpsi0 = jnp.take_along_axis(psi0, ep_own[..., None], axis=2)[..., 0]
        kt = _lanes(lambda k, t: jax.random.split(jax.random.fold_in(k, t)))(keys, t_own)
        lat, logw, ll = _lanes(lane)(theta, kt[:, :, 1], lat, logw, ll, s, a, r, s2, done,
                                     new_block, valid, ahead[..., :m_ahead], lpsi0)
        if p > 1:  # (before an episode's end, which may sit on padding: see the docstring)
            ess = 1.0 / memory.fixed_order_sum(jnp.exp(2.0 * logw), axis=-1)
            do = valid & (a >= 0) & (ess < ess_threshold * p)
            lat, logw, n_res = jax.lax.cond(jnp.any(do), _lanes(resample),
                                            lambda k, d, x, w, m: (x, w, m),
                                            kt[:, :, 0], do, lat, logw, n_res)
        lat, logw, ll = jax.lax.cond(jnp.any(end), ending, lambda x, w, l, e, d: (x, w, l),
                                     lat, logw, ll, ep_own, end)
        return (lat, logw, ll, n_res), (ll if trace else None)

    xs = tuple(jnp.moveaxis(jnp.asarray(x), 1, 0) for x in tr[:-2])
    init = (lat_p, logw0, jnp.zeros((n, c), jnp.float32), jnp.zeros((n, c), jnp.int32))
    (_, _, ll, n_res), path = jax.lax.scan(step, init, xs)
    return (ll, n_res, path) if trace else (ll, n_res)


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
