"""Fittable agents of the one-step stimulus-response task: their latent state, the probability
of an observed action, and the update on an observed trial.

Every model reads one parameter vector ``theta`` in the order of :data:`PARAMS`
(``lam, beta, alpha_q, alpha_sigma, sigma_base, sigma0``, the bandit agents' parameters, and
``gamma``, the discount of a sequential task: :mod:`dra_jax.fitting.sequential`); a model
ignores what it does not use.

* ``dra``: the Dynamic Resource Allocator (Patel et al. 2020, Algorithm 1) with one sigma per
  memory. A trial is an episode: the mean of the chosen memory moves by
  ``alpha_q * (r - q[s, a])`` (expected SARSA with a terminal next state), then ``n_traj``
  internal rollouts -- a stimulus drawn uniformly from the current block, ``zeta ~ N(0, I)``, an
  action ``a' ~ softmax(beta * (q[s'] + zeta * sigma[s']))`` -- give the score-function gradient
  ``Psi * beta * zeta * (onehot(a') - pi)`` (Eq. 5, :func:`dra_jax.core.gradients.score_analytic`),
  and sigma ascends ``mean(gradient) - lam * dKL/dsigma`` (Eq. 6) through an optax optimizer,
  clipped to ``[sigma_min, sigma_max]``. The rollouts are the latent randomness the particle
  filter integrates over.
* ``dra_equal``: the same with one shared sigma whose gradient is the sum over the block's
  memories (the paper's equal-precision control).
* ``lam0``: soft Thompson sampling with a fixed ``sigma = sigma0`` and the same mean update: no
  latent randomness, so one particle is the exact likelihood.
* ``qlearn``: the softmax Q-learner ``P(a|s) = softmax(beta * q[s])``, delta rule on the means.
* ``rlwm``: RLWM (Collins & Frank 2012, the family of Collins 2024): a working memory ``WM``
  that learns at rate 1 and decays toward ``1/A`` (``forget``) mixed with a slow RL module
  ``Q`` (``alpha_q``), weight ``rho * min(1, K / set_size)``; ``bias_wm``, ``bias_rl`` scale
  the learning rates after a reward of 0, ``r0`` is the worth of a 0 to RL
  (:func:`_rlwm_update`). Deterministic: one particle is exact.

Components any of these kinds can take, used only when the config lists them (static flags of
:class:`Static`): a lapse ``epsilon`` (``P = epsilon/A + (1 - epsilon) P``), a perseveration
bonus ``stick`` on the last answered choice of the block inside the softmax, and ``forget``,
the decay of the means toward their initial value on every answered trial. DRA's sigma update
(its internal rollouts) does not see them.

The soft Thompson choice probability ``E_zeta[softmax(beta * (q + zeta * sigma))][a]`` is taken
over a set of zeta nodes (``fit.zeta = "rqmc"``: a fresh random digital shift of the Sobol
points per lane and trial, :mod:`dra_jax.fitting.zeta`, so that the node average is unbiased;
else fixed) (scrambled-Sobol quasi-random normals, or tensor Gauss-Hermite
quadrature), so it is a smooth function of the parameters. Sobol points are the default: the
tensor Gauss-Hermite rule is biased here, since near-argmax softmaxes are far from polynomials
and the tensor rule underestimates small choice probabilities (docs/guides/fitting.md, "Zeta
marginalization").
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dra_jax.core import memory, policy
from dra_jax.core.optim import make_optimizer
from dra_jax.fitting import bandit_models

PARAMS = ("lam", "beta", "alpha_q", "alpha_sigma", "sigma_base", "sigma0",
          "epsilon", "ba_beta", "prior_mean", "prior_sd", "noise_sd", "gamma",
          "stick", "forget", "rho", "capacity", "bias_wm", "bias_rl", "r0")
_DRA = PARAMS[:6]
_BELIEF = ("prior_mean", "prior_sd", "noise_sd")
_RLWM = ("beta", "alpha_q", "rho", "capacity", "forget", "bias_wm", "bias_rl", "r0")
KINDS = ("dra", "dra_equal", "lam0", "qlearn", "rlwm") + bandit_models.KINDS
BANDIT_KINDS = bandit_models.KINDS  # Bayesian bandit agents (task "bandits" only)
COMPONENTS = ("epsilon", "stick", "forget")  # lapse, perseveration, decay of the means
COMPONENT_KINDS = ("dra", "dra_equal", "lam0", "qlearn", "rlwm")  # the kinds that take them
USES = {  # the parameters each kind reads (free parameters must be among them)
    "dra": _DRA + ("gamma",) + COMPONENTS,
    "dra_equal": _DRA + ("gamma",) + COMPONENTS,
    "lam0": ("beta", "alpha_q", "sigma0", "gamma") + COMPONENTS,
    "qlearn": ("beta", "alpha_q", "gamma") + COMPONENTS,
    "rlwm": _RLWM + ("epsilon", "stick"),
    "ts_softmax": ("beta",) + _BELIEF,
    "ts_lapse": ("epsilon",) + _BELIEF,
    "blasts": ("ba_beta", "epsilon") + _BELIEF,
}
STOCHASTIC = {k: k in ("dra", "dra_equal") for k in KINDS}
(LAM, BETA, ALPHA_Q, ALPHA_SIGMA, SIGMA_BASE, SIGMA0, EPSILON, BA_BETA, PRIOR_MEAN, PRIOR_SD,
 NOISE_SD, GAMMA, STICK, FORGET, RHO, CAPACITY, BIAS_WM, BIAS_RL, R0) = range(len(PARAMS))


class Static(NamedTuple):
    """Everything that shapes the compiled program (hashable, static under jit)."""

    kind: str
    n_states: int
    n_actions: int
    n_traj: int = 10
    psi: str = "A"  # A | Q
    optimizer: str = "sgd"  # sgd | adam
    sigma_min: float = 0.01
    sigma_max: float = 100.0
    zeta: str = "qmc"  # qmc | rqmc (qmc's points, shifted per trial: fitting.zeta) | quadrature
    n_zeta: int = 128  # number of points (qmc) or Gauss-Hermite order per action (quadrature)
    lapse: bool = False  # epsilon: P = epsilon / A + (1 - epsilon) P
    stick: bool = False  # stick: + stick * onehot(last answered choice) inside the softmax
    forget: bool = False  # forget: the means decay toward their initial value every trial


class Latent(NamedTuple):
    """One particle: the memories, the optimizer state of sigma, the working memory of
    ``rlwm`` (``[S, A]``; an empty array for the other kinds) and the last answered choice of
    the block as a one-hot ``[A]`` (zeros before the first: no perseveration bonus)."""

    q: jax.Array  # [S, A]
    sigma: jax.Array  # [S, A]
    opt: optax.OptState
    wm: jax.Array  # [S, A] (rlwm) or [0]
    prev: jax.Array  # [A]


def zeta_nodes(st: Static) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``[K, A]`` and weights ``[K]`` for ``E_{zeta ~ N(0, I_A)}[f(zeta)]``: the tensor
    product of the ``n_zeta``-point Gauss-Hermite rule (probabilists'), or ``n_zeta`` scrambled
    Sobol points mapped through the normal quantile (fixed seed 0), equally weighted."""
    a = st.n_actions
    if st.zeta == "quadrature":
        x, w = np.polynomial.hermite_e.hermegauss(st.n_zeta)
        w = w / w.sum()
        nodes = np.array(list(itertools.product(x, repeat=a)), np.float32)
        weights = np.array([np.prod(c) for c in itertools.product(w, repeat=a)], np.float32)
        return nodes, weights
    from scipy.stats import norm, qmc

    u = qmc.Sobol(a, scramble=True, seed=0).random(st.n_zeta)
    return norm.ppf(u).astype(np.float32), np.full(st.n_zeta, 1.0 / st.n_zeta, np.float32)


