"""The hard-Thompson choice of a memory table, exactly: which action has the largest sample.

With independent memories ``x_b ~ N(q_b, sigma_b^2)`` the probability that action ``a`` has the
largest sample is one integral over the standard normal ``z`` of ``x_a = q_a + sigma_a z``::

    P(a) = int phi(z) prod_{b != a} Phi((q_a + sigma_a z - q_b) / sigma_b) dz

Its integrand steps (as sharply as ``sigma_b / sigma_a``) where ``x_a`` crosses another mean,
at ``z = (q_b - q_a) / sigma_a``: the integral is split at those points and each piece is done
by Gauss-Legendre quadrature, so it stays accurate for the very unequal sigmas DRA allocates
(``sigma_min = 0.01`` beside ``sigma_base = 5``). Deterministic, and cheaper than the 1e5
samples per state it replaces (the normalized choice entropy of Fig. 1c and Fig. 2c).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

Z_MAX = 8.0  # P(|z| > 8) ~ 1e-15: the integral over [-8, 8]
N_NODES = 48  # Gauss-Legendre nodes per piece (48 vs 192 nodes: < 2e-4 on hard cases)


@functools.lru_cache(maxsize=None)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (NumPy constants: safe to cache across
    traces)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return x.astype(np.float32), w.astype(np.float32)


def choice_probs(q: jax.Array, sigma: jax.Array, n_nodes: int = N_NODES) -> jax.Array:
    """``P(argmax_b x_b = a)`` for ``x_b ~ N(q_b, sigma_b^2)``: ``[..., A] -> [..., A]``."""
    x, w = _legendre(n_nodes)
    q = jnp.asarray(q, jnp.float32)
    s = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-12)
    A = q.shape[-1]
    qa, sa = q[..., :, None], s[..., :, None]  # [..., a, 1]
    cuts = jnp.clip((q[..., None, :] - qa) / sa, -Z_MAX, Z_MAX)  # [..., a, b]
    edges = jnp.sort(jnp.concatenate([jnp.full(cuts.shape[:-1] + (1,), -Z_MAX), cuts,
                                      jnp.full(cuts.shape[:-1] + (1,), Z_MAX)], -1), -1)
    lo, hi = edges[..., :-1], edges[..., 1:]  # [..., a, piece] (A + 1 pieces)
    half = 0.5 * (hi - lo)
    z = (lo + hi)[..., None] * 0.5 + half[..., None] * x  # [..., a, piece, node]
    xa = q[..., :, None, None] + s[..., :, None, None] * z
    arg = (xa[..., None] - q[..., None, None, None, :]) / s[..., None, None, None, :]
    cdf = ndtr(arg)  # [..., a, piece, node, b]
    own = jnp.eye(A, dtype=bool)[:, None, None, :]  # b == a contributes a factor 1
    prod = jnp.prod(jnp.where(own, 1.0, cdf), axis=-1)
    dens = jnp.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    p = jnp.sum(half[..., None] * w * dens * prod, axis=(-2, -1))
    return p / jnp.sum(p, axis=-1, keepdims=True)


def normalized_entropy(p: jax.Array) -> jax.Array:
    """Entropy of choice distributions ``[..., A]`` divided by ``log A`` (in [0, 1])."""
    h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return h / jnp.log(p.shape[-1])


@jax.jit
def choice_entropy(q: jax.Array, sigma: jax.Array) -> jax.Array:
    """Normalized entropy of the hard-Thompson choice of every memory row: ``[..., S, A] ->
    [..., S]``."""
    return normalized_entropy(choice_probs(q, sigma))
