"""Capacity-limited bandit agents: TS, satisficing TS, BLASTS and the one-state DRA agent.

All functions are pure and jittable; a whole bandit run is one compiled loop over time steps
(:func:`make_run`; :func:`make_chunked` gives it in resumable pieces), vmapped over seeds x (beta |
epsilon | lam) by the caller. The algorithms (capacity-limited Bayesian RL review, Sec.
"Experiments"; Arumugam & Van Roy 2021):

* **TS** (Thompson sampling): draw ``theta ~ posterior``, play ``argmax_a theta(a)``.
* **Satisficing TS** (``epsilon >= 0``; Russo & Van Roy 2022): draw ``theta``, play the
  lowest-index arm with ``theta(a) >= max theta - epsilon``; ``epsilon = 0`` is TS.
* **BLASTS** (Blahut-Arimoto satisficing TS, the review's Algorithm 2; ``beta >= 0``, ``Z``
  posterior samples): draw ``theta_1..theta_Z`` (Gaussian bandit: normals by the inverse CDF,
  :func:`dra_jax.envs.bandits.ndtri_normal`); distortion ``d(a, z) = (max theta_z -
  theta_z(a))^2``; Blahut-Arimoto (:mod:`dra_jax.bandits.rate_distortion`) from the last step's
  marginal mixed with ``WARM_MIX`` of the uniform (``Static.ba_warm_start``; else the uniform),
  ``delta(a|z) ∝ q(a) exp(-beta d(a, z))``, ``q(a) = mean_z delta(a|z)`` to a tolerance or an
  iteration cap (:func:`blahut_arimoto`), or no iteration at all where the start's argmax is a
  certified optimal vertex (``Static.ba_vertex``); then draw ``z`` uniformly and ``a ~
  delta(.|z)``.
  Its rate ``I(Z; A) = mean_z sum_a delta(a|z) log(delta(a|z) / q(a))`` (nats).
* **DRA** (Patel et al. 2020, Algorithm 1 on a one-state task): memories ``N(q_a, sigma_a^2)``,
  soft Thompson policy ``softmax(beta (q + zeta sigma))`` (:mod:`dra_jax.core.policy`), ``q`` learned
  from rewards, ``sigma`` by stochastic ascent on ``E[r] - lam KL(N(q, sigma^2) || N(q,
  sigma_base^2))`` with the Eq. 5 score (:mod:`dra_jax.core.gradients`) times ``Psi`` and Eq. 6
  (:func:`dra_jax.core.memory.kl_grad`), clipped to ``[sigma_min, sigma_max]``.

**Information rate of each agent** (``rate`` per step, nats), the x-axis of the regret-vs-rate
figure: the mutual information between the environment and the agent's *learning target* under
the agent's current beliefs, estimated on ``Z`` belief samples (plug-in):

* TS: ``I_t(E; A*) = H_t(A*)`` (A* is a function of E), the entropy of the argmax of posterior
  samples (the review's Fig. 6 quantity for TS);
* satisficing TS: ``I_t(E; A_eps) = H_t(A_eps)``, likewise;
* BLASTS: the Blahut-Arimoto channel's rate ``I_t(E; A~)`` on its ``Z`` samples;
* DRA: the DRA agent keeps no posterior; its belief-like object is the memory distribution
  ``N(q, sigma^2)`` it samples from (soft Thompson with ``beta -> inf`` is TS on that belief).
  Its rate is the TS rate on that belief, ``H(argmax(q + sigma zeta))`` (the paper's
  "choice entropy" in nats, unnormalized). The paper's own cost ``KL(Q || P)`` (nats) is
  reported beside it (``kl``); it measures precision bought against ``N(q, sigma_base^2)``,
  not information about the environment, so it is not put on the same axis.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from dra_jax.bandits.rate_distortion import BA_LOOPS, BAResult, blahut_arimoto, regret_distortion  # noqa: F401 (BA_LOOPS re-exported)
from dra_jax.core import gradients, memory, policy
from dra_jax.envs import bandits as envs

AGENTS = ("ts", "sts", "blasts", "dra")
WARM_MIX = 1e-3  # weight of the uniform in BLASTS's warm start (an arm of zero mass cannot revive)


# --------------------------------------------------------------------------- decision rules


def ts_action(theta: jax.Array) -> jax.Array:
    """Thompson sampling: the argmax of one sampled environment (lowest index on ties)."""
    return jnp.argmax(theta, axis=-1).astype(jnp.int32)


def sts_action(theta: jax.Array, epsilon: jax.Array | float) -> jax.Array:
    """Satisficing TS: the lowest-index arm with ``theta(a) >= max theta - epsilon``."""
    ok = theta >= jnp.max(theta, axis=-1, keepdims=True) - epsilon
    return jnp.argmax(ok, axis=-1).astype(jnp.int32)


def blasts_action(key: jax.Array, ba: BAResult) -> jax.Array:
    """Algorithm 2's last step: ``z`` uniform over the samples, then ``a ~ delta(.|z)``."""
    kz, ka = jax.random.split(key)
    z = jax.random.randint(kz, (), 0, ba.log_delta.shape[0])
    return jax.random.categorical(ka, ba.log_delta[z]).astype(jnp.int32)


