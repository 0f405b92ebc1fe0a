"""Tabular episodic MDPs with Bayesian beliefs (the review's Appendix B setting).

An MDP here is ``<S, A, U, T, rho, H>``: horizon ``H``, a known initial distribution ``rho``,
unknown transitions and unknown Bernoulli rewards with means in [0, 1]. Transitions are stored
sparsely: every ``(s, a)`` has ``K`` candidate successors ``succ[s, a, k]`` (known to the agent:
the structure of the prior), of which ``support[s, a, k]`` are distinct and allowed, with
probabilities ``P[s, a, k]``. A dense MDP has ``K = S`` and ``succ[s, a, k] = k``.

Tasks (:func:`riverswim`, :func:`random_mdp`, :func:`slippery_grid`) return a :class:`Structure`
(static numpy: ``succ``, ``support``, ``rho``) and a true :class:`MDP` (arrays ``P``, ``R``).

Beliefs (:class:`Belief`) are conjugate: a Dirichlet over ``P[s, a, :]`` on the support with
concentrations ``alpha0 + n(s, a, k)`` and a Beta over ``R[s, a]`` with ``(a0 + successes,
b0 + failures)``. :func:`update_belief` is the closed-form update, :func:`sample_mdp` draws an
MDP from the posterior (Algorithm 6, line 3). :func:`value_iteration` is exact finite-horizon
dynamic programming ``Q_h = R + P V_{h+1}``, ``V_h = max_a Q_h``, ``V_H = 0``;
:func:`policy_values` evaluates a non-stationary deterministic policy the same way.

Two faces for acting: :class:`EpisodicMDP`, a gymnax ``Environment``, and :class:`EpisodicTask`,
the lane-task interface of the DRA engine (:mod:`dra_jax.lane.agent`), whose memory rows are
``(h, s)`` (the optimal policy of a finite horizon depends on the steps left) and which keeps a
PRNG key in its state, seeded at reset from the engine's uniform ``u``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from dra_jax.envs import gridworld

TASKS = ("riverswim", "random", "grid")


class Structure(NamedTuple):
    """What the agent knows: successor candidates, which are allowed, the initial law."""

    succ: np.ndarray  # int32 [S, A, K]
    support: np.ndarray  # bool [S, A, K]
    rho: np.ndarray  # float32 [S]


class MDP(NamedTuple):
    """Transition probabilities over the candidates and Bernoulli reward means."""

    P: jax.Array  # [S, A, K]
    R: jax.Array  # [S, A]


# --------------------------------------------------------------------------- tasks


def riverswim(n: int = 6) -> tuple[Structure, MDP]:
    """RiverSwim (Strehl & Littman 2008; the PSRL benchmark of Osband et al. 2013), rewards
    scaled to [0, 1]: action 0 (left) moves left surely, reward 5/1000 at the left bank; action 1
    (right) moves right w.p. 0.35 (0.6 at the left bank), stays w.p. 0.6 (0.4 at the left bank),
    moves left w.p. 0.05; at the right bank it stays w.p. 0.6 with reward 1 (mean), else moves
    left. Start: the left bank."""
    succ = np.zeros((n, 2, 3), np.int32)
    P = np.zeros((n, 2, 3), np.float32)
    for s in range(n):
        for a in range(2):
            succ[s, a] = [max(s - 1, 0), s, min(s + 1, n - 1)]
        P[s, 0] = [1.0, 0.0, 0.0]  # at the left bank candidate 0 is the bank itself
        if s == 0:
            P[s, 1] = [0.4, 0.0, 0.6]
        elif s == n - 1:
            P[s, 1] = [0.4, 0.6, 0.0]
        else:
            P[s, 1] = [0.05, 0.6, 0.35]
    support = _distinct(succ)
    R = np.zeros((n, 2), np.float32)
    R[0, 0] = 0.005
    R[n - 1, 1] = 1.0
    rho = np.zeros(n, np.float32)
    rho[0] = 1.0
    return Structure(succ, support, rho), MDP(jnp.asarray(P), jnp.asarray(R))


def _distinct(succ: np.ndarray) -> np.ndarray:
    """``support[s, a, k]``: ``succ[s, a, k]`` is the first occurrence among the candidates."""
    S, A, K = succ.shape
    sup = np.ones((S, A, K), bool)
    for k in range(1, K):
        sup[:, :, k] = np.all(succ[:, :, :k] != succ[:, :, k:k + 1], axis=-1)
    return sup


def dense_structure(n_states: int, n_actions: int) -> Structure:
    """Every state a candidate successor of every pair; uniform initial state."""
    succ = np.broadcast_to(np.arange(n_states, dtype=np.int32), (n_states, n_actions, n_states))
    return Structure(np.ascontiguousarray(succ), np.ones((n_states, n_actions, n_states), bool),
                     np.full(n_states, 1.0 / n_states, np.float32))


def random_mdp(key, st: Structure, alpha0: float, a0: float, b0: float) -> MDP:
    """A true MDP drawn from the prior (Bayesian regret): ``P ~ Dir(alpha0)`` on the support,
    ``R ~ Beta(a0, b0)``."""
    return sample_mdp(key, prior_belief(st, alpha0, a0, b0))


def slippery_grid(slip: float = 0.2, layout: gridworld.Layout = gridworld.Layout()
                  ) -> tuple[Structure, MDP]:
    """The DRA grid-world (Fig. 1 maze), slippery: a move goes as intended w.p. ``1 - slip``
    and, w.p. ``slip``, as one of the four moves drawn uniformly. The goal is absorbing with
    reward 1 per step (mean 1), every other pair has reward 0: maximizing the return is reaching
    the goal in the fewest steps. Candidates of ``(s, a)``: the cells the four moves reach."""
    t = gridworld.build_tables((layout,))
    nxt = t.next_state[0]  # [S, 4]
    S = nxt.shape[0]
    goal = layout.index(layout.goal)
    succ = np.repeat(nxt[:, None, :], 4, axis=1).astype(np.int32)  # [S, A, K=4]
    succ[goal] = goal
    support = _distinct(succ)
    P = np.zeros((S, 4, 4), np.float32)
    for s in range(S):
        for a in range(4):
            probs = np.full(4, slip / 4.0)
            probs[a] += 1.0 - slip
            for k in range(4):  # fold duplicate cells onto their first candidate
                first = int(np.argmax(succ[s, a] == succ[s, a, k]))
                P[s, a, first] += probs[k]
    R = np.zeros((S, 4), np.float32)
    R[goal] = 1.0
    rho = np.zeros(S, np.float32)
    rho[t.start] = 1.0
    return Structure(succ, support, rho), MDP(jnp.asarray(P), jnp.asarray(R))


# --------------------------------------------------------------------------- planning


def dense_transitions(P: jax.Array, succ) -> jax.Array:
    """``T[s, a, s'] = sum_k P[s, a, k] [succ[s, a, k] = s']`` (``P [S, A, K]``): the candidate
    layout scattered into a dense ``[S, A, S]`` table once, so each backup below is one
    matrix-vector product instead of a gather (faster vmapped over samples and runs)."""
    S = P.shape[0]
    return jnp.einsum("sak,sakt->sat", P, jax.nn.one_hot(jnp.asarray(succ), S, dtype=P.dtype))


def value_iteration(mdp: MDP, succ, H: int):
    """Exact finite-horizon DP: ``Q [H, S, A]``, ``V [H + 1, S]`` (``V[H] = 0``) and the greedy
    policy ``pi [H, S]`` (lowest action index on ties)."""
    S = mdp.R.shape[0]
    T = dense_transitions(mdp.P, succ)

    def back(v_next, _):
        q = mdp.R + T @ v_next
        return jnp.max(q, axis=-1), q

    v0, qs = jax.lax.scan(back, jnp.zeros((S,), mdp.R.dtype), None, length=H)
    Q = qs[::-1]
    V = jnp.concatenate([jnp.max(Q, axis=-1), jnp.zeros((1, S), Q.dtype)])
    return Q, V, jnp.argmax(Q, axis=-1).astype(jnp.int32)


def policy_values(mdp: MDP, succ, pi: jax.Array) -> jax.Array:
    """``V^pi [H + 1, S]`` of the non-stationary deterministic policy ``pi [H, S]``."""
    H, S = pi.shape
    T = dense_transitions(mdp.P, succ)

    def back(v_next, pi_h):
        q = mdp.R + T @ v_next
        v = jnp.take_along_axis(q, pi_h[:, None], axis=1)[:, 0]
        return v, v

    _, vs = jax.lax.scan(back, jnp.zeros((S,), mdp.R.dtype), pi[::-1])
    return jnp.concatenate([vs[::-1], jnp.zeros((1, S), vs.dtype)])


# --------------------------------------------------------------------------- beliefs


class Belief(NamedTuple):
    """Dirichlet concentrations ``[S, A, K]`` (0 off the support) and Beta ``(a, b) [S, A]``."""

    alpha: jax.Array
    ra: jax.Array
    rb: jax.Array


def prior_belief(st: Structure, alpha0, a0, b0) -> Belief:
    sup = jnp.asarray(st.support)
    S, A = sup.shape[:2]
    return Belief(jnp.where(sup, jnp.asarray(alpha0, jnp.float32), 0.0),
                  jnp.full((S, A), a0, jnp.float32), jnp.full((S, A), b0, jnp.float32))


def update_belief(b: Belief, s, a, k, r) -> Belief:
    """Conjugate update after ``(s, a) -> candidate k`` with reward ``r`` in {0, 1}."""
    r = jnp.asarray(r, jnp.float32)
    return Belief(b.alpha.at[s, a, k].add(1.0), b.ra.at[s, a].add(r), b.rb.at[s, a].add(1.0 - r))


GAMMA_TRIES = 4


def gamma(key, a: jax.Array, tries: int = GAMMA_TRIES) -> jax.Array:
    """``Gamma(a, 1)`` draws by Marsaglia & Tsang (2000) with a fixed number of proposals.

    For ``a >= 1``: ``d = a - 1/3``, ``c = 1/sqrt(9 d)``, proposal ``d (1 + c x)^3``,
    ``x ~ N(0, 1)``, accepted when ``log u < x^2/2 + d - d v + d log v``; the first accepted of
    ``tries`` proposals is returned (each is accepted w.p. > 0.95, so all ``tries = 4`` fail w.p.
    < 7e-6, when the last proposal is used: a negligible bias, measured in the tests). ``a < 1``
    uses ``Gamma(a) = Gamma(a + 1) u^(1/a)``. ``jax.random.gamma`` is exact but a per-element
    rejection loop, slow under vmap: with it, posterior sampling dominated an episode's time.
    """
    a = jnp.asarray(a, jnp.float32)
    small = a < 1.0
    aa = jnp.where(small, a + 1.0, a)
    d = aa - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    kx, ku, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (tries,) + a.shape)
    u = jax.random.uniform(ku, (tries,) + a.shape, minval=jnp.finfo(jnp.float32).tiny)
    v = (1.0 + c * x) ** 3
    vpos = jnp.where(v > 0, v, 1.0)
    ok = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * vpos + d * jnp.log(vpos))
    first = jnp.where(jnp.any(ok, axis=0), jnp.argmax(ok, axis=0), tries - 1)
    g = d * jnp.take_along_axis(vpos, first[None], axis=0)[0]
    boost = jax.random.uniform(kb, a.shape, minval=jnp.finfo(jnp.float32).tiny)
    return jnp.where(small, g * jnp.exp(jnp.log(boost) / jnp.where(small, a, 1.0)), g)


def sample_mdp(key, b: Belief) -> MDP:
    """One MDP from the posterior: ``P[s, a] ~ Dir(alpha[s, a])`` (on the support),
    ``R[s, a] ~ Beta(ra, rb)``, by normalized Gamma draws (:func:`gamma`)."""
    on = b.alpha > 0
    S, A, K = b.alpha.shape
    shapes = jnp.concatenate([jnp.where(on, b.alpha, 1.0), b.ra[..., None], b.rb[..., None]], -1)
    g = gamma(key, shapes)
    gp = jnp.where(on, g[..., :K], 0.0)
    P = gp / jnp.maximum(jnp.sum(gp, axis=-1, keepdims=True), jnp.finfo(jnp.float32).tiny)
    ga, gb = g[..., K], g[..., K + 1]
    return MDP(P, ga / jnp.maximum(ga + gb, jnp.finfo(jnp.float32).tiny))


def posterior_mean(b: Belief) -> MDP:
    return MDP(b.alpha / jnp.sum(b.alpha, axis=-1, keepdims=True), b.ra / (b.ra + b.rb))


def step_true(mdp: MDP, succ, s, a, u_next, u_rew):
    """One step of the true MDP from two uniforms: candidate ``k`` by the inverse CDF, reward
    ``r = [u_rew < R[s, a]]``. Returns ``(k, s', r)``."""
    cdf = jnp.cumsum(mdp.P[s, a])
    K = cdf.shape[0]
    k = jnp.minimum(jnp.sum(u_next * cdf[-1] >= cdf), K - 1).astype(jnp.int32)
    # skip candidates of zero probability the rounding of the CDF could land on
    k = jnp.where(mdp.P[s, a, k] > 0, k, jnp.argmax(mdp.P[s, a] > 0).astype(jnp.int32))
    return k, jnp.asarray(succ)[s, a, k], (u_rew < mdp.R[s, a]).astype(jnp.float32)


def sample_start(rho, u) -> jax.Array:
    cdf = jnp.cumsum(jnp.asarray(rho))
    return jnp.minimum(jnp.sum(u * cdf[-1] >= cdf), cdf.shape[0] - 1).astype(jnp.int32)


# --------------------------------------------------------------------------- gymnax face


@struct.dataclass
class EnvState(environment.EnvState):
    s: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    P: jax.Array = None
    R: jax.Array = None
    max_steps_in_episode: int = 20


class EpisodicMDP(environment.Environment[EnvState, EnvParams]):
    """A tabular episodic MDP as a gymnax environment (observation: the state index). The
    true MDP is in the traced ``EnvParams``; the horizon is ``max_steps_in_episode``."""

    def __init__(self, st: Structure):
        super().__init__()
        self.st = st

    @property
    def default_params(self) -> EnvParams:
        S, A, K = self.st.succ.shape
        return EnvParams(P=jnp.full((S, A, K), 1.0 / K), R=jnp.zeros((S, A)))

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        u = jax.random.uniform(key, (2,))
        _, s2, r = step_true(MDP(params.P, params.R), self.st.succ, state.s, action, u[0], u[1])
        state = EnvState(s=s2, time=state.time + 1)
        done = self.is_terminated(state, params)
        return s2, state, r, done, {"discount": self.discount(state, params)}

    def reset_env(self, key, params: EnvParams):
        s = sample_start(self.st.rho, jax.random.uniform(key))
        return s, EnvState(s=s, time=0)

    def get_obs(self, state: EnvState, params=None, key=None):
        return state.s

    def is_terminated(self, state: EnvState, params: EnvParams):
        """The horizon ends a finite-horizon episode (a termination: nothing follows it)."""
        return state.time >= params.max_steps_in_episode

    @property
    def name(self) -> str:
        return "EpisodicMDP"

    @property
    def num_actions(self) -> int:
        return int(self.st.succ.shape[1])

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: EnvParams):
        return spaces.Discrete(int(self.st.succ.shape[0]))

    def state_space(self, params: EnvParams):
        return spaces.Dict({"s": spaces.Discrete(int(self.st.succ.shape[0])),
                            "time": spaces.Discrete(params.max_steps_in_episode + 1)})


