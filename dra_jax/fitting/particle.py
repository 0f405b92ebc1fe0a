"""Bootstrap particle filter over an agent's latent state (q, sigma, optimizer state).

For a subject's observed trials ``(s_t, a_t, r_t)`` and a parameter vector theta, the
likelihood ``p(a_1:T | s, r, theta) = E[prod_t P(a_t | s_t, z_t)]`` integrates over the agent's
own random draws (its gradient rollouts), which make the latent ``z_t`` random even given the
data. The filter (Gordon et al. 1993; Findling et al. 2019 for noisy learners):

    particles i = 1..P start at the block's initial state, normalized log-weights log W_i
    for each trial t with an observed action:
        w_i = P(a_t | s_t; z_i)                                   (models.chosen_prob)
        loglik += log sum_i W_i w_i ;  W_i <- W_i w_i / sum_j W_j w_j
        resample systematically when ESS = 1 / sum_i W_i^2 < ess_threshold * P
        z_i <- update(z_i; s_t, a_t, r_t, own rollouts)             (models.update)

``exp(loglik)`` is an unbiased estimate of the likelihood (Del Moral 2004). A missed trial
(``a_t = -1``) and padding add nothing and change nothing; a new block resets every particle.
With a deterministic latent state every particle is the same and one particle gives the exact
likelihood.

Layout: one ``jit`` of a ``lax.scan`` over trials whose carry holds every lane's particles
``[N subjects, C candidates, ..., P]`` with the particle axis LAST: the stimulus-response models'
arithmetic broadcasts over trailing axes (:func:`dra_jax.fitting.models.update`), so XLA's CPU
loops run along the particles (the bandit kinds' functions are vmapped over that axis). Noise
of trial t comes from ``fold_in(key, t)`` with the lane's own key, so a subject's numbers do
not depend on its batch-mates or on how many trials they have (common random numbers across
candidates). ``n_devices > 1`` splits the subjects over devices with ``shard_map`` (each device
runs its own scan; the numbers equal one device's, tests/test_fit_devices.py).

Costs (measurements: docs/results/fitting.md, "Fitting speed and devices"): the choice
probability is formed for the observed action only (:func:`dra_jax.fitting.models.chosen_prob`),
the rollouts are elementwise chains, their normals come from a Box-Muller transform
(:func:`dra_jax.fitting.models.normal_box_muller`) and the whole call is traced with the
non-partitionable threefry. The particle axis is last so that XLA's CPU loops vectorize along
the particles rather than along the short ``[n_traj]`` axis of the rollouts. The gradient
rollouts are most of the remaining work and the choice probability over the nodes a small part,
so giving each particle a random subset of the nodes (unbiased for the same likelihood) would
save little and add variance.
"""
from __future__ import annotations

import functools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dra_jax.core.memory import fixed_order_sum
from dra_jax.fitting import models, zeta
from dra_jax.runtime.devices import jit_over_runs


class Trials(NamedTuple):
    """One subject's trials, padded to a common length T (leading axis: subjects when batched)."""

    s: jax.Array  # [T] int32 stimulus
    a: jax.Array  # [T] int32 action, -1 = missed
    r: jax.Array  # [T] float32 reward
    new_block: jax.Array  # [T] bool, first trial of a block
    valid: jax.Array  # [T] bool, False on padding
    block: jax.Array  # [T, S] float32, 1 on the stimuli of the trial's block
    ns: jax.Array  # [T] float32, the set size of the trial's block (rlwm's capacity weight)


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


def reweigh_inc(logw: jax.Array, ll: jax.Array, w: jax.Array, obs: jax.Array,
                ess_threshold: float) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One trial of a lane's weights: with the particles' choice probabilities ``w [P]`` of the
    observed action, ``ll += log sum_i W_i w_i`` and ``W_i <- W_i w_i / sum_j W_j w_j`` (both only
    where ``obs``); returns ``(logw, ll, resample, inc)``, ``resample`` where ESS = 1 /
    sum_i W_i^2 fell below ``ess_threshold * P``, ``inc`` the trial's term (0 where not
    ``obs``). ``ll [2]`` is a compensated (Kahan 1965) float32 sum, ``(sum, compensation)``:
    :func:`ll_value` reads it. (A plain float32 sum of ~700 terms drifted by up to 1.3e-3 from
    the float64 likelihood of the RLWM data; compensated, by ~1e-5.)"""
    lw = logw + jnp.log(jnp.maximum(w, 1e-30))
    inc = _log_sum_exp(lw)  # log sum_i W_i w_i (W normalized)
    x = jnp.where(obs, inc, 0.0)
    y = x - ll[..., 1]
    t = ll[..., 0] + y
    ll = jnp.stack([t, (t - ll[..., 0]) - y], -1)
    logw = jnp.where(obs, lw - inc, logw)
    ess = 1.0 / fixed_order_sum(jnp.exp(2.0 * logw))
    return logw, ll, obs & (ess < ess_threshold * logw.shape[0]), x


def reweigh(logw, ll, w, obs, ess_threshold):
    """:func:`reweigh_inc` without the trial's term: ``(logw, ll, resample)``."""
    return reweigh_inc(logw, ll, w, obs, ess_threshold)[:3]