def histogram_entropy(actions: jax.Array, n_actions: int) -> jax.Array:
    """Plug-in entropy (nats) of the empirical distribution of integer ``actions``."""
    counts = jnp.zeros((n_actions,), jnp.float32).at[actions].add(1.0)
    p = counts / actions.shape[0]
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def action_histogram(actions: jax.Array, n_actions: int) -> jax.Array:
    """Empirical distribution of integer ``actions``."""
    return jnp.zeros((n_actions,), jnp.float32).at[actions].add(1.0) / actions.shape[0]


def boltzmann_probs(means: jax.Array, temperature: jax.Array | float) -> jax.Array:
    """Boltzmann (softmax) choice over expected rewards at ``temperature`` (utils per nat)."""
    return jax.nn.softmax(means / temperature, axis=-1)


def sts_rate_distortion(theta: jax.Array, epsilon: jax.Array | float):
    """Rate ``I(E; A_eps) = H(A_eps)``, mean distortion and mean reward of satisficing TS's
    target on samples ``theta [Z, K]`` (A_eps is a function of E, so the rate is its entropy)."""
    a = sts_action(theta, epsilon)
    d = regret_distortion(theta)[jnp.arange(theta.shape[0]), a]
    r = theta[jnp.arange(theta.shape[0]), a]
    return histogram_entropy(a, theta.shape[1]), jnp.mean(d), jnp.mean(r)


# --------------------------------------------------------------------------- agent runs


class Hyper(NamedTuple):
    """Traced per-run values (a sweep over them is one vmapped batch)."""

    epsilon: jax.Array  # satisficing TS
    ba_beta: jax.Array  # BLASTS Lagrange multiplier (1 / cost of information)
    ba_tol: jax.Array
    beta: jax.Array  # DRA soft-Thompson inverse temperature
    lam: jax.Array
    sigma_base: jax.Array
    sigma0: jax.Array
    alpha_q: jax.Array
    alpha_sigma: jax.Array
    sigma_min: jax.Array
    sigma_max: jax.Array
    learn_q: jax.Array
    learn_sigma: jax.Array
    equal: jax.Array  # allocation == "equal_sgd": one shared sigma, the mean gradient
    psi_q: jax.Array  # psi == "Q" (else "A")


def make_hyper(**kw) -> Hyper:
    """A :class:`Hyper` with defaults for the keys not given (floats; booleans as bools)."""
    defaults = dict(epsilon=0.0, ba_beta=1.0, ba_tol=1e-4, beta=10.0, lam=0.1, sigma_base=1.0,
                    sigma0=1.0, alpha_q=0.1, alpha_sigma=0.1, sigma_min=0.01, sigma_max=100.0,
                    learn_q=True, learn_sigma=True, equal=False, psi_q=False)
    defaults.update(kw)
    return Hyper(**{k: jnp.asarray(v, jnp.bool_ if isinstance(defaults[k], bool) else jnp.float32)
                    for k, v in defaults.items()})