# --------------------------------------------------------------------------- lane-task face


class TaskState(NamedTuple):
    s: jax.Array
    h: jax.Array
    key: jax.Array  # uint32[2] raw key data (the engine selects states with jnp.where)


@dataclass(frozen=True, eq=False)
class EpisodicTask:
    """The lane-task interface of :mod:`dra_jax.lane.agent` on one structure and horizon. The true
    MDP is per run: ``tparams["P"]``, ``tparams["R"]``. Memory row ``h * S + s``; every memory
    is learned. ``step`` draws from the key kept in the state (seeded at reset from ``u``) and
    terminates after ``H`` steps."""

    st: Structure
    H: int

    @property
    def n_states(self) -> int:
        return int(self.st.succ.shape[0]) * self.H

    @property
    def n_actions(self) -> int:
        return int(self.st.succ.shape[1])

    @property
    def learnable(self) -> np.ndarray:
        return np.ones((self.n_states, self.n_actions), bool)

    def reset(self, u, tparams, episode):
        bits = jax.lax.bitcast_convert_type(jnp.asarray(u, jnp.float32), jnp.uint32)
        key = jax.random.fold_in(jax.random.key(0x5eed), bits)
        k0, k1 = jax.random.split(key)
        s = sample_start(self.st.rho, jax.random.uniform(k0))
        return TaskState(s, jnp.int32(0), jax.random.key_data(k1))

    def step(self, state: TaskState, action, tparams, episode):
        key = jax.random.wrap_key_data(state.key)
        k_next, k_u = jax.random.split(key)
        u = jax.random.uniform(k_u, (2,))
        _, s2, r = step_true(MDP(tparams["P"], tparams["R"]), self.st.succ, state.s, action,
                             u[0], u[1])
        h2 = state.h + 1
        return TaskState(s2, h2, jax.random.key_data(k_next)), r, h2 >= self.H

    def row(self, state: TaskState, tparams):
        return jnp.minimum(state.h, self.H - 1) * int(self.st.succ.shape[0]) + state.s