def optimizer(st: Static, alpha_sigma):
    """The optax optimizer of the model's sigma ascent (``fit.optimizer``)."""
    return make_optimizer(st.optimizer, alpha_sigma)


def q_init(st: Static) -> float:
    """The means' initial value (and the target of ``forget``): ``1 / A`` for ``rlwm`` (both
    modules, as Collins & Frank 2012), else 0."""
    return 1.0 / st.n_actions if st.kind == "rlwm" else 0.0


def init(st: Static, theta: jax.Array) -> Latent:
    """The block's initial state: ``q = 0`` (``rlwm``: ``Q = WM = 1 / A``), ``sigma = sigma0``,
    a fresh optimizer state, no last choice (a bandit agent: ``q, sigma`` = its prior mean and
    sd)."""
    q = jnp.full((st.n_states, st.n_actions), q_init(st), jnp.float32)
    sigma = jnp.full_like(q, theta[SIGMA0])
    if st.kind in BANDIT_KINDS:
        q, sigma = q + theta[PRIOR_MEAN], jnp.full_like(q, theta[PRIOR_SD])
    wm = q if st.kind == "rlwm" else jnp.zeros((0,), jnp.float32)
    prev = jnp.zeros((st.n_actions,), jnp.float32)
    return Latent(q, sigma, optimizer(st, theta[ALPHA_SIGMA]).init(sigma), wm, prev)