class Static(NamedTuple):
    """Values that shape the compiled run."""

    agent: str  # ts | sts | blasts | dra
    kind: str  # gaussian | bernoulli
    arms: int
    steps: int
    record_every: int = 1  # curves keep one point per this many steps
    z_samples: int = 64  # BLASTS samples; also the samples of every rate estimate
    ba_max_iter: int = 100
    ba_loop: str = "while"  # faster with one beta a batch (benchmarks/bench_bandits.py)
    track_rate: bool = True  # estimate the rate of TS / STS / DRA every step (Z samples)
    n_traj: int = 10  # DRA: model samples per sigma update
    grad: str = "analytic"  # DRA: Eq. 5 or autodiff
    q_rule: str = "posterior_mean"  # DRA: q = conjugate posterior mean, or alpha_q steps
    ba_warm_start: bool = True  # BLASTS: start Blahut-Arimoto from the last step's marginal
    ba_vertex: bool = True  # BLASTS: stop Blahut-Arimoto at a certified optimal vertex


class Carry(NamedTuple):
    belief: envs.Belief
    q: jax.Array  # DRA means
    sigma: jax.Array  # DRA stds
    counts: jax.Array
    cum_regret: jax.Array
    sum_reward: jax.Array
    sum_rate: jax.Array
    sum_kl: jax.Array
    max_iters: jax.Array
    n_capped: jax.Array
    ba_q: jax.Array  # BLASTS: the last step's Blahut-Arimoto marginal (the warm start)
    sum_iters: jax.Array


class StepOut(NamedTuple):
    regret: jax.Array
    reward: jax.Array
    rate: jax.Array
    kl: jax.Array
    iters: jax.Array
    capped: jax.Array


def _dra_sigma_grad(st: Static, hp: Hyper, key, q, sigma):
    """Algorithm 1 step 2-3 on one state: mean over ``n_traj`` model draws of
    ``Psi * d log pi(a) / d sigma`` (Eq. 5 or autodiff) minus ``lam * dKL/dsigma`` (Eq. 6)."""
    kz, ku = jax.random.split(key)
    zeta = jax.random.normal(kz, (st.n_traj, st.arms))
    u = jax.random.uniform(ku, (st.n_traj,))

    def one(z, uu):
        p = policy.probs(q, sigma, z, hp.beta)
        a = policy.sample_action(p, uu)
        psi = jnp.where(hp.psi_q, q[a], q[a] - jnp.mean(q))
        return psi * gradients.score(st.grad, q, sigma, z, hp.beta, a, p=p)

    g = jnp.mean(jax.vmap(one)(zeta, u), axis=0) - hp.lam * memory.kl_grad(sigma, hp.sigma_base)
    return jnp.where(hp.equal, jnp.mean(g), g)  # equal_sgd: the mean (agent.sigma_gradient)


