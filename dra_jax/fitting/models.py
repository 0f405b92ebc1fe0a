"""Fittable agents of the one-step stimulus-response task: their latent state, the probability
of an observed action, and the update on an observed trial.

Every model reads one parameter vector ``theta`` in the order of :data:`PARAMS`
(``lam, beta, alpha_q, alpha_sigma, sigma_base, sigma0``); a model ignores what it does not use.

* ``dra``: the Dynamic Resource Allocator (Patel et al. 2020, Algorithm 1) with one sigma per
  memory. A trial is an episode: the mean of the chosen memory moves by
  ``alpha_q * (r - q[s, a])`` (expected SARSA with a terminal next state), then ``n_traj``
  internal rollouts -- a stimulus drawn uniformly from the current block, ``zeta ~ N(0, I)``, an
  action ``a' ~ softmax(beta * (q[s'] + zeta * sigma[s']))`` -- give the score-function gradient
  ``Psi * beta * zeta * (onehot(a') - pi)`` (Eq. 5, :func:`dra_jax.gradients.score_analytic`),
  and sigma ascends ``mean(gradient) - lam * dKL/dsigma`` (Eq. 6) through an optax optimizer,
  clipped to ``[sigma_min, sigma_max]``. The rollouts are the latent randomness the particle
  filter integrates over.
* ``dra_equal``: the same with one shared sigma whose gradient is the sum over the block's
  memories (the paper's equal-precision control).
* ``lam0``: soft Thompson sampling with a fixed ``sigma = sigma0`` and the same mean update: no
  latent randomness, so one particle is the exact likelihood.
* ``qlearn``: the softmax Q-learner ``P(a|s) = softmax(beta * q[s])``, delta rule on the means.

The soft Thompson choice probability ``E_zeta[softmax(beta * (q + zeta * sigma))][a]`` is taken
over a fixed set of zeta nodes (scrambled-Sobol quasi-random normals, or tensor Gauss-Hermite
quadrature), so it is a smooth function of the parameters. Measured on 20 DRA subjects x 300
trials (beta 2-40): the summed log-likelihood at the true parameters is -5174.3 / -5163.7 /
-5162.4 / -5161.0 with 64 / 128 / 256 / 4096 Sobol points, but -5210.8 / -5209.2 / -5204.3 with
Gauss-Hermite orders 3 / 6 / 8 (27 / 216 / 512 nodes): near-argmax softmaxes are far from
polynomials, and the tensor rule underestimates small choice probabilities.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax import gradients, memory, policy

PARAMS = ("lam", "beta", "alpha_q", "alpha_sigma", "sigma_base", "sigma0")
KINDS = ("dra", "dra_equal", "lam0", "qlearn")
USES = {  # the parameters each kind reads (free parameters must be among them)
    "dra": PARAMS,
    "dra_equal": PARAMS,
    "lam0": ("beta", "alpha_q", "sigma0"),
    "qlearn": ("beta", "alpha_q"),
}
STOCHASTIC = {"dra": True, "dra_equal": True, "lam0": False, "qlearn": False}


class Static(NamedTuple):
    """Everything that shapes the compiled program (hashable, static under jit)."""

    kind: str
    n_states: int
    n_actions: int
    n_traj: int = 10
    psi: str = "A"  # A | Q
    optimizer: str = "sgd"  # sgd | adam
    sigma_min: float = 0.01
    sigma_max: float = 100.0
    zeta: str = "qmc"  # qmc | quadrature
    n_zeta: int = 128  # number of points (qmc) or Gauss-Hermite order per action (quadrature)


class Latent(NamedTuple):
    """One particle: the memories and the optimizer state of sigma."""

    q: jax.Array  # [S, A]
    sigma: jax.Array  # [S, A]
    opt: optax.OptState


def zeta_nodes(st: Static) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``[K, A]`` and weights ``[K]`` for ``E_{zeta ~ N(0, I_A)}[f(zeta)]``: the tensor
    product of the ``n_zeta``-point Gauss-Hermite rule (probabilists'), or ``n_zeta`` scrambled
    Sobol points mapped through the normal quantile (fixed seed 0), equally weighted."""
    a = st.n_actions
    if st.zeta == "quadrature":
        x, w = np.polynomial.hermite_e.hermegauss(st.n_zeta)
        w = w / w.sum()
        nodes = np.array(list(itertools.product(x, repeat=a)), np.float32)
        weights = np.array([np.prod(c) for c in itertools.product(w, repeat=a)], np.float32)
        return nodes, weights
    from scipy.stats import norm, qmc

    u = qmc.Sobol(a, scramble=True, seed=0).random(st.n_zeta)
    return norm.ppf(u).astype(np.float32), np.full(st.n_zeta, 1.0 / st.n_zeta, np.float32)


