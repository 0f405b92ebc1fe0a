"""Capacity-limited bandit agents: TS, satisficing TS, BLASTS and the one-state DRA agent.

All functions are pure and jittable; a whole bandit run is one ``lax.scan`` over time steps
(:func:`make_run`), vmapped over seeds x (beta | epsilon | lam) by the caller. The algorithms
(capacity-limited Bayesian RL review, Sec. "Experiments"; Arumugam & Van Roy 2021):

* **TS** (Thompson sampling): draw ``theta ~ posterior``, play ``argmax_a theta(a)``.
* **Satisficing TS** (``epsilon >= 0``; Russo & Van Roy 2022): draw ``theta``, play the
  lowest-index arm with ``theta(a) >= max theta - epsilon``; ``epsilon = 0`` is TS.
* **BLASTS** (Blahut-Arimoto satisficing TS, the review's Algorithm 2; ``beta >= 0``, ``Z``
  posterior samples): draw ``theta_1..theta_Z``; distortion ``d(a, z) = (max theta_z -
  theta_z(a))^2``; Blahut-Arimoto from the uniform marginal
  ``delta(a|z) ∝ q(a) exp(-beta d(a, z))``, ``q(a) = mean_z delta(a|z)`` to a tolerance or an
  iteration cap (:func:`blahut_arimoto`); then draw ``z`` uniformly and ``a ~ delta(.|z)``.
  Its rate ``I(Z; A) = mean_z sum_a delta(a|z) log(delta(a|z) / q(a))`` (nats).
* **DRA** (Patel et al. 2020, Algorithm 1 on a one-state task): memories ``N(q_a, sigma_a^2)``,
  soft Thompson policy ``softmax(beta (q + zeta sigma))`` (:mod:`dra_jax.policy`), ``q`` learned
  from rewards, ``sigma`` by stochastic ascent on ``E[r] - lam KL(N(q, sigma^2) || N(q,
  sigma_base^2))`` with the Eq. 5 score (:mod:`dra_jax.gradients`) times ``Psi`` and Eq. 6
  (:func:`dra_jax.memory.kl_grad`), clipped to ``[sigma_min, sigma_max]``.

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

from dra_jax import gradients, memory, policy
from dra_jax.envs import bandits as envs

AGENTS = ("ts", "sts", "blasts", "dra")
BA_LOOPS = ("while", "fori")
WARM_MIX = 1e-3  # weight of the uniform in BLASTS's warm start (an arm of zero mass cannot revive)


# --------------------------------------------------------------------------- rate-distortion


def regret_distortion(theta: jax.Array) -> jax.Array:
    """``d(a, z) = (max_a' theta_z(a') - theta_z(a))^2`` for samples ``theta [Z, K]``."""
    gap = jnp.max(theta, axis=-1, keepdims=True) - theta
    return gap * gap


class BAResult(NamedTuple):
    """Blahut-Arimoto output: channel ``log delta [Z, K]``, its marginal ``log q [K]``, the rate
    ``I(Z; A)`` (nats) and expected distortion of the channel, the iterations run, whether
    the cap stopped it before the tolerance was met, and the duality gap of the returned
    channel: an upper bound on how far its ``I + beta D`` lies above the optimum (nats)."""

    log_delta: jax.Array
    log_q: jax.Array
    rate: jax.Array
    distortion: jax.Array
    iters: jax.Array
    capped: jax.Array
    gap: jax.Array


def _xlogy_rate(delta, log_delta, log_q):
    """``mean_z sum_a delta log(delta / q)`` with ``0 log 0 = 0`` (and terms whose ``q``
    underflowed to 0, of size ~1e-38, dropped)."""
    keep = (delta > 0) & jnp.isfinite(log_q)[None, :]
    terms = jnp.where(keep, delta * (log_delta - log_q[None, :]), 0.0)
    return jnp.sum(terms) / delta.shape[0]


def _safe_log(x):
    return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1.0)), -jnp.inf)


def blahut_arimoto(d: jax.Array, beta: jax.Array | float, tol: jax.Array | float = 1e-5,
                   max_iter: int = 200, loop: str = "while", space: str = "prob",
                   q0: jax.Array | None = None) -> BAResult:
    """Blahut-Arimoto (Blahut 1972, Arimoto 1972) for the rate-distortion channel of Algorithm 2.

    ``d [Z, K]``: distortion of action ``a`` in sampled environment ``z`` (each ``z`` has weight
    ``1/Z``). Starts from the marginal ``q0`` (uniform if ``None``; a slot of zero mass stays at
    zero); iteration ``k`` sets ``delta_k(a|z) ∝ q_k(a) exp(-beta d(a, z))`` and
    ``q_{k+1}(a) = mean_z delta_k(a|z)``, and it stops after the first iteration with
    ``max_a |q_{k+1}(a) - q_k(a)| < tol`` or after ``max_iter`` iterations (``capped``: the
    tolerance was not met). Returned: ``delta_k`` and its own marginal ``q_{k+1}``, so ``rate``
    is exactly the mutual information of that channel (hence >= 0) and playing
    ``a ~ delta_k(.|z)``, ``z`` uniform, has marginal ``q_{k+1}``.

    The iteration is the minimization of the convex ``G(q) = -mean_z log (K q)_z`` over the
    simplex, ``K = exp(-beta (d - min_a d))``: with ``c_a = mean_z K_za / (K q)_z``,
    ``q_{k+1} = q_k c``. ``gap`` is Blahut's certificate (1972, Thm. 6):
    ``log max_a c_a - sum_a q_{k+1}(a) log c_a >= 0`` bounds from above how far the returned
    channel's ``I + beta D`` lies above the rate-distortion optimum (nats).

    ``space`` (static): ``'prob'`` iterates on ``q`` alone with two matrix-vector products a
    step (the kernel's row maxima are 1, so it cannot overflow and each row keeps a non-zero
    entry; the channel is formed once, at the end); ``'log'`` iterates on the channel in log
    space with ``logsumexp`` (the reference; several times slower). ``loop`` (static):
    ``'while'`` is a ``lax.while_loop`` on (tolerance, cap); ``'fori'`` a fixed
    ``max_iter``-trip ``lax.fori_loop`` that freezes once converged. Same numbers; under
    ``vmap`` the while loop runs as long as its slowest lane, the fori loop always ``max_iter``.
    """
    z, k = d.shape
    beta = jnp.asarray(beta, d.dtype)
    neg_bd = -beta * (d - jnp.min(d, axis=1, keepdims=True))
    kernel = jnp.exp(neg_bd)
    tiny = jnp.finfo(d.dtype).tiny
    q_init = jnp.full((k,), 1.0 / k, d.dtype) if q0 is None else jnp.asarray(q0, d.dtype)

    def ratio(q):  # c_a = mean_z K_za / (K q)_z
        return (1.0 / jnp.maximum(kernel @ q, tiny)) @ kernel / z

    if space == "prob":
        def step(q):
            return q * ratio(q)

        start = q_init
        to_prob = lambda q: q  # noqa: E731
    elif space == "log":
        def step(log_q):
            logits = log_q[None, :] + neg_bd
            log_delta = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
            return jax.nn.logsumexp(log_delta, axis=0) - jnp.log(z)

        start = _safe_log(q_init)
        to_prob = jnp.exp
    else:
        raise ValueError(f"unknown space {space!r}; expected 'prob' or 'log'")

    def body(carry):  # carry: (q_k, q_{k+1}, iterations, converged)
        _, q, it, _ = carry
        q_new = step(q)
        change = jnp.max(jnp.abs(to_prob(q_new) - to_prob(q)))
        return q, q_new, it + 1, change < tol

    init = (start, start, jnp.int32(0), jnp.array(False))
    if loop == "while":
        def cond(carry):
            return jnp.logical_and(~carry[3], carry[2] < max_iter)

        q_k, _, iters, done = lax.while_loop(cond, body, init)
    elif loop == "fori":
        def fbody(_, carry):
            new = body(carry)
            return jax.tree.map(lambda a, b: jnp.where(carry[3], a, b), carry, new)

        q_k, _, iters, done = lax.fori_loop(0, max_iter, fbody, init)
    else:
        raise ValueError(f"unknown loop {loop!r}; expected one of {BA_LOOPS}")

    # the channel delta_k of q_k and its own marginal
    if space == "prob":
        w = q_k[None, :] * kernel
        delta = w / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), tiny)
        log_delta = _safe_log(delta)
        q_prob = q_k
    else:
        logits = q_k[None, :] + neg_bd
        log_delta = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
        delta = jnp.exp(log_delta)
        q_prob = jnp.exp(q_k)
    q_next = jnp.mean(delta, axis=0)
    log_q = _safe_log(q_next)
    rate = _xlogy_rate(delta, log_delta, log_q)
    distortion = jnp.sum(delta * d) / z
    c = ratio(q_prob)
    gap = jnp.log(jnp.max(c)) - jnp.sum(jnp.where(q_next > 0, q_next * jnp.log(jnp.maximum(c, tiny)), 0.0))
    return BAResult(log_delta, log_q, jnp.maximum(rate, 0.0), distortion, iters, ~done,
                    jnp.maximum(gap, 0.0))


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
    equal: jax.Array  # allocation == "equal": one shared sigma
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
    ba_loop: str = "fori"  # measured faster under vmap (benchmarks/bench_bandits.py)
    track_rate: bool = True  # estimate the rate of TS / STS / DRA every step (Z samples)
    ba_warm_start: bool = True  # BLASTS: start Blahut-Arimoto from the last step's marginal
    n_traj: int = 10  # DRA: model samples per sigma update
    grad: str = "analytic"  # DRA: Eq. 5 or autodiff
    q_rule: str = "posterior_mean"  # DRA: q = conjugate posterior mean, or alpha_q steps


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
    return jnp.where(hp.equal, jnp.sum(g), g)


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
        th = envs.sample_belief(st.kind, k_th, belief, st.z_samples)
        q0 = None
        if st.ba_warm_start:
            q0 = (1.0 - WARM_MIX) * carry.ba_q + WARM_MIX / st.arms
        ba = blahut_arimoto(regret_distortion(th), hp.ba_beta, hp.ba_tol, st.ba_max_iter, st.ba_loop,
                            q0=q0)
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


def make_run(st: Static):
    """``run(key, hp, ep) -> RunOut``: one whole bandit run as a ``lax.scan`` over time steps.

    ``hp``: :class:`Hyper`; ``ep``: :class:`dra_jax.envs.bandits.EnvParams` (both traced). The
    key of step ``t`` is ``fold_in(key, t)`` and the bandit's arm means come from the key alone,
    so results do not depend on batching, and runs of different agents with the same key face
    the same bandit. Pure; ``jax.jit(jax.vmap(run))`` is the intended use.
    """
    if st.steps % st.record_every:
        raise ValueError(f"steps ({st.steps}) must be a multiple of record_every ({st.record_every})")
    env = envs.Bandit(st.arms, st.kind)
    n_chunks = st.steps // st.record_every

    def run(key: jax.Array, hp: Hyper, ep: envs.EnvParams) -> RunOut:
        k_env, k_steps = jax.random.split(key)
        _, es = env.reset_env(k_env, ep)
        means = es.means
        k = st.arms
        belief = envs.prior_belief(st.kind, k, ep)
        carry = Carry(belief, envs.posterior_mean(st.kind, belief),
                      jnp.full((k,), hp.sigma0, jnp.float32), jnp.zeros((k,), jnp.float32),
                      jnp.float32(0), jnp.float32(0), jnp.float32(0), jnp.float32(0),
                      jnp.int32(0), jnp.int32(0), jnp.full((k,), 1.0 / k, jnp.float32),
                      jnp.int32(0))

        def chunk(c, i):
            def inner(cc, j):
                t = i * st.record_every + j
                return _step(st, env, ep, hp, means, cc, jax.random.fold_in(k_steps, t))

            c, outs = lax.scan(inner, c, jnp.arange(st.record_every))
            return c, (c.cum_regret, jnp.mean(outs.rate), jnp.mean(outs.kl))

        c, (cum, rate, kl) = lax.scan(chunk, carry, jnp.arange(n_chunks))
        n = jnp.float32(st.steps)
        tracked = st.agent == "blasts" or st.track_rate
        nan = jnp.float32(jnp.nan)
        return RunOut(means, cum, rate, kl, c.cum_regret, c.sum_reward / n,
                      c.sum_rate / n if tracked else nan,
                      c.sum_kl / n if st.agent == "dra" else nan,
                      c.max_iters, c.n_capped, c.q, c.sigma, c.counts, c.sum_iters / n)

    return run