def ll_zeros(shape) -> jax.Array:
    """A compensated log-likelihood accumulator ``[*shape, 2]`` at 0 (:func:`reweigh_inc`)."""
    return jnp.zeros(tuple(shape) + (2,), jnp.float32)


def ll_value(ll: jax.Array) -> jax.Array:
    """The value ``sum - compensation`` of a compensated accumulator ``[..., 2]``."""
    return ll[..., 0] - ll[..., 1]


def resample_indices(key, do: jax.Array, logw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Systematic resampling of a lane where ``do`` (else the identity): the particle indices
    ``[P]`` and the log-weights after it (uniform where resampled)."""
    p = logw.shape[0]
    idx = jnp.where(do, _systematic(key, logw), jnp.arange(p, dtype=jnp.int32))
    return idx, jnp.where(do, -jnp.log(float(p)), logw)


def _lanes(f):
    """vmap over subjects (axis 0) and candidates (axis 1) of a per-lane function."""
    return jax.vmap(jax.vmap(f))


def _per_particle(st: models.Static, f, in_axes):
    """A model function on a lane's P particles stored particle-last (``q [S, A, P]``): the
    stimulus-response kinds take the trailing axis as it is (their arithmetic broadcasts over
    it, which keeps the particle axis minor), the bandit kinds' functions are vmapped over it."""
    if st.kind in models.BANDIT_KINDS:
        return jax.vmap(partial(f, st), in_axes=in_axes, out_axes=-1)
    return partial(f, st)


def _filter(st: models.Static, n_particles: int, ess_threshold: float, per_trial: bool,
            theta: jax.Array, tr: Trials, keys: jax.Array):
    """The filter of every lane (subject x candidate) at once: one ``lax.scan`` over trials
    whose carry holds ``[N, C, ..., P]`` particles (the particle axis last). Resampling, the one
    step that is not per-particle, runs under a ``lax.cond`` taken only on trials where some
    lane's ESS fell below the threshold (a lane that does not resample gets the identity, so its
    numbers do not depend on its batch-mates)."""
    p = n_particles
    n, c = theta.shape[:2]
    chosen = _per_particle(st, models.chosen_prob, (None, -1, None, None, None, None))
    update = _per_particle(st, models.update, (None, -1, None, None, None, None, -1))
    lat0 = _lanes(partial(models.init, st))(theta)
    lat_p = jax.tree.map(lambda x: jnp.broadcast_to(x[..., None], x.shape + (p,)), lat0)
    logw0 = jnp.full((n, c, p), -jnp.log(float(p)), jnp.float32)

    def weigh(th, key, t, lat, logw, ll, s, a, new_block, valid, ns):
        """Reset at a block's start, weigh by P(a | s), accumulate log mean weight (one lane;
        ``rqmc``: over the lane's own nodes of trial t, shared by its particles)."""
        lat = jax.tree.map(lambda x, x0: jnp.where(new_block, x0[..., None], x), lat,
                           models.init(st, th))
        logw = jnp.where(new_block, -jnp.log(float(p)), logw)
        nodes = zeta.trial_nodes(st.n_zeta, st.n_actions, key, t) if st.zeta == "rqmc" else None
        w = chosen(th, lat, s, jnp.maximum(a, 0), ns, nodes)  # [P]
        return (lat,) + reweigh_inc(logw, ll, w, valid & (a >= 0), ess_threshold)

    def resample(key, do, lat, logw, n_res):
        idx, logw = resample_indices(key, do, logw)
        return jax.tree.map(lambda x: x[..., idx], lat), logw, n_res + do.astype(jnp.int32)

    def move(th, key, lat, obs, s, a, r, block):
        new = update(th, lat, s, jnp.maximum(a, 0), r, block, models.draw_noise(st, key, (p,)))
        return jax.tree.map(lambda x1, x0: jnp.where(obs, x1, x0), new, lat)

    def step(carry, xs):
        lat, logw, ll, n_res = carry
        t, s, a, r, new_block, valid, block, ns = xs  # [N] / [N, S]: broadcast over candidates
        bc = lambda x: jnp.broadcast_to(x[:, None], (n, c) + x.shape[1:])  # noqa: E731
        s, a, r, new_block, valid, block, ns = map(bc, (s, a, r, new_block, valid, block, ns))
        lat, logw, ll, do, inc = _lanes(lambda *x: weigh(x[0], x[1], t, *x[2:]))(
            theta, keys, lat, logw, ll, s, a, new_block, valid, ns)
        kt = jax.vmap(jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, t))))(keys)
        if p > 1:
            lat, logw, n_res = jax.lax.cond(jnp.any(do), _lanes(resample),
                                            lambda k, d, x, w, n: (x, w, n),
                                            kt[:, :, 0], do, lat, logw, n_res)
        obs = valid & (a >= 0)
        lat = _lanes(move)(theta, kt[:, :, 1], lat, obs, s, a, r, block)
        return (lat, logw, ll, n_res), (inc if per_trial else None)

    t_idx = jnp.arange(tr.s.shape[1], dtype=jnp.int32)
    xs = (t_idx,) + tuple(jnp.moveaxis(x, 1, 0) for x in (tr.s, tr.a, tr.r, tr.new_block,
                                                         tr.valid, tr.block, tr.ns))
    init = (lat_p, logw0, ll_zeros((n, c)), jnp.zeros((n, c), jnp.int32))
    (_, _, ll, n_res), inc = jax.lax.scan(step, init, xs)
    if per_trial:  # each trial's log predictive probability [N, C, T] (0: nothing observed)
        return ll_value(ll), n_res, jnp.moveaxis(inc, 0, -1)
    return ll_value(ll), n_res


