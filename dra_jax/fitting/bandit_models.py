"""Choice probabilities and belief updates of the Bayesian bandit agents for fitting: Thompson
sampling (TS) and BLASTS on a K-armed Gaussian bandit (the capacity-limited Bayesian RL review,
Sec. "Experiments"; the agents that act are in :mod:`dra_jax.bandits.agents`).

The agent's belief about arm a is the conjugate Normal posterior ``N(m_a, sd_a^2)`` of its
mean reward (prior ``N(prior_mean, prior_sd^2)``, rewards ``N(theta_a, noise_sd^2)``): a
deterministic function of the observed (action, reward) history, so one particle gives the exact
likelihood. Posterior update after reward r on arm a (precision form):
``tau_a' = tau_a + 1 / noise_sd^2``, ``m_a' = (tau_a m_a + r / noise_sd^2) / tau_a'``.

Observation models (``P(a | history)``):

* ``ts_softmax``: soft Thompson sampling on the posterior,
  ``E_zeta[softmax(beta * (m + zeta * sd))]_a`` (the zeta nodes of the stimulus-response models;
  beta -> inf is TS).
* ``ts_lapse``: TS with a lapse rate, ``(1 - epsilon) P(argmax(m + zeta * sd) = a) + epsilon / K``;
  the argmax probability is the exact 1-D integral
  ``int phi(x) prod_{j != a} Phi((m_a + sd_a x - m_j) / sd_j) dx`` by Gauss-Hermite quadrature.
* ``blasts`` (Algorithm 2 of the review): the Blahut-Arimoto channel at ``ba_beta`` on Z posterior
  samples ``m + sd * zeta_z`` (the fixed quasi-random zeta nodes, so the probability is a smooth,
  deterministic function of the parameters; the acting agent draws fresh samples), marginal
  ``q(a) = mean_z delta(a | z)``, mixed with a lapse: ``(1 - epsilon) q(a) + epsilon / K``
  (``epsilon = 0``: the channel's own softmax over distortions is the observation model).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from dra_jax.bandits.agents import blahut_arimoto, regret_distortion

KINDS = ("ts_softmax", "ts_lapse", "blasts")
GH_ORDER = 64  # Gauss-Hermite nodes of the TS argmax integral
BA_ITERS = 100  # Blahut-Arimoto iteration cap (tolerance 1e-5)


def update(m: jax.Array, sd: jax.Array, a, r, noise_sd) -> tuple[jax.Array, jax.Array]:
    """Conjugate Normal update of arm ``a`` after reward ``r`` (``m, sd [K]``)."""
    tau = 1.0 / (sd[a] * sd[a])
    tau_r = 1.0 / (noise_sd * noise_sd)
    tau_new = tau + tau_r
    return m.at[a].set((tau * m[a] + tau_r * r) / tau_new), sd.at[a].set(jax.lax.rsqrt(tau_new))


def ts_argmax_prob(m: jax.Array, sd: jax.Array, a) -> jax.Array:
    """``P(argmax_j (m_j + sd_j zeta_j) = a)`` by ``GH_ORDER``-point Gauss-Hermite quadrature
    over ``zeta_a`` of ``prod_{j != a} Phi((m_a + sd_a x - m_j) / sd_j)``."""
    x, w = np.polynomial.hermite_e.hermegauss(GH_ORDER)
    x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w / w.sum(), jnp.float32)
    v = m[a] + sd[a] * x  # [G]
    prod = jnp.ones_like(v)
    for j in range(m.shape[0]):  # static, K small
        prod = prod * jnp.where(j == a, 1.0, ndtr((v - m[j]) / sd[j]))
    return jnp.sum(w * prod)


def blasts_probs(m: jax.Array, sd: jax.Array, ba_beta, nodes: jax.Array) -> jax.Array:
    """BLASTS's action distribution ``q [K]``: the Blahut-Arimoto channel's marginal on the
    posterior samples ``m + sd * nodes`` (``nodes [Z, K]``)."""
    th = m[None, :] + sd[None, :] * nodes
    ba = blahut_arimoto(regret_distortion(th), ba_beta, 1e-5, BA_ITERS, loop="fori")
    return jnp.exp(ba.log_q)


def lapse(p, epsilon, n_actions: int):
    return (1.0 - epsilon) * p + epsilon / n_actions