def _optimizer(st: Static, alpha_sigma):
    if st.optimizer == "adam":
        return optax.adam(alpha_sigma)
    return optax.sgd(alpha_sigma)


def init(st: Static, theta: jax.Array) -> Latent:
    """The block's initial state: ``q = 0``, ``sigma = sigma0``, a fresh optimizer state."""
    q = jnp.zeros((st.n_states, st.n_actions), jnp.float32)
    sigma = jnp.full_like(q, theta[5])
    return Latent(q, sigma, _optimizer(st, theta[3]).init(sigma))


def action_probs(st: Static, theta: jax.Array, lat: Latent, s: jax.Array) -> jax.Array:
    """``P(. | s)`` of the model: the zeta-marginal soft Thompson probabilities (``qlearn``:
    the plain softmax), ``[A]``."""
    beta = theta[1]
    q_row = lat.q[s]
    if st.kind == "qlearn":
        return jax.nn.softmax(beta * q_row)
    nodes, weights = zeta_nodes(st)
    p = policy.probs(q_row[None], lat.sigma[s][None], jnp.asarray(nodes), beta)  # [K, A]
    return jnp.sum(jnp.asarray(weights)[:, None] * p, axis=0)  # (no tiny dot: slow on CPU)


def sample_zeta_action(st: Static, theta, lat: Latent, s, z, u) -> jax.Array:
    """The agent's own choice (the simulator): one zeta draw ``z`` then ``a ~ softmax``; the
    ``qlearn`` agent draws from its softmax."""
    if st.kind == "qlearn":
        return policy.sample_action(jax.nn.softmax(theta[1] * lat.q[s]), u)
    return policy.sample_action(policy.probs(lat.q[s], lat.sigma[s], z, theta[1]), u)


def draw_noise(st: Static, key, shape=()) -> tuple[jax.Array, jax.Array]:
    """The rollouts' noise of one update (for ``shape`` particles at once): uniforms
    ``[..., n_traj, 2]`` (stimulus, action) and normals ``[..., n_traj, A]`` (zeta)."""
    k1, k2 = jax.random.split(key)
    return (jax.random.uniform(k1, shape + (st.n_traj, 2)),
            jax.random.normal(k2, shape + (st.n_traj, st.n_actions)))


def _sigma_grad(st: Static, theta, lat: Latent, block: jax.Array, noise) -> jax.Array:
    """``mean_n Psi_n * score_n - lam * dKL/dsigma`` over the block's memories, ``[S, A]``
    (Algorithm 1 step 2-3 for a one-step task; Eq. 5, Eq. 6)."""
    lam, beta, sigma_base = theta[0], theta[1], theta[4]
    n = st.n_traj
    u, zeta = noise
    u_s, u_a = u[:, 0], u[:, 1]
    pmask = block / jnp.sum(block)
    s = jax.vmap(lambda u: policy.sample_action(pmask, u))(u_s)  # stimuli of the block
    q_rows, s_rows = lat.q[s], lat.sigma[s]
    p = policy.probs(q_rows, s_rows, zeta, beta)  # [n, A]
    a = jax.vmap(policy.sample_action)(p, u_a)
    q_sa = jnp.take_along_axis(q_rows, a[:, None], axis=1)[:, 0]
    psi = q_sa - jnp.mean(q_rows, axis=1) if st.psi == "A" else q_sa
    score = jax.vmap(gradients.score_analytic, in_axes=(0, 0, None, 0))(p, zeta, beta, a)
    onehot = jax.nn.one_hot(s, st.n_states, dtype=jnp.float32)  # [n, S]
    g = jnp.sum((psi / n)[:, None, None] * onehot[:, :, None] * score[:, None, :], axis=0)
    learn = block[:, None] > 0
    g = jnp.where(learn, g - lam * memory.kl_grad(lat.sigma, sigma_base), 0.0)
    if st.kind == "dra_equal":
        g = jnp.where(learn, memory.fixed_order_sum(g), 0.0)
    return g


def update(st: Static, theta: jax.Array, lat: Latent, s, a, r, block: jax.Array, noise) -> Latent:
    """One observed trial ``(s, a, r)``: delta rule on ``q[s, a]``; for DRA then ``n_traj``
    gradient rollouts and one optax ascent step on sigma (``block``: the stimuli ``[S]`` of the
    current block, where rollouts draw their stimuli; ``noise`` from :func:`draw_noise`)."""
    alpha_q = theta[2]
    q = lat.q.at[s, a].add(alpha_q * (r - lat.q[s, a]))
    lat = lat._replace(q=q)
    if not STOCHASTIC[st.kind]:
        return lat
    g = _sigma_grad(st, theta, lat, block, noise)
    upd, opt = _optimizer(st, theta[3]).update(-g, lat.opt, lat.sigma)
    sigma = jnp.clip(optax.apply_updates(lat.sigma, upd), st.sigma_min, st.sigma_max)
    return Latent(q, sigma, opt)
