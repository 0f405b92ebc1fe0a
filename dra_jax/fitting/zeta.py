"""Randomized quasi-Monte Carlo zeta nodes of the soft Thompson choice probability
(``fit.zeta = "rqmc"``).

The choice probability of the soft Thompson models is the Gaussian integral

    P(a | s) = E_{zeta ~ N(0, I_A)}[softmax(beta * (q[s] + zeta * sigma[s]))_a]

(:func:`dra_jax.fitting.models.chosen_prob`). ``fit.zeta = "qmc"`` averages it over ONE fixed set
of ``n_zeta`` scrambled-Sobol normals for every trial: a deterministic rule whose error is a bias
that the same nodes repeat on every trial. ``"rqmc"`` averages it, on trial ``t`` of a lane, over
the same Sobol points after a random digital shift drawn from that lane's key and ``t``
(:func:`trial_nodes`):

    u_k = ((b_k XOR d_t) >> 9 + 1/2) / 2^23,   zeta_k = Phi^-1(u_k),   k = 1..K

with ``b_k`` the 32-bit integers of the scrambled Sobol points (the ``qmc`` rule's, seed 0) and
``d_t`` ``A`` uniformly random 32-bit words. Each shifted point is uniform on the cell midpoints of
the ``2^-23`` grid of ``[0, 1)^A`` (exact in float32, so ``|zeta| <= 5.4``) (a digital shift keeps
the points a net: the stratification of Sobol points survives), so

* **unbiased**: ``E_d[mean_k f(zeta_k)] = E[f(Z)]`` for the normal ``Z`` discretized on that grid,
  i.e. ``E[P_hat(a | s)] = P(a | s)`` for every trial and state, up to the grid (for the bounded
  softmax an absolute difference of order ``2^-23``, far under any sampling error);
* the shifts of different trials are independent (``fold_in(key, STREAM + t)``), so the product
  over trials of ``P_hat`` is an unbiased estimate of the product of the ``P``, and ``exp(loglik)``
  of the particle filter is an unbiased estimate of the model's own likelihood (not of a surrogate
  defined by the nodes), as particle MCMC needs;
* **not unbiased in log space**: ``E[log P_hat] < log P`` (Jensen), by about ``Var(P_hat) / (2 P^2)``
  a trial; that bias shrinks with the variance, i.e. with ``n_zeta``
  (``benchmarks/bench_zeta_bias.py`` measures it).

All particles of a lane share the trial's nodes, and so do all candidates whose lanes share a key
(the search's common random numbers). The cost is ``A`` random words and ``K x A`` inverse normal
CDFs a lane and trial, independent of the number of particles.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

STREAM = 0x20000000  # stream tag of trial t's shift: fold_in(lane key, STREAM + t)
_BITS = 23  # resolution of the shifted uniforms: cell midpoints (2 v + 1) / 2^24, exact in float32


@functools.lru_cache(maxsize=None)
def sobol_words(n_zeta: int, n_actions: int) -> np.ndarray:
    """``[K, A]`` uint32: the scrambled Sobol points of ``models.zeta_nodes`` (seed 0) as 32-bit
    fixed-point words (exact: scipy's points have 30 bits)."""
    import warnings

    from scipy.stats import qmc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-power-of-two n: balance lost, still unbiased here
        u = qmc.Sobol(n_actions, scramble=True, seed=0).random(n_zeta)
    return np.floor(u * 2.0**32).astype(np.uint32)


def shift_key(key: jax.Array, t) -> jax.Array:
    """The key of trial ``t``'s digital shift: ``fold_in(key, STREAM + t)`` (a stream apart from
    the filter's ``fold_in(key, t)`` resampling and rollout noise)."""
    return jax.random.fold_in(key, STREAM + jnp.asarray(t, jnp.uint32))


def shifted_nodes(words: jax.Array, shift: jax.Array) -> jax.Array:
    """Normals ``[K, A]`` of the points ``words [K, A]`` (uint32) digitally shifted by
    ``shift [A]`` (uint32): ``Phi^-1(((words ^ shift) >> 9 + 1/2) / 2^23)``, the uniform
    ``(2 v + 1) / 2^24`` exact in float32 (``v + 0.5`` with 24-bit ``v`` would round, and the
    last cell to ``u = 1``, ``Phi^-1 = inf``)."""
    v = jnp.right_shift(jnp.bitwise_xor(words, shift), jnp.uint32(32 - _BITS))
    u = (2.0 * v.astype(jnp.float32) + 1.0) * (2.0 ** -(_BITS + 1))
    return jax.scipy.special.ndtri(u)


def trial_nodes(n_zeta: int, n_actions: int, key: jax.Array, t) -> jax.Array:
    """Equally weighted nodes ``[K, A]`` of trial ``t`` of the lane whose key is ``key`` (one
    key, not a batch): the Sobol points under a fresh random digital shift, so their average of
    any bounded ``f(zeta)`` is an unbiased estimate of ``E_{zeta ~ N(0, I)}[f(zeta)]`` (the module
    docstring)."""
    shift = jax.random.bits(shift_key(key, t), (n_actions,), jnp.uint32)
    return shifted_nodes(jnp.asarray(sobol_words(n_zeta, n_actions)), shift)


def mc_nodes(n_zeta: int, n_actions: int, key: jax.Array, t) -> jax.Array:
    """Plain Monte Carlo nodes ``[K, A]`` (i.i.d. normals of the same stream): the baseline of
    ``benchmarks/bench_zeta_bias.py``, not a fitting option."""
    return jax.random.normal(shift_key(key, t), (n_zeta, n_actions))