def _bonus(st: Static, theta, lat: Latent, row: jax.Array) -> jax.Array:
    """``row + stick * onehot(last choice)`` (the perseveration bonus, inside the softmax's
    ``beta * (.)``), or ``row`` for a model without ``stick``."""
    return row + theta[STICK] * lat.prev if st.stick else row


def _lapse(st: Static, theta, p: jax.Array) -> jax.Array:
    """``epsilon / A + (1 - epsilon) p`` (a lapse to the uniform), or ``p`` without a lapse."""
    if not st.lapse:
        return p
    eps = theta[EPSILON]
    return eps / st.n_actions + (1.0 - eps) * p


def wm_weight(theta, ns) -> jax.Array:
    """RLWM's working-memory weight of a block of set size ``ns``: ``rho * min(1, K / ns)``."""
    return theta[RHO] * jnp.minimum(1.0, theta[CAPACITY] / jnp.maximum(ns, 1.0))


def action_probs(st: Static, theta: jax.Array, lat: Latent, s: jax.Array,
                 ns: jax.Array | float = 0.0) -> jax.Array:
    """``P(. | s)`` of the model, ``[A]``: the zeta-marginal soft Thompson probabilities
    (``qlearn``: the plain softmax; ``rlwm``: ``w p_WM + (1 - w) p_RL`` with ``w =``
    :func:`wm_weight` of the block's set size ``ns``), with the perseveration bonus inside the
    softmax and the lapse outside it where the model has them."""
    beta = theta[BETA]
    q_row = _bonus(st, theta, lat, lat.q[s])
    if st.kind == "qlearn":
        return _lapse(st, theta, jax.nn.softmax(beta * q_row))
    if st.kind == "rlwm":
        p_rl = _lapse(st, theta, jax.nn.softmax(beta * q_row))
        p_wm = _lapse(st, theta, jax.nn.softmax(beta * _bonus(st, theta, lat, lat.wm[s])))
        w = wm_weight(theta, ns)
        return w * p_wm + (1.0 - w) * p_rl
    if st.kind in ("ts_lapse", "blasts"):
        return _bandit_probs(st, theta, q_row, lat.sigma[s])
    nodes, weights = zeta_nodes(st)
    p = policy.probs(q_row[None], lat.sigma[s][None], jnp.asarray(nodes), beta)  # [K, A]
    return _lapse(st, theta, jnp.sum(jnp.asarray(weights)[:, None] * p, axis=0))


