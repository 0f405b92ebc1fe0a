"""Bootstrap particle filter over an agent's latent state (q, sigma, optimizer state).

For a subject's observed trials ``(s_t, a_t, r_t)`` and a parameter vector theta, the
likelihood ``p(a_1:T | s, r, theta) = E[prod_t P(a_t | s_t, z_t)]`` integrates over the agent's
own random draws (its gradient rollouts), which make the latent ``z_t`` random even given the
data. The filter (Gordon et al. 1993; Findling et al. 2019 for noisy learners):

    particles i = 1..P start at the block's initial state, normalized log-weights log W_i
    for each trial t with an observed action:
        w_i = P(a_t | s_t; z_i)                                   (models.action_probs)
        loglik += log sum_i W_i w_i ;  W_i <- W_i w_i / sum_j W_j w_j
        resample systematically when ESS = 1 / sum_i W_i^2 < ess_threshold * P
        z_i <- update(z_i; s_t, a_t, r_t, own rollouts)             (models.update)

``exp(loglik)`` is an unbiased estimate of the likelihood (Del Moral 2004). A missed trial
(``a_t = -1``) and padding add nothing and change nothing; a new block resets every particle.
With a deterministic latent state every particle is the same and one particle gives the exact
likelihood.

Layout: one ``jit`` of ``vmap`` (subjects) of ``vmap`` (candidates or replicates) of a
``lax.scan`` over trials whose carry holds the P particles. Noise of trial t comes from
``fold_in(key, t)`` with the subject's own key, so a subject's numbers do not depend on its
batch-mates or on how many trials they have (common random numbers across candidates).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dra_jax.fitting import models
from dra_jax.memory import fixed_order_sum


class Trials(NamedTuple):
    """One subject's trials, padded to a common length T (leading axis: subjects when batched)."""

    s: jax.Array  # [T] int32 stimulus
    a: jax.Array  # [T] int32 action, -1 = missed
    r: jax.Array  # [T] float32 reward
    new_block: jax.Array  # [T] bool, first trial of a block
    valid: jax.Array  # [T] bool, False on padding
    block: jax.Array  # [T, S] float32, 1 on the stimuli of the trial's block


def _systematic(key, log_w: jax.Array) -> jax.Array:
    """Systematic resampling (Kitagawa 1996): indices ``[P]`` from one uniform."""
    p = log_w.shape[0]
    w = jnp.exp(log_w - jnp.max(log_w))
    c = jnp.cumsum(w)
    pos = (jax.random.uniform(key) + jnp.arange(p, dtype=jnp.float32)) / p * c[-1]
    return jnp.minimum(jnp.searchsorted(c, pos, side="right"), p - 1).astype(jnp.int32)


def _log_sum_exp(x: jax.Array) -> jax.Array:
    m = jax.lax.stop_gradient(jnp.max(x))
    return m + jnp.log(fixed_order_sum(jnp.exp(x - m)))


def filter_one(st: models.Static, n_particles: int, ess_threshold: float, theta: jax.Array,
               tr: Trials, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-likelihood estimate of one subject under one theta, and the number of resamplings."""
    p = n_particles
    lat0 = models.init(st, theta)
    lat_p = jax.tree.map(lambda x: jnp.broadcast_to(x, (p,) + x.shape), lat0)
    logw0 = jnp.full((p,), -jnp.log(float(p)), jnp.float32)
    upd = jax.vmap(partial(models.update, st, theta), in_axes=(0, None, None, None, None, 0))
    prob = jax.vmap(partial(models.action_probs, st, theta), in_axes=(0, None))

    def step(carry, xs):
        lat, logw, ll, n_res = carry
        t, s, a, r, new_block, valid, block = xs
        lat = jax.tree.map(lambda x, x0: jnp.where(new_block, x0, x), lat, lat_p)
        logw = jnp.where(new_block, logw0, logw)
        obs = valid & (a >= 0)
        a_safe = jnp.maximum(a, 0)
        w = prob(lat, s)[:, a_safe]
        lw = logw + jnp.log(jnp.maximum(w, 1e-30))
        inc = _log_sum_exp(lw)  # log sum_i W_i w_i (W normalized)
        ll = ll + jnp.where(obs, inc, 0.0)
        logw = jnp.where(obs, lw - inc, logw)
        kt = jax.random.fold_in(key, t)
        k_res, k_upd = jax.random.split(kt)
        if p > 1:
            ess = 1.0 / fixed_order_sum(jnp.exp(2.0 * logw))
            do = obs & (ess < ess_threshold * p)
            idx = jnp.where(do, _systematic(k_res, logw), jnp.arange(p, dtype=jnp.int32))
            lat = jax.tree.map(lambda x: x[idx], lat)
            logw = jnp.where(do, logw0, logw)
            n_res = n_res + do.astype(jnp.int32)
        new = upd(lat, s, a_safe, r, block, models.draw_noise(st, k_upd, (p,)))
        lat = jax.tree.map(lambda n, o: jnp.where(obs, n, o), new, lat)
        return (lat, logw, ll, n_res), None

    t_idx = jnp.arange(tr.s.shape[0], dtype=jnp.int32)
    init = (lat_p, logw0, jnp.float32(0.0), jnp.int32(0))
    (_, _, ll, n_res), _ = jax.lax.scan(step, init, (t_idx, tr.s, tr.a, tr.r, tr.new_block,
                                                     tr.valid, tr.block))
    return ll, n_res


@partial(jax.jit, static_argnames=("st", "n_particles", "ess_threshold"))
def loglik(st: models.Static, n_particles: int, ess_threshold: float, theta: jax.Array,
           trials: Trials, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-likelihood estimates ``[N, C]`` (and resampling counts) of N subjects x C candidate
    parameter vectors ``theta [N, C, len(PARAMS)]`` in one compiled call. ``keys [N, C]``: the
    particle noise of each candidate -- the same key for a subject's candidates gives common
    random numbers; the same theta under different keys gives independent replicates."""
    one = partial(filter_one, st, n_particles, ess_threshold)
    per_c = jax.vmap(one, in_axes=(0, None, 0))
    return jax.vmap(per_c)(theta, trials, keys)
