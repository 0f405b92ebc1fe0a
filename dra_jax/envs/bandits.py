"""K-armed Gaussian and Bernoulli bandits (the review's Sec. "Experiments") as gymnax tasks.

* **Gaussian**: arm means ``theta_a ~ N(prior_mean, prior_sd^2)`` drawn at reset, rewards
  ``r ~ N(theta_a, noise_sd^2)`` (the review: prior N(0, 1), unit noise).
* **Bernoulli**: arm means ``theta_a ~ Beta(prior_a, prior_b)`` drawn at reset, rewards
  ``r ~ Bernoulli(theta_a)`` (the review: Beta(1, 1) prior).

The agent's exact Bayesian beliefs are conjugate: :class:`Belief` holds two arrays per arm,
``(mean, precision)`` of a Normal for the Gaussian bandit and ``(alpha, beta)`` of a Beta for the
Bernoulli bandit; :func:`update_belief` is the closed-form posterior update and
:func:`sample_belief` draws environments ``theta ~ posterior``. All are pure functions.

The bandit is one state; its observation is that state's index (always 0), so the one-state
DRA agent reads memory row 0. A bandit run is one long episode; ``max_steps_in_episode`` is a
truncation (never a termination).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

KINDS = ("gaussian", "bernoulli")


@struct.dataclass
class EnvState(environment.EnvState):
    """``means``: the arms' true mean rewards theta (drawn at reset); ``time``: pulls so far."""

    means: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Prior and noise of the bandit (traced: a sweep over them does not recompile).

    Gaussian: ``theta ~ N(prior_mean, prior_sd^2)``, ``r ~ N(theta, noise_sd^2)``.
    Bernoulli: ``theta ~ Beta(prior_a, prior_b)``, ``r ~ Bernoulli(theta)``.
    """

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    noise_sd: float = 1.0
    prior_a: float = 1.0
    prior_b: float = 1.0
    max_steps_in_episode: int = 1_000_000


class Bandit(environment.Environment[EnvState, EnvParams]):
    """K-armed bandit; ``kind`` ('gaussian' | 'bernoulli') and ``arms`` are static."""

    def __init__(self, arms: int, kind: str = "gaussian"):
        if kind not in KINDS:
            raise ValueError(f"unknown bandit kind {kind!r}; expected one of {KINDS}")
        if arms < 1:
            raise ValueError(f"arms must be >= 1, got {arms}")
        self.arms = int(arms)
        self.kind = kind

    # gymnax uses the environment object as a static jit argument: hash/eq by value.
    def __hash__(self):
        return hash((type(self), self.arms, self.kind))

    def __eq__(self, other):
        return type(self) is type(other) and (self.arms, self.kind) == (other.arms, other.kind)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def draw_means(self, key: jax.Array, params: EnvParams) -> jax.Array:
        """Arm means theta drawn from the prior."""
        if self.kind == "gaussian":
            z = jax.random.normal(key, (self.arms,))
            return params.prior_mean + params.prior_sd * z
        return sample_beta(key, params.prior_a, params.prior_b, (self.arms,))

    def reward(self, key: jax.Array, means: jax.Array, action: jax.Array, params: EnvParams) -> jax.Array:
        """One reward of arm ``action``."""
        m = means[action]
        if self.kind == "gaussian":
            return m + params.noise_sd * jax.random.normal(key, m.shape)
        return (jax.random.uniform(key, m.shape) < m).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        state = EnvState(means=self.draw_means(key, params), time=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
                 ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        r = self.reward(key, state.means, action, params)
        best = jnp.max(state.means)
        new = EnvState(means=state.means, time=state.time + 1)
        info = {"regret": best - state.means[action], "discount": jnp.float32(1.0)}
        return self.get_obs(new, params), new, r, jnp.array(False), info

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        return jnp.int32(0)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.array(False)

    @property
    def name(self) -> str:
        return f"{self.kind.capitalize()}Bandit-{self.arms}"

    @property
    def num_actions(self) -> int:
        return self.arms

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.arms)

    def observation_space(self, params: EnvParams) -> spaces.Discrete:
        return spaces.Discrete(1)

    def state_space(self, params: EnvParams) -> spaces.Dict:
        return spaces.Dict({"means": spaces.Box(-jnp.inf, jnp.inf, (self.arms,), jnp.float32),
                            "time": spaces.Discrete(params.max_steps_in_episode)})


# --------------------------------------------------------------------------- beliefs


class Belief(NamedTuple):
    """Per-arm conjugate posterior: Normal ``(a=mean, b=precision)`` or Beta ``(a=alpha, b=beta)``."""

    a: jax.Array
    b: jax.Array


def prior_belief(kind: str, arms: int, params: EnvParams) -> Belief:
    """The prior as a :class:`Belief` (N(prior_mean, prior_sd^2) or Beta(prior_a, prior_b))."""
    ones = jnp.ones((arms,), jnp.float32)
    if kind == "gaussian":
        return Belief(ones * params.prior_mean, ones / (params.prior_sd * params.prior_sd))
    return Belief(ones * params.prior_a, ones * params.prior_b)


def gaussian_update(belief: Belief, action: jax.Array, reward: jax.Array, noise_sd: float | jax.Array = 1.0) -> Belief:
    """Normal-Normal update with known noise: ``tau' = tau + 1/s^2``, ``m' = (tau m + r/s^2) / tau'``."""
    noise_prec = 1.0 / (noise_sd * noise_sd)
    m, tau = belief.a[action], belief.b[action]
    tau_new = tau + noise_prec
    m_new = (tau * m + noise_prec * reward) / tau_new
    return Belief(belief.a.at[action].set(m_new), belief.b.at[action].set(tau_new))