def chosen_prob(st: Static, theta: jax.Array, lat: Latent, s: jax.Array, a: jax.Array,
                ns: jax.Array | float = 0.0, nodes: jax.Array | None = None) -> jax.Array:
    """``P(a | s)`` of one action: the same number as ``action_probs(...)[a]`` on the same zeta
    nodes, computed as ``mean_k 1 / sum_j exp(x_kj - x_ka)`` with ``x_k = beta * (q[s] + zeta_k *
    sigma[s])`` (softmax is shift-invariant; an overflowing term gives the limit 0). Only the
    observed action's column is formed: no max, no normalization of the other columns, no
    weighted ``[K, A]`` reduction, so it is much cheaper than ``action_probs(...)[a]``, which
    matters most in the lam0 filter, where it is all the work (docs/guides/fitting.md, "Speed").

    Not a bandit kind: ``lat``'s arrays may carry trailing particle axes (``q [S, A, *B]``,
    :data:`PARTICLE_LAST`), giving ``[*B]`` probabilities with the node axis leading, so the
    particle axis stays minor (vectorized) in the compiled loop. ``ns``: the block's set size
    (``rlwm``'s working-memory weight). The lapse and the perseveration bonus enter as in
    :func:`action_probs`.

    ``nodes``: equally weighted zeta nodes ``[K, A]`` of this trial (``fit.zeta = "rqmc"``:
    :func:`dra_jax.fitting.zeta.trial_nodes`); None: the fixed :func:`zeta_nodes`."""
    beta = theta[BETA]
    q_row, s_row = _bonus(st, theta, lat, lat.q[s]), lat.sigma[s]
    if st.kind == "qlearn":
        return _lapse(st, theta, _softmax_at(beta * q_row, a))
    if st.kind == "rlwm":
        p_rl = _lapse(st, theta, _softmax_at(beta * q_row, a))
        p_wm = _lapse(st, theta, _softmax_at(beta * _bonus(st, theta, lat, lat.wm[s]), a))
        w = wm_weight(theta, ns)
        return w * p_wm + (1.0 - w) * p_rl
    if st.kind == "ts_lapse":
        p = bandit_models.ts_argmax_prob(q_row, s_row, a)
        return bandit_models.lapse(p, theta[6], st.n_actions)
    if st.kind == "blasts":
        return _bandit_probs(st, theta, q_row, s_row)[a]
    if nodes is None:
        nodes, weights = zeta_nodes(st)
    else:
        weights = np.full(nodes.shape[0], 1.0 / nodes.shape[0], np.float32)
    trail = (1,) * (q_row.ndim - 1)  # the particle axes, after the node axis
    nodes_t = jnp.asarray(nodes.T).reshape((st.n_actions, -1) + trail)  # [A, K, 1...]
    xa = q_row[a] + nodes_t[a] * s_row[a]  # [K, *B]
    den = 1.0
    for j in range(st.n_actions):  # static, A small; the j = a term is exp(0) = 1 (masked)
        e = jnp.exp(beta * (q_row[j] + nodes_t[j] * s_row[j] - xa))
        den = den + jnp.where(j == a, 0.0, e)
    return _lapse(st, theta, _sum0(jnp.asarray(weights).reshape((-1,) + trail) / den))


def _softmax_at(x: jax.Array, a: jax.Array) -> jax.Array:
    """``softmax(x)[a]`` over the leading axis as ``1 / sum_j exp(x_j - x_a)`` (trailing axes
    broadcast; an overflowing term gives the limit 0)."""
    return 1.0 / _sum0(jnp.exp(x - x[a]))


def _sum0(x: jax.Array) -> jax.Array:
    """Sum over the leading axis in a fixed pairwise order (zero-padded to a power of two, halves
    added elementwise; :func:`dra_jax.core.memory.fixed_order_sum` without its transpose, which would
    make a short axis minor)."""
    n = x.shape[0]
    size = 1 << max(0, (n - 1).bit_length())
    if size != n:
        x = jnp.concatenate([x, jnp.zeros((size - n,) + x.shape[1:], x.dtype)])
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        x = x[:h] + x[h:]
    return x[0]


