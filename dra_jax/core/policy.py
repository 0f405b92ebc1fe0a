"""Soft Thompson sampling (Sec. 2.3, Appendix A.1).

At state ``s`` the agent draws ``zeta ~ N(0, I_A)`` and acts with
``pi(.|s) = softmax(beta * (q[s] + zeta * sigma[s]))``; as ``beta -> inf`` this is Thompson
sampling (Eq. 2) with one sample of each memory.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dra_jax.core.memory import fixed_order_sum


def logits(q_row: jax.Array, sigma_row: jax.Array, zeta: jax.Array, beta: jax.Array | float) -> jax.Array:
    """Reparametrized logits ``beta * (q + zeta * sigma)`` of one state's actions."""
    return beta * (q_row + zeta * sigma_row)


# The sums over the (few) actions below run in a fixed order (memory.fixed_order_sum, explicit
# prefix sums): XLA's own reductions change their order with the batch shape, and so the last
# bits of a run with how a sweep is batched or sharded.


def _log_softmax(x: jax.Array) -> jax.Array:
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return z - jnp.log(fixed_order_sum(jnp.exp(z), axis=-1))[..., None]


def probs(q_row: jax.Array, sigma_row: jax.Array, zeta: jax.Array, beta: jax.Array | float) -> jax.Array:
    """Soft Thompson action probabilities (softmax with max subtraction)."""
    x = logits(q_row, sigma_row, zeta, beta)
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    return e / fixed_order_sum(e, axis=-1)[..., None]


def log_prob(sigma_row: jax.Array, q_row: jax.Array, zeta: jax.Array, beta: jax.Array | float,
             action: jax.Array) -> jax.Array:
    """``log pi(a|s)`` of the reparametrized softmax; ``sigma_row`` first so it can be ``jax.grad``-ed."""
    return _log_softmax(logits(q_row, sigma_row, zeta, beta))[action]


def entropy(sigma_row: jax.Array, q_row: jax.Array, zeta: jax.Array, beta: jax.Array | float) -> jax.Array:
    """Action entropy ``H[softmax(beta * (q + zeta * sigma))]`` of one state (nats); ``sigma_row``
    first so its reparametrized gradient is ``jax.grad(entropy)`` (Acerbi et al. 2022, Eq. 8-10)."""
    logp = _log_softmax(logits(q_row, sigma_row, zeta, beta))
    return -fixed_order_sum(jnp.exp(logp) * logp, axis=-1)


def sample_action(p: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw of an action from probabilities ``p`` with one uniform ``u`` in [0, 1)."""
    n = p.shape[-1]
    if n <= 16:  # explicit prefix sums (fixed order)
        parts = [p[..., 0]]
        for i in range(1, n):
            parts.append(parts[-1] + p[..., i])
        cdf = jnp.stack(parts, axis=-1)
    else:
        cdf = jnp.cumsum(p, axis=-1)
    a = jnp.sum(cdf <= u * cdf[..., -1:], axis=-1)
    return jnp.minimum(a, n - 1).astype(jnp.int32)


def choice_entropy(key: jax.Array, q: jax.Array, sigma: jax.Array, n_samples: int = 100_000) -> jax.Array:
    """Normalized entropy of the hard-Thompson choice at every state (Fig. 1c, Fig. 2c).

    For each state, ``n_samples`` samples of its memories are drawn, the argmax action is
    histogrammed, and the entropy of the histogram is divided by ``log(A)``.
    ``q, sigma``: ``[S, A]``; returns ``[S]`` in [0, 1].
    """
    n_states, n_actions = q.shape

    def one_state(k, q_row, s_row):
        z = jax.random.normal(k, (n_samples, n_actions), q.dtype)
        a = jnp.argmax(q_row + z * s_row, axis=-1)
        counts = jnp.bincount(a, length=n_actions)
        p = counts / n_samples
        h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
        return h / jnp.log(n_actions)

    keys = jax.random.split(key, n_states)
    return jax.lax.map(lambda args: one_state(*args), (keys, q, sigma))
