"""PSRL (the review's Algorithm 6) and value-equivalent rate-distortion sampling (Algorithm 7).

A run is one ``lax.scan`` over episodes (:func:`make_run`), vmapped over seeds x beta by the
caller. Episode ``k`` of either agent (keys from ``fold_in(seed_key, k)``, so both agents of a
seed draw the same posterior samples and face the same environment noise):

* **PSRL**: draw ``z`` uniform in ``[Z]`` and ``M_z ~ p_k(M*)`` (the ``z``-th of the Z samples
  the rate-distortion agent would draw), plan ``pi* = argmax Q*_{M_z}`` by exact finite-horizon
  value iteration, act on it for the ``H`` steps, update the conjugate posterior.
* **VE-PSRL** (Algorithm 7, Arumugam & Van Roy 2022): draw ``M_1..M_Z ~ p_k(M*)``; the
  distortion ``d(M_i, M_j) = max_s max_{(pi, V) in Pi x V} (B^pi_{M_i} V(s) - B^pi_{M_j} V(s))^2``
  (:func:`distortion`); Blahut-Arimoto at ``beta`` (the project's
  :func:`dra_jax.bandits.agents.blahut_arimoto`, warm-started from the previous episode's
  marginal); draw ``z`` uniform (standing in for ``M*``) and ``j ~ delta(.|z)``;
  act optimally in ``M_j``. As ``beta -> inf`` the channel is the identity, ``j = z``: PSRL with the
  very same sample. As ``beta -> 0`` the channel ignores ``z``: one model for all.

Warm start: slot ``j`` of the channel means "the sample of rank ``j`` by optimal value
``rho . V*_{M}(h=1)``" (samples are sorted each episode), so the marginal over slots of the last
episode is a meaningful start for the next one; it is mixed with ``warm_mix`` of the uniform so
no slot starts at zero (BA cannot revive a slot of zero mass).

Classes (static): ``pi_class`` ``"all"`` (every deterministic decision rule) or ``"optimal"``
(the Z samples' optimal decision rules at every step); ``value_class`` ``"optimal"`` (the
samples' optimal values ``V*_{M_k}(h=1)``, of ``n_values`` samples evenly spaced in rank of
``rho . V*``; all Z if 0) or ``"box"``
(every ``V`` in ``[0, H]^S``). Since ``B^pi V(s)`` depends on ``pi`` only through ``pi(s)``,
the max over a class of deterministic rules is a max over the actions the class uses at ``s``:
no enumeration of ``A^S`` policies is needed (a test checks this against brute force).

Regret of an episode: ``rho . (V*_{M*} - V^pi_{M*})`` at ``h = 1``, exact in the true MDP.
Rate of an episode (nats): VE-PSRL the channel's ``I(Z; J)`` on the Z samples; PSRL the rate of
its target ``M*`` on the same Z samples with the identity channel, ``log Z`` (the plug-in
estimator's ceiling; the posterior is continuous, so ``H_k(M*)`` itself is infinite).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dra_jax.bandits import agents as ba
from dra_jax.envs import episodic as env

AGENTS = ("psrl", "vepsrl")
PI_CLASSES = ("all", "optimal")
VALUE_CLASSES = ("optimal", "box")


# --------------------------------------------------------------------------- distortion


def bellman_table(mdps: env.MDP, succ, values: jax.Array) -> jax.Array:
    """``W[m, s, a, v] = R_m(s, a) + sum_k P_m(s, a, k) V_v(succ[s, a, k])``: the Bellman
    update ``B^pi_{M_m} V_v(s)`` of every rule with ``pi(s) = a`` (``values [nV, S]``)."""
    vs = values[:, jnp.asarray(succ)]  # [nV, S, A, K]
    return mdps.R[..., None] + jnp.einsum("msak,vsak->msav", mdps.P, vs)


def distortion(mdps: env.MDP, succ, values: jax.Array, action_mask: jax.Array) -> jax.Array:
    """The value-equivalence distortion ``d [Z, Z]`` for a finite value class ``values [nV, S]``
    and the deterministic rules using actions ``action_mask [S, A]`` at each state:
    ``d(i, j) = max_{s, a in mask(s), v} (W_i - W_j)[s, a, v]^2`` (:func:`bellman_table`)."""
    W = bellman_table(mdps, succ, values)
    W = jnp.where(action_mask[None, :, :, None], W, 0.0).reshape(W.shape[0], -1)
    # max_l (W_i - W_j)_l, a few rows at a time (a [Z, Z, L] temporary per run would not fit
    # a vmapped sweep); the min is -hi.T
    hi = lax.map(lambda w: jnp.max(w[None, :] - W, axis=-1), W, batch_size=8)
    gap = jnp.maximum(hi, hi.T)
    return gap * gap


def box_distortion(mdps: env.MDP, H: int, action_mask: jax.Array) -> jax.Array:
    """The distortion for ``V`` ranging over the box ``[0, H]^S``: the largest ``|dR + dP.V|``
    over the box is ``|dR| + H * TV(P_i, P_j)`` per ``(s, a)`` (``dP`` sums to 0; the
    candidates ``succ`` are shared by all models, so TV is a sum over candidates)."""

    def row(m):
        P_i, R_i = m
        tv = 0.5 * jnp.sum(jnp.abs(P_i[None] - mdps.P), axis=-1)
        g = jnp.where(action_mask, jnp.abs(R_i[None] - mdps.R) + H * tv, 0.0)
        return jnp.max(g, axis=(-2, -1))

    m = lax.map(row, (mdps.P, mdps.R), batch_size=8)
    return m * m


# --------------------------------------------------------------------------- runs


class Hyper(NamedTuple):
    """Traced per-run values."""

    beta: jax.Array  # rate-distortion Lagrange multiplier (vepsrl)
    ba_tol: jax.Array
    alpha0: jax.Array  # Dirichlet prior concentration
    r_a: jax.Array  # Beta prior of the rewards
    r_b: jax.Array
    warm_mix: jax.Array  # weight of the uniform in the warm start


def make_hyper(beta=1.0, ba_tol=1e-4, alpha0=1.0, r_a=1.0, r_b=1.0, warm_mix=1e-3) -> Hyper:
    return Hyper(*(jnp.asarray(v, jnp.float32) for v in (beta, ba_tol, alpha0, r_a, r_b, warm_mix)))


class Static(NamedTuple):
    agent: str
    H: int
    episodes: int
    z_samples: int = 64
    pi_class: str = "all"
    value_class: str = "optimal"
    n_values: int = 0  # samples whose optimal values form the value class (0: all Z)
    ba_max_iter: int = 100
    ba_loop: str = "while"
    warm_start: bool = True


class RunOut(NamedTuple):
    """Per-episode curves ``[episodes]`` and totals."""

    regret: jax.Array
    rate: jax.Array
    distortion: jax.Array  # expected distortion of the channel (nan for psrl)
    iters: jax.Array  # BA iterations (0 for psrl)
    capped: jax.Array
    gap: jax.Array  # BA's duality gap: the channel's I + beta D is within it of the optimum (0 for psrl)
    moved: jax.Array  # j != z: the agent pursued another sample than its stand-in for M*
    cum_regret: jax.Array
    cum_rate: jax.Array
    v_star: jax.Array  # rho . V*_{M*}(h=1)


def value_slots(st: Static):
    """Slots (ranks by optimal value) whose optimal values form the value class: ``n_values``
    evenly spaced ranks, all ``Z`` when ``n_values`` is 0."""
    n = st.n_values or st.z_samples
    return jnp.asarray(np.round(np.linspace(0, st.z_samples - 1, n)).astype(np.int32))


def _plan_values(st: Static, succ, mdps: env.MDP, rho):
    Q, V, pi = jax.vmap(lambda m: env.value_iteration(m, succ, st.H))(mdps)
    return Q, V, pi, V[:, 0] @ rho


def make_run(st: Static, struct: env.Structure):
    """``run(key, hp, true_mdp) -> RunOut``: one run as a ``lax.scan`` over episodes. The
    posterior samples of episode ``k`` come from ``fold_in(key, k)`` alone (sample ``i`` from a
    further ``fold_in(., i)``), the environment noise from another branch of ``key``: runs of
    the same seed share both, whatever the agent and beta."""
    if st.agent not in AGENTS:
        raise ValueError(f"unknown agent {st.agent!r}; expected one of {AGENTS}")
    succ = jnp.asarray(struct.succ)
    rho = jnp.asarray(struct.rho)
    Z, H = st.z_samples, st.H
    S, A, _ = struct.succ.shape
    log_z = jnp.log(jnp.float32(Z))

    def run(key, hp: Hyper, true: env.MDP) -> RunOut:
        k_agent, k_env = jax.random.split(key)
        _, V_true, _ = env.value_iteration(true, succ, H)
        v_star = V_true[0] @ rho
        belief0 = env.prior_belief(struct, hp.alpha0, hp.r_a, hp.r_b)

        def episode(carry, k):
            belief, q_prev = carry
            kk = jax.random.fold_in(k_agent, k)
            k_samp, k_z, k_pick = jax.random.split(kk, 3)
            z = jax.random.randint(k_z, (), 0, Z)
            nan = jnp.float32(jnp.nan)
            if st.agent == "psrl":
                m = env.sample_mdp(jax.random.fold_in(k_samp, z), belief)
                _, _, pi = env.value_iteration(m, succ, H)
                rate, dist, iters, capped, moved = log_z, nan, jnp.int32(0), False, False
                gap = jnp.float32(0.0)
                q_next = q_prev
            else:
                mdps = jax.vmap(lambda i: env.sample_mdp(jax.random.fold_in(k_samp, i), belief)
                                )(jnp.arange(Z))
                _, V, pis, val = _plan_values(st, succ, mdps, rho)
                order = jnp.argsort(val)  # slot -> sample
                mdps_s = jax.tree.map(lambda x: x[order], mdps)
                if st.pi_class == "all":
                    mask = jnp.ones((S, A), bool)
                else:
                    mask = jnp.any(jax.nn.one_hot(pis, A, dtype=bool), axis=(0, 1))
                if st.value_class == "box":
                    d = box_distortion(mdps_s, H, mask)
                else:
                    d = distortion(mdps_s, succ, V[order][value_slots(st), 0], mask)
                uniform = jnp.full((Z,), 1.0 / Z)
                q0 = (1.0 - hp.warm_mix) * q_prev + hp.warm_mix * uniform if st.warm_start else uniform
                res = ba.blahut_arimoto(d, hp.beta, hp.ba_tol, st.ba_max_iter, st.ba_loop, q0=q0)
                slot_z = jnp.argmax(order == z)
                slot_j = jax.random.categorical(k_pick, res.log_delta[slot_z])
                j = order[slot_j]
                pi = pis[j]
                rate, dist, iters, capped, gap = res.rate, res.distortion, res.iters, res.capped, res.gap
                moved = j != z
                q_next = jnp.exp(res.log_q)

            # act for H steps in the true MDP and update the posterior
            u = jax.random.uniform(jax.random.fold_in(k_env, k), (H + 1, 2))
            s0 = env.sample_start(rho, u[H, 0])

            def act(c, xs):
                b, s = c
                h, uu = xs
                a = pi[h, s]
                kidx, s2, r = env.step_true(true, succ, s, a, uu[0], uu[1])
                return (env.update_belief(b, s, a, kidx, r), s2), r

            (belief, _), _ = lax.scan(act, (belief, s0), (jnp.arange(H), u[:H]))
            regret = v_star - env.policy_values(true, succ, pi)[0] @ rho
            out = (regret, rate, dist, iters, jnp.asarray(capped), gap, jnp.asarray(moved))
            return (belief, q_next), out

        q_init = jnp.full((Z,), 1.0 / Z, jnp.float32)
        _, (reg, rate, dist, iters, capped, gap, moved) = lax.scan(
            episode, (belief0, q_init), jnp.arange(st.episodes))
        return RunOut(reg, rate, dist, iters, capped, gap, moved, jnp.sum(reg), jnp.sum(rate),
                      v_star)

    return run
