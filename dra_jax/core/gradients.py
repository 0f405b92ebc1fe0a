"""The sigma gradient of ``log pi(a|s)``: analytic (Eq. 5) and by autodiff.

Both act on one visited state's row of memories and return a vector over its actions; the
caller multiplies by ``Psi_t`` and scatters into the ``[S, A]`` table. They are the same
estimator, so they agree to float tolerance (``tests/test_gradients.py``).
"""
from __future__ import annotations

import jax

from dra_jax.core import policy

GRAD_METHODS = ("analytic", "autodiff")


def score_analytic(p: jax.Array, zeta: jax.Array, beta: jax.Array | float, action: jax.Array) -> jax.Array:
    """Eq. 5: ``d log pi(a|s) / d sigma[s, a'] = beta * zeta[a'] * (1{a' = a} - pi(a'|s))``."""
    onehot = jax.nn.one_hot(action, p.shape[-1], dtype=p.dtype)
    return beta * zeta * (onehot - p)


def score_autodiff(q_row: jax.Array, sigma_row: jax.Array, zeta: jax.Array, beta: jax.Array | float,
                   action: jax.Array) -> jax.Array:
    """``jax.grad`` of ``log softmax(beta * (q + zeta * sigma))[a]`` with respect to ``sigma``."""
    return jax.grad(policy.log_prob)(sigma_row, jax.lax.stop_gradient(q_row), zeta, beta, action)


def score(method: str, q_row, sigma_row, zeta, beta, action, p=None) -> jax.Array:
    """Dispatch on the static ``method`` ('analytic' | 'autodiff')."""
    if method == "analytic":
        if p is None:
            p = policy.probs(q_row, sigma_row, zeta, beta)
        return score_analytic(p, zeta, beta, action)
    if method == "autodiff":
        return score_autodiff(q_row, sigma_row, zeta, beta, action)
    raise ValueError(f"unknown gradient method {method!r}; expected one of {GRAD_METHODS}")