def _step(st: Static, env: envs.Bandit, ep: envs.EnvParams, hp: Hyper, means, carry: Carry, key):
    """One pull of one agent: act, observe, update beliefs / memories, measure."""
    k_act, k_env, k_rate, k_sig = jax.random.split(key, 4)
    nan = jnp.float32(jnp.nan)
    rate, kl, iters, capped = nan, nan, jnp.int32(0), jnp.array(False)
    belief, q, sigma, counts = carry.belief, carry.q, carry.sigma, carry.counts
    ba_q = carry.ba_q

    if st.agent in ("ts", "sts"):
        theta = envs.sample_belief(st.kind, k_act, belief)
        a = ts_action(theta) if st.agent == "ts" else sts_action(theta, hp.epsilon)
        if st.track_rate:
            th = envs.sample_belief(st.kind, k_rate, belief, st.z_samples)
            tgt = ts_action(th) if st.agent == "ts" else sts_action(th, hp.epsilon)
            rate = histogram_entropy(tgt, st.arms)
    elif st.agent == "blasts":
        k_th, k_pick = jax.random.split(k_act)
        th = envs.sample_belief(st.kind, k_th, belief, st.z_samples, envs.ndtri_normal)
        q0 = None
        if st.ba_warm_start:
            q0 = (1.0 - WARM_MIX) * carry.ba_q + WARM_MIX / st.arms
        ba = blahut_arimoto(regret_distortion(th), hp.ba_beta, hp.ba_tol, st.ba_max_iter, st.ba_loop,
                            q0=q0, vertex=st.ba_vertex)
        a = blasts_action(k_pick, ba)
        ba_q = jnp.exp(ba.log_q)
        rate, iters, capped = ba.rate, ba.iters, ba.capped
    elif st.agent == "dra":
        kz, ku = jax.random.split(k_act)
        zeta = jax.random.normal(kz, (st.arms,))
        p = policy.probs(q, sigma, zeta, hp.beta)
        a = policy.sample_action(p, jax.random.uniform(ku))
    else:
        raise ValueError(f"unknown agent {st.agent!r}; expected one of {AGENTS}")

    _, _, r, _, info = env.step_env(k_env, envs.EnvState(means=means, time=jnp.int32(0)), a, ep)
    belief = envs.update_belief(st.kind, belief, a, r, ep)
    counts = counts.at[a].add(1.0)

    if st.agent == "dra":
        if st.q_rule == "posterior_mean":
            q_new = envs.posterior_mean(st.kind, belief)
        else:
            q_new = q.at[a].add(hp.alpha_q * (r - q[a]))
        q = jnp.where(hp.learn_q, q_new, q)
        g = _dra_sigma_grad(st, hp, k_sig, q, sigma)
        sigma_new = jnp.clip(sigma + hp.alpha_sigma * g, hp.sigma_min, hp.sigma_max)
        sigma = jnp.where(hp.learn_sigma, sigma_new, sigma)
        kl = memory.kl_cost(sigma, hp.sigma_base)
        if st.track_rate:
            z = jax.random.normal(k_rate, (st.z_samples, st.arms))
            rate = histogram_entropy(ts_action(q + sigma * z), st.arms)

    regret = info["regret"]
    out = StepOut(regret, means[a], rate, kl, iters, capped)
    carry = Carry(belief, q, sigma, counts, carry.cum_regret + regret, carry.sum_reward + means[a],
                  carry.sum_rate + jnp.nan_to_num(rate), carry.sum_kl + jnp.nan_to_num(kl),
                  jnp.maximum(carry.max_iters, iters), carry.n_capped + capped.astype(jnp.int32),
                  ba_q, carry.sum_iters + iters)
    return carry, out


class RunOut(NamedTuple):
    """One run's results. Curves have ``steps // record_every`` points (chunk ends)."""

    means: jax.Array  # true arm means [K]
    cum_regret: jax.Array  # [P] cumulative (pseudo-)regret at chunk ends
    rate: jax.Array  # [P] mean rate over the chunk (nats; nan if not tracked)
    kl: jax.Array  # [P] DRA KL cost (nats; nan for other agents)
    total_regret: jax.Array
    mean_reward: jax.Array  # time-average of theta(a_t)
    mean_rate: jax.Array
    mean_kl: jax.Array
    max_iters: jax.Array  # most BA iterations of any step
    n_capped: jax.Array  # steps whose BA hit the cap
    q: jax.Array  # final DRA means [K]
    sigma: jax.Array  # final DRA stds [K]
    counts: jax.Array  # pulls per arm [K]
    mean_iters: jax.Array  # BA iterations per step (0 for other agents)


class ChunkState(NamedTuple):
    """One run's whole state between chunks (arrays only, so it checkpoints as is)."""

    key_data: jax.Array  # raw key data of k_steps (typed keys do not serialize)
    means: jax.Array  # the bandit's true arm means [K]
    carry: Carry
    point: jax.Array  # int32: curve points done (each is record_every steps)
    cum: jax.Array  # [P] cumulative regret at point ends
    rate: jax.Array  # [P] mean rate over each point's steps
    kl: jax.Array  # [P]


