"""Rate-distortion by Blahut-Arimoto: the channel of BLASTS (the review's Algorithm 2) and of
value-equivalent PSRL (Algorithm 7), and Blahut's duality-gap certificate.

:mod:`dra_jax.bandits.agents` and :mod:`dra_jax.episodic.psrl` call :func:`blahut_arimoto`; both re-use
the names through ``dra_jax.bandits.agents``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

BA_LOOPS = ("while", "fori")


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
                   q0: jax.Array | None = None, vertex: bool = False) -> BAResult:
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
    space with ``logsumexp`` (the reference; slower). ``loop`` (static):
    ``'while'`` is a ``lax.while_loop`` on (tolerance, cap); ``'fori'`` a fixed
    ``max_iter``-trip ``lax.fori_loop`` that freezes once converged. Same numbers; under
    ``vmap`` the while loop runs as long as its slowest lane, the fori loop always ``max_iter``.

    ``vertex`` (static; ``space='prob'`` only): the exact vertex certificate. ``G`` is convex,
    so ``q`` is optimal iff the KKT conditions ``c_a(q) <= 1`` hold for every ``a`` (with
    equality on the support, automatic since ``sum_a q_a c_a = 1``). At a vertex ``q = e_b``,
    ``c_a(e_b) = mean_z K_za / K_zb``, one matrix-vector product. Before the first iteration
    the vertex ``b = argmax_a q0(a)`` is tested; if ``c_a(e_b) <= 1`` for every ``a != b``
    the result is ``q = e_b`` after 0 iterations (the channel plays ``b`` whatever ``z``, rate
    0): the optimum itself, which the plain iteration only creeps towards (by a factor
    ``c_a`` per step on each other arm). Warm-started from a vertex that is still optimal, a
    BLASTS step costs no iteration. The vertex is tested only before the first iteration:
    testing after every iteration as well would cost a product a step and save almost nothing
    more (see docs/results/blasts.md).
    """
    z, k = d.shape
    beta = jnp.asarray(beta, d.dtype)
    neg_bd = -beta * (d - jnp.min(d, axis=1, keepdims=True))
    kernel = jnp.exp(neg_bd)
    tiny = jnp.finfo(d.dtype).tiny
    q_init = jnp.full((k,), 1.0 / k, d.dtype) if q0 is None else jnp.asarray(q0, d.dtype)

    def ratio(q):  # c_a = mean_z K_za / (K q)_z
        return (1.0 / jnp.maximum(kernel @ q, tiny)) @ kernel / z

    def at_vertex(q):  # (the KKT conditions hold at e_b, b = argmax q;  e_b)
        b = jnp.argmax(q)
        c = (1.0 / jnp.maximum(kernel[:, b], tiny)) @ kernel / z
        others = jnp.arange(k) != b
        return jnp.all((c <= 1.0) | ~others), (~others).astype(d.dtype)

    if vertex and space != "prob":
        raise ValueError("vertex=True needs space='prob'")
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
    if vertex:
        ok, e_b = at_vertex(start)
        start = jnp.where(ok, e_b, start)
        init = (start, start, jnp.int32(0), ok)
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