def _bandit_probs(st: Static, theta, m, sd) -> jax.Array:
    """``P(. )`` ``[A]`` of the TS-with-lapse and BLASTS agents (:mod:`bandit_models`)."""
    if st.kind == "ts_lapse":
        p = jax.vmap(bandit_models.ts_argmax_prob, in_axes=(None, None, 0))(
            m, sd, jnp.arange(st.n_actions))
    else:
        nodes, _ = zeta_nodes(st)
        p = bandit_models.blasts_probs(m, sd, theta[7], jnp.asarray(nodes))
    return bandit_models.lapse(p, theta[6], st.n_actions)


def sample_zeta_action(st: Static, theta, lat: Latent, s, z, u, ns=0.0) -> jax.Array:
    """The agent's own choice (the simulator): one zeta draw ``z`` then ``a ~ softmax`` (with
    the perseveration bonus inside and the lapse outside, where the model has them); the
    ``qlearn`` and ``rlwm`` agents draw from their choice probabilities."""
    if st.kind in ("qlearn", "rlwm"):
        return policy.sample_action(action_probs(st, theta, lat, s, ns), u)
    q_row = _bonus(st, theta, lat, lat.q[s])
    return policy.sample_action(_lapse(st, theta, policy.probs(q_row, lat.sigma[s], z, theta[BETA])), u)