def make_chunked(st: Static):
    """``(init, advance, finish)``: one run of :func:`make_run` in pieces.

    ``init(key, hp, ep) -> ChunkState``; ``advance(state, hp, ep, start, stop) -> ChunkState``
    runs points ``start <= i < stop`` (each ``record_every`` steps); ``finish(state) ->
    RunOut`` (elementwise: batched states give batched outputs; jit it). ``init`` then
    ``advance`` over ``[0, P)`` in any number of pieces is :func:`make_run`
    (:mod:`dra_jax.bandits.runner` checkpoints between the pieces).
    """
    if st.steps % st.record_every:
        raise ValueError(f"steps ({st.steps}) must be a multiple of record_every ({st.record_every})")
    env = envs.Bandit(st.arms, st.kind)
    n_points = st.steps // st.record_every

    def init(key, hp: Hyper, ep: envs.EnvParams) -> ChunkState:
        k_env, k_steps = jax.random.split(key)
        _, es = env.reset_env(k_env, ep)
        k = st.arms
        belief = envs.prior_belief(st.kind, k, ep)
        zf, zi = jnp.float32(0), jnp.int32(0)
        carry = Carry(belief=belief, q=envs.posterior_mean(st.kind, belief),
                         sigma=jnp.full((k,), hp.sigma0, jnp.float32),
                         counts=jnp.zeros((k,), jnp.float32), cum_regret=zf, sum_reward=zf,
                         sum_rate=zf, sum_kl=zf, max_iters=zi, n_capped=zi,
                         ba_q=jnp.full((k,), 1.0 / k, jnp.float32), sum_iters=zi)
        nanp = jnp.full((n_points,), jnp.nan, jnp.float32)
        return ChunkState(jax.random.key_data(k_steps), es.means, carry, jnp.int32(0),
                          nanp, nanp, nanp)

    def advance(s: ChunkState, hp: Hyper, ep: envs.EnvParams, start, stop) -> ChunkState:
        k_steps = jax.random.wrap_key_data(s.key_data)

        def point(i, s):
            def inner(cc, j):
                t = i * st.record_every + j
                return _step(st, env, ep, hp, s.means, cc, jax.random.fold_in(k_steps, t))

            c, outs = lax.scan(inner, s.carry, jnp.arange(st.record_every))
            return s._replace(carry=c, point=i + 1, cum=s.cum.at[i].set(c.cum_regret),
                              rate=s.rate.at[i].set(jnp.mean(outs.rate)),
                              kl=s.kl.at[i].set(jnp.mean(outs.kl)))

        return lax.fori_loop(start, stop, point, s)

    def finish(s: ChunkState) -> RunOut:
        c = s.carry
        n = jnp.float32(st.steps)
        tracked = st.agent == "blasts" or st.track_rate
        nan = jnp.full(jnp.shape(c.cum_regret), jnp.nan, jnp.float32)
        return RunOut(means=s.means, cum_regret=s.cum, rate=s.rate, kl=s.kl,
                         total_regret=c.cum_regret, mean_reward=c.sum_reward / n,
                         mean_rate=c.sum_rate / n if tracked else nan,
                         mean_kl=c.sum_kl / n if st.agent == "dra" else nan,
                         max_iters=c.max_iters, n_capped=c.n_capped, q=c.q, sigma=c.sigma,
                         counts=c.counts, mean_iters=c.sum_iters / n)

    return init, advance, finish



def make_run(st: Static):
    """``run(key, hp, ep) -> RunOut``: one whole bandit run, a ``fori_loop`` over curve points
    of a ``lax.scan`` over their time steps (:func:`make_chunked` in one piece).

    ``hp``: :class:`Hyper`; ``ep``: :class:`dra_jax.envs.bandits.EnvParams` (both traced). The
    key of step ``t`` is ``fold_in(key, t)`` and the bandit's arm means come from the key alone,
    so results do not depend on batching, and runs of different agents with the same key face
    the same bandit. Pure; ``jax.jit(jax.vmap(run))`` is the intended use.
    """
    init, advance, finish = make_chunked(st)
    n_points = st.steps // st.record_every

    def run(key: jax.Array, hp: Hyper, ep: envs.EnvParams) -> RunOut:
        return finish(advance(init(key, hp, ep), hp, ep, 0, n_points))

    return run