def bernoulli_update(belief: Belief, action: jax.Array, reward: jax.Array) -> Belief:
    """Beta-Bernoulli update: ``alpha += r``, ``beta += 1 - r`` at the pulled arm."""
    return Belief(belief.a.at[action].add(reward), belief.b.at[action].add(1.0 - reward))


def update_belief(kind: str, belief: Belief, action, reward, params: EnvParams) -> Belief:
    """Exact conjugate posterior after one ``(action, reward)``; ``kind`` is static."""
    if kind == "gaussian":
        return gaussian_update(belief, action, reward, params.noise_sd)
    return bernoulli_update(belief, action, reward)


GAMMA_PROPOSALS = 4


def gamma_from_uniforms(u: jax.Array, a: jax.Array, n_proposals: int = GAMMA_PROPOSALS) -> jax.Array:
    """``Gamma(a, 1)`` draws by Marsaglia & Tsang (2000) from ``2 n_proposals + 1`` uniforms each.

    ``u``: uniforms in (0, 1) of shape ``(2 n_proposals + 1,) + a.shape``. Each draw makes
    ``n_proposals`` proposals at once (normals by the inverse CDF) and keeps the first accepted
    one, so there is no data-dependent loop (``jax.random.gamma`` loops per element, which is
    slow under ``vmap``). The acceptance probability is >= 0.951 for every shape
    (``a < 1`` is boosted: ``Gamma(a) = Gamma(a + 1) U^(1/a)``), so with 4 proposals a draw
    falls back to its last proposal with probability < 6e-6, a bias far below Monte-Carlo error.
    """
    p = n_proposals
    boost = a < 1.0
    ab = jnp.where(boost, a + 1.0, a)
    d = ab - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)
    x = jax.scipy.special.ndtri(u[:p])
    v = (1.0 + c * x) ** 3
    vpos = v > 0
    logv = jnp.log(jnp.where(vpos, v, 1.0))
    ok = vpos & (jnp.log(u[p:2 * p]) < 0.5 * x * x + d - d * v + d * logv)
    first = jnp.argmax(ok, axis=0)
    v_acc = jnp.take_along_axis(v, first[None], axis=0)[0]
    g = d * jnp.where(v_acc > 0, v_acc, 1.0)
    return jnp.where(boost, g * u[2 * p] ** (1.0 / a), g)


def _open_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.uniform(key, shape, minval=jnp.finfo(jnp.float32).tiny)


def sample_gamma(key: jax.Array, a: jax.Array, shape: tuple[int, ...],
                 n_proposals: int = GAMMA_PROPOSALS) -> jax.Array:
    """``Gamma(a, 1)`` draws of ``shape`` (:func:`gamma_from_uniforms`, one random call)."""
    a = jnp.broadcast_to(a, shape)
    return gamma_from_uniforms(_open_uniform(key, (2 * n_proposals + 1,) + shape), a, n_proposals)


def sample_beta(key: jax.Array, a: jax.Array, b: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``Beta(a, b) = X / (X + Y)``, ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``, from one random call."""
    p = GAMMA_PROPOSALS
    u = _open_uniform(key, (2, 2 * p + 1) + tuple(shape))
    x = gamma_from_uniforms(u[0], jnp.broadcast_to(a, shape), p)
    y = gamma_from_uniforms(u[1], jnp.broadcast_to(b, shape), p)
    return x / (x + y)


def midpoint_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniforms ``(i + 1/2) 2^-23``, ``i`` from 23 random bits: in (0, 1), symmetric about 1/2."""
    i = jax.random.bits(key, shape, jnp.uint32) >> 9
    return (i.astype(jnp.float32) + 0.5) * jnp.float32(2.0 ** -23)


def ndtri_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normals by the inverse CDF, ``ndtri`` of :func:`midpoint_uniform` (tails cut at
    +-5.3, as ``jax.random.normal``'s are). Same law as ``jax.random.normal`` (whose ``erf_inv``
    is slower under ``vmap`` on CPU), different numbers from the same key."""
    return jax.scipy.special.ndtri(midpoint_uniform(key, shape))


def sample_belief(kind: str, key: jax.Array, belief: Belief, n: int | None = None,
                  normal=jax.random.normal) -> jax.Array:
    """Environments ``theta ~ posterior``: shape ``[arms]`` (``n=None``) or ``[n, arms]``;
    ``normal(key, shape)`` gives the Gaussian bandit's standard normals."""
    shape = belief.a.shape if n is None else (n,) + belief.a.shape
    if kind == "gaussian":
        return belief.a + normal(key, shape) * jax.lax.rsqrt(belief.b)
    return sample_beta(key, belief.a, belief.b, shape)


def posterior_mean(kind: str, belief: Belief) -> jax.Array:
    """Posterior mean reward of each arm."""
    if kind == "gaussian":
        return belief.a
    return belief.a / (belief.a + belief.b)
