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


def fixed_order_sum(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """Sum in a fixed pairwise order: pad to a power of two, then add halves elementwise.

    XLA may reduce in a different order for different batch sizes (and so per-device shard
    sizes), changing the last bits; elementwise adds of slices have one order, so runs give the
    same bits however a sweep is batched or sharded.
    """
    axes = tuple(range(x.ndim)) if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
    axes = tuple(a % x.ndim for a in axes)
    keep = [d for d in range(x.ndim) if d not in axes]
    x = jnp.transpose(x, keep + list(axes)).reshape(tuple(x.shape[d] for d in keep) + (-1,))
    n = x.shape[-1]
    size = 1 << max(0, (n - 1).bit_length())
    if size != n:
        x = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (size - n,), x.dtype)], axis=-1)
    while x.shape[-1] > 1:
        h = x.shape[-1] // 2
        x = x[..., :h] + x[..., h:]
    return x[..., 0]


def kl_cost(sigma: jax.Array, sigma_base: jax.Array | float, mask: jax.Array | None = None) -> jax.Array:
    """Total KL over the learned memories (``mask`` selects them; all when ``None``), summed in a
    fixed order (:func:`fixed_order_sum`)."""
    kl = kl_per_memory(sigma, sigma_base)
    if mask is not None:
        kl = jnp.where(mask, kl, 0.0)
    return fixed_order_sum(kl)


def kl_grad(sigma: jax.Array, sigma_base: jax.Array | float) -> jax.Array:
    """Eq. 6: ``d KL / d sigma = sigma / sigma_base^2 - 1 / sigma``, elementwise."""
    return sigma / (sigma_base * sigma_base) - 1.0 / sigma


def sample_memories(key: jax.Array, q: jax.Array, sigma: jax.Array) -> jax.Array:
    """One Thompson sample ``q + sigma * zeta`` of every memory."""
    return q + sigma * jax.random.normal(key, q.shape, q.dtype)


def dprime(q1: jax.Array, q2: jax.Array, sigma1: jax.Array, sigma2: jax.Array) -> jax.Array:
    """Discriminability of two memories: ``|q1 - q2| / sqrt((sigma1^2 + sigma2^2) / 2)``."""
    return jnp.abs(q1 - q2) / jnp.sqrt(0.5 * (sigma1 * sigma1 + sigma2 * sigma2))