@functools.lru_cache(maxsize=64)
def _compiled(st: models.Static, n_particles: int, ess_threshold: float, n_devices: int,
              per_trial: bool = False):
    """The jitted filter of a (static, particles, threshold) triple, its subjects axis split over
    ``n_devices`` of this process's devices with ``shard_map`` (:func:`dra_jax.lane.batching.
    jit_over_runs`, as the sweep's batches). Lanes never talk to each other, so each device runs
    its own scan (a resampling ``lax.cond`` is taken per device)."""
    return jit_over_runs(partial(_filter, st, n_particles, ess_threshold, per_trial), n_devices,
                         (1, 1, 1))


def loglik(st: models.Static, n_particles: int, ess_threshold: float, theta: jax.Array,
           trials: Trials, keys: jax.Array, n_devices: int = 1, per_trial: bool = False):
    """Log-likelihood estimates ``[N, C]`` (and resampling counts) of N subjects x C candidate
    parameter vectors ``theta [N, C, len(PARAMS)]`` in one compiled call. ``keys [N, C]``: the
    particle noise of each candidate -- the same key for a subject's candidates gives common
    random numbers; the same theta under different keys gives independent replicates.

    ``n_devices > 1``: the subjects are split over the first ``n_devices`` of
    ``jax.local_devices()``; the batch is padded (repeating its last subject) to a multiple of
    ``n_devices`` and at least 2 subjects a device, and the padding is cut from the results.

    Traced with ``jax_threefry_partitionable`` off (a key in the jit cache): the rollouts' noise
    is drawn per trial in small blocks, where the partitionable threefry is much slower on CPU;
    both are streams of the same key, and a key's draws do not depend on how keys are batched
    in either mode.

    ``per_trial``: also each trial's log predictive probability ``log sum_i W_i w_i``
    (``[N, C, T]``, 0 on a missed trial or padding), whose sum over trials is the estimate."""
    return call_split(_compiled(st, n_particles, float(ess_threshold), n_devices, per_trial),
                      n_devices, theta, trials, keys)


def call_split(fn, n_devices: int, theta, trials, keys) -> tuple[jax.Array, jax.Array]:
    """``fn(theta, trials, keys)`` (a filter from :func:`dra_jax.runtime.devices.jit_over_runs`) with the
    subjects padded (repeating the last) to a multiple of ``n_devices`` and at least 2 a device
    when ``n_devices > 1``, the padding cut from the results; non-partitionable threefry."""
    n = theta.shape[0]
    if n_devices > 1:
        size = max(2 * n_devices, -(-n // n_devices) * n_devices)
        idx = jnp.minimum(jnp.arange(size), n - 1)
        theta, trials, keys = jax.tree.map(lambda x: x[idx], (theta, trials, keys))
    with jax.threefry_partitionable(False):
        out = fn(theta, trials, keys)
    return tuple(x[:n] for x in out)