def _sincos_2pi(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(cos, sin)(2 pi u)`` for ``u`` in [0, 1), to float32 rounding (absolute error < 2e-7
    against the exact value, tests/test_fit.py; ``jnp.cos(2 pi u)`` in float32 is off by up to
    4e-7 from rounding ``2 pi u``): the argument is reduced exactly in units of turns
    (``w = 4 (u - round(u))``, ``r = w - round(w)`` in [-1/2, 1/2]: float subtractions that lose no
    bits), then Taylor polynomials of ``sin, cos(pi r / 2)`` to degree 9 / 10 (truncation < 2e-9)
    and the quadrant's rotation. XLA's CPU ``cos`` and ``sin`` dominated the cost of the
    rollouts' noise (docs/results/fitting.md, "Fitting speed and devices"); this is elementwise
    arithmetic that vectorizes."""
    w = 4.0 * (u - jnp.round(u))
    k = jnp.round(w)
    r = w - k
    x = (0.5 * np.pi) * r
    x2 = x * x
    s = x * (1.0 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 / 362880))))
    c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24 + x2 * (-1.0 / 720 + x2 * (1.0 / 40320
                                                                     - x2 / 3628800))))
    q = k.astype(jnp.int32) & 3  # quadrant: the angle is x + q pi / 2
    cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
    sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
    return cos, sin


def normal_box_muller(key, shape) -> jax.Array:
    """Standard normals by the Box-Muller transform (Box & Muller 1958) of
    ``jax.random.uniform`` pairs: ``sqrt(-2 log(1 - u1)) * (cos, sin)(2 pi u2)``
    (:func:`_sincos_2pi`). The same distribution as ``jax.random.normal``, whose inverse-erf
    transform is slow under vmap on CPU and dominated the filter's time; this is far cheaper
    (docs/guides/fitting.md, "Speed")."""
    m = math.prod(shape)
    h = (m + 1) // 2
    g = jax.random.uniform(key, (2, h))
    rad = jnp.sqrt(-2.0 * jnp.log1p(-g[0]))
    cos, sin = _sincos_2pi(g[1])
    return jnp.concatenate([rad * cos, rad * sin])[:m].reshape(shape)


def draw_noise(st: Static, key, shape=(), normal: str = "box_muller") -> tuple[jax.Array, jax.Array]:
    """The rollouts' noise of one update (for ``shape`` particles at once, particle axes last):
    uniforms ``[2, n_traj, *shape]`` (stimulus, action) and normals ``[A, n_traj, *shape]``
    (zeta), the normals by :func:`normal_box_muller` or (``normal="erfinv"``, the simulator's)
    by ``jax.random.normal``. (One agent, ``shape = ()``: the transposes of ``[n_traj, 2]`` and
    ``[n_traj, A]`` draws.)"""
    k1, k2 = jax.random.split(key)
    n, na = st.n_traj, st.n_actions
    zshape, ushape = ((n, na), (n, 2)) if shape == () else ((na, n) + shape, (2, n) + shape)
    z = jax.random.normal(k2, zshape) if normal == "erfinv" else normal_box_muller(k2, zshape)
    u = jax.random.uniform(k1, ushape)
    return (u.T, z.T) if shape == () else (u, z)


def _draw(cdf: list, u: jax.Array) -> jax.Array:
    """Inverse-CDF draws ``[n]`` from unnormalized prefix sums ``cdf`` (a list of ``[...]`` or
    ``[n]`` arrays), one uniform each: the index of the first ``cdf[i] > u * cdf[-1]``
    (:func:`dra_jax.core.policy.sample_action`, written over a static list)."""
    t = u * cdf[-1]
    k = sum((c <= t).astype(jnp.int32) for c in cdf)
    return jnp.minimum(k, len(cdf) - 1)


def _sigma_grad(st: Static, theta, lat: Latent, block: jax.Array, noise) -> jax.Array:
    """``mean_n Psi_n * score_n - lam * dKL/dsigma`` over the block's memories, ``[S, A, *B]``
    (Algorithm 1 step 2-3 for a one-step task; Eq. 5, Eq. 6): rollout n draws a stimulus
    ``s_n`` uniformly from the block, ``a_n ~ softmax(beta * (q[s_n] + zeta_n * sigma[s_n]))``,
    and adds ``Psi_n * beta * zeta_n * (onehot(a_n) - pi_n)`` to row ``s_n``.

    Written as elementwise chains over ``[n_traj, *B]`` arrays (``B``: trailing particle axes,
    :func:`draw_noise`'s layout; static loops over the few stimuli and actions select rows and
    scatter back): no gathers, no ``[n, S, A]`` intermediate (which XLA's CPU backend
    materializes, at a cost far above the rollouts' own), and the particle axis minor (with the
    short rollout axis minor, XLA's CPU loops vectorize badly)."""
    lam, beta, sigma_base = theta[0], theta[1], theta[4]
    n, ns, na = st.n_traj, st.n_states, st.n_actions
    u, zeta = noise  # [2, n, *B], [A, n, *B]
    pmask = block / jnp.sum(block)
    cum = [pmask[0]]
    for i in range(1, ns):
        cum.append(cum[-1] + pmask[i])
    s = _draw(cum, u[0])  # [n, *B] stimuli of the block
    hit = [s == i for i in range(ns)]
    q_rows = [sum(jnp.where(hit[i], lat.q[i, a], 0.0) for i in range(ns)) for a in range(na)]
    s_rows = [sum(jnp.where(hit[i], lat.sigma[i, a], 0.0) for i in range(ns)) for a in range(na)]
    x = [beta * (q_rows[a] + zeta[a] * s_rows[a]) for a in range(na)]
    m = x[0]
    for a in range(1, na):
        m = jnp.maximum(m, x[a])
    e = [jnp.exp(xa - m) for xa in x]
    den = _sum0(jnp.stack(e))
    p = [ea / den for ea in e]  # policy.probs, same arithmetic
    cdf = [p[0]]
    for a in range(1, na):
        cdf.append(cdf[-1] + p[a])
    act = _draw(cdf, u[1])  # [n, *B]
    q_sa = sum(jnp.where(act == a, q_rows[a], 0.0) for a in range(na))
    psi = q_sa - sum(q_rows) / na if st.psi == "A" else q_sa
    c = [(psi / n) * (beta * zeta[a] * ((act == a).astype(jnp.float32) - p[a]))
         for a in range(na)]
    g = jnp.stack([jnp.stack([_sum0(jnp.where(hit[i], c[a], 0.0)) for a in range(na)])
                   for i in range(ns)])  # [S, A, *B]
    learn = (block > 0).reshape((ns,) + (1,) * (g.ndim - 1))
    g = jnp.where(learn, g - lam * memory.kl_grad(lat.sigma, sigma_base), 0.0)
    if st.kind == "dra_equal":
        g = jnp.where(learn, _sum0(g.reshape((ns * na,) + g.shape[2:])), 0.0)
    return g


def update(st: Static, theta: jax.Array, lat: Latent, s, a, r, block: jax.Array, noise) -> Latent:
    """One observed trial ``(s, a, r)``: delta rule on ``q[s, a]``; for DRA then ``n_traj``
    gradient rollouts and one optax ascent step on sigma (``block``: the stimuli ``[S]`` of the
    current block, where rollouts draw their stimuli; ``noise`` from :func:`draw_noise`). Not a
    bandit kind: ``lat``'s arrays may carry trailing particle axes (``q [S, A, *B]``), updated
    at once with the noise of ``draw_noise(st, key, B)``."""
    if st.kind in BANDIT_KINDS:  # the conjugate posterior of the pulled arm
        m, sd = bandit_models.update(lat.q[s], lat.sigma[s], a, r, theta[NOISE_SD])
        return lat._replace(q=lat.q.at[s].set(m), sigma=lat.sigma.at[s].set(sd))
    if st.stick:
        lat = lat._replace(prev=choice_onehot(a, lat.prev))
    if st.kind == "rlwm":
        return _rlwm_update(st, theta, lat, s, a, r)
    q = lat.q
    if st.forget:  # decay toward the initial means, every entry
        q = q + theta[FORGET] * (q_init(st) - q)
    q = q.at[s, a].add(theta[ALPHA_Q] * (r - q[s, a]))
    lat = lat._replace(q=q)
    if not STOCHASTIC[st.kind]:
        return lat
    g = _sigma_grad(st, theta, lat, block, noise)
    upd, opt = optimizer(st, theta[ALPHA_SIGMA]).update(-g, lat.opt, lat.sigma)
    sigma = jnp.clip(optax.apply_updates(lat.sigma, upd), st.sigma_min, st.sigma_max)
    return lat._replace(sigma=sigma, opt=opt)


def choice_onehot(a, like: jax.Array) -> jax.Array:
    """``onehot(a)`` on the leading (action) axis of ``like [A, *B]`` (the last choice)."""
    hot = jnp.arange(like.shape[0]) == a
    return jnp.broadcast_to(hot.reshape(hot.shape + (1,) * (like.ndim - 1)), like.shape).astype(
        like.dtype)


def _rlwm_update(st: Static, theta, lat: Latent, s, a, r) -> Latent:
    """RLWM's update after an answered trial (Collins & Frank 2012; Collins 2024's variants), in
    this order: ``WM <- WM + forget * (1/A - WM)`` on every entry; ``Q[s, a] += alpha_q * b_RL *
    (rv - Q[s, a])`` with ``rv = r0`` and ``b_RL = bias_rl`` after a reward of 0 (else ``rv = r``,
    ``b_RL = 1``); ``WM[s, a] += b_WM * (r - WM[s, a])`` with ``b_WM = bias_wm`` after a reward
    of 0 (else 1)."""
    zero = r == 0
    wm = lat.wm + theta[FORGET] * (q_init(st) - lat.wm)
    rv = jnp.where(zero, theta[R0], r)
    b_rl = jnp.where(zero, theta[BIAS_RL], 1.0)
    b_wm = jnp.where(zero, theta[BIAS_WM], 1.0)
    q = lat.q.at[s, a].add(theta[ALPHA_Q] * b_rl * (rv - lat.q[s, a]))
    wm = wm.at[s, a].add(b_wm * (r - wm[s, a]))
    return lat._replace(q=q, wm=wm)
