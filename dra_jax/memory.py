"""Gaussian memories ``N(q, sigma^2)`` and their KL cost against the base ``N(q, sigma_base^2)``.

The cost of Eq. 1 is ``lam * KL(Q || P)`` with ``Q = N(q, sigma^2 I)`` and
``P = N(q, sigma_base^2 I)``; per memory

    KL = 0.5 * (sigma^2 / sigma_base^2 - 1) - log(sigma / sigma_base)

and its derivative (Eq. 6) is ``sigma / sigma_base^2 - 1 / sigma``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def kl_per_memory(sigma: jax.Array, sigma_base: jax.Array | float) -> jax.Array:
    """Elementwise ``KL(N(q, sigma^2) || N(q, sigma_base^2))`` (nats)."""
    ratio = sigma / sigma_base
    return 0.5 * (ratio * ratio - 1.0) - jnp.log(ratio)


def kl_cost(sigma: jax.Array, sigma_base: jax.Array | float, mask: jax.Array | None = None) -> jax.Array:
    """Total KL over the learned memories (``mask`` selects them; all when ``None``)."""
    kl = kl_per_memory(sigma, sigma_base)
    if mask is not None:
        kl = jnp.where(mask, kl, 0.0)
    return jnp.sum(kl)


def kl_grad(sigma: jax.Array, sigma_base: jax.Array | float) -> jax.Array:
    """Eq. 6: ``d KL / d sigma = sigma / sigma_base^2 - 1 / sigma``, elementwise."""
    return sigma / (sigma_base * sigma_base) - 1.0 / sigma


def sample_memories(key: jax.Array, q: jax.Array, sigma: jax.Array) -> jax.Array:
    """One Thompson sample ``q + sigma * zeta`` of every memory."""
    return q + sigma * jax.random.normal(key, q.shape, q.dtype)


def dprime(q1: jax.Array, q2: jax.Array, sigma1: jax.Array, sigma2: jax.Array) -> jax.Array:
    """Discriminability of two memories: ``|q1 - q2| / sqrt((sigma1^2 + sigma2^2) / 2)``."""
    return jnp.abs(q1 - q2) / jnp.sqrt(0.5 * (sigma1 * sigma1 + sigma2 * sigma2))
