"""The planning task of Huys et al. (2015), Sec. 4.1 of the paper, as a gymnax environment.

Six states, two moves from each (docs/design.md, "Tasks"; 1-based as in Fig. 3a, state ->
(successor, reward))::

    1 -> (2, +140), (4, +20)      2 -> (3, -20), (5, -70)      3 -> (4, -20), (6, -70)
    4 -> (2, +20),  (5, -20)      5 -> (1, -70), (6, -20)      6 -> (1, -20), (3, +20)

A trial starts in a state drawn uniformly from the six and is exactly ``M`` moves long
(``M in {3, 4, 5}``). The task is made Markov by extending the state with the moves left
``k in {1..M}``; the agent's memories are a ``[6, M, 2]`` table indexed ``[s, k - 1, a]``
(``6 x M x 2`` memories: 36 for ``M = 3``, as in the paper).

Everything here is 0-based: state ``i`` is the paper's ``i + 1``.

* :func:`q_star`: optimal q by backward induction,
  ``q*[s, k-1, a] = r(s, a) + max_a' q*[s'(s, a), k-2, a']`` with ``q*[., -1, .] = 0``; it is the
  fixed point of q-learning on the extended MDP (gamma = 1).
* :func:`brute_force_q`: the same table by enumerating every move sequence (a check).
* :class:`PlanningEnv`: ``reset_env`` / ``step_env`` of the gymnax API.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

N_STATES = 6
N_ACTIONS = 2
MOVES_CHOICES = (3, 4, 5)

# 0-based (successor, reward) per (state, action)
_SPEC = (
    ((1, 140.0), (3, 20.0)),
    ((2, -20.0), (4, -70.0)),
    ((3, -20.0), (5, -70.0)),
    ((1, 20.0), (4, -20.0)),
    ((0, -70.0), (5, -20.0)),
    ((0, -20.0), (2, 20.0)),
)
NEXT_STATE = np.array([[nxt for nxt, _ in row] for row in _SPEC], np.int32)  # [6, 2]
REWARD = np.array([[r for _, r in row] for row in _SPEC], np.float32)  # [6, 2]


def full_budget(moves: int) -> int:
    """``M * 2^M``: the transitions needed to explore every path (each path costs M)."""
    return moves * 2 ** moves


def q_star(moves: int) -> np.ndarray:
    """Optimal q ``[6, M, 2]`` (index ``[s, k-1, a]``, k = moves left) by backward induction."""
    q = np.zeros((N_STATES, moves, N_ACTIONS), np.float64)
    for k in range(1, moves + 1):
        cont = np.zeros(N_STATES) if k == 1 else q[:, k - 2, :].max(axis=1)
        q[:, k - 1, :] = REWARD + cont[NEXT_STATE]
    return q.astype(np.float32)


def path_reward(s0: int, actions) -> tuple[float, list[int]]:
    """Cumulative reward and visited states of the move sequence ``actions`` from ``s0``."""
    s, total, states = int(s0), 0.0, [int(s0)]
    for a in actions:
        total += float(REWARD[s, int(a)])
        s = int(NEXT_STATE[s, int(a)])
        states.append(s)
    return total, states


def brute_force_q(moves: int) -> np.ndarray:
    """``q[s, k-1, a]`` = the best total reward of all ``2^(k-1)`` continuations after taking
    ``a`` in ``s`` with ``k`` moves left, by enumerating every sequence (no recursion)."""
    q = np.zeros((N_STATES, moves, N_ACTIONS), np.float32)
    for s, k, a in itertools.product(range(N_STATES), range(1, moves + 1), range(N_ACTIONS)):
        q[s, k - 1, a] = max(path_reward(s, (a, *rest))[0]
                             for rest in itertools.product(range(N_ACTIONS), repeat=k - 1))
    return q


def best_paths(moves: int) -> np.ndarray:
    """Best total reward of an ``M``-move trial from each start state, ``[6]`` (all 2^M paths)."""
    return np.array([max(path_reward(s, seq)[0]
                         for seq in itertools.product(range(N_ACTIONS), repeat=moves))
                     for s in range(N_STATES)], np.float32)


def impact(moves: int) -> np.ndarray:
    """``|q*(s, k, 1) - q*(s, k, 2)|`` per extended state ``[6, M]``: what a wrong choice costs."""
    q = q_star(moves)
    return np.abs(q[..., 0] - q[..., 1])


# ------------------------------------------------------------------ gymnax environment


@struct.dataclass
class EnvState(environment.EnvState):
    state: jax.Array  # 0..5
    moves_left: jax.Array  # M..0
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    moves: int = struct.field(pytree_node=False, default=3)  # M shapes the memory table: static
    max_steps_in_episode: int = 1000  # never reached: a trial terminates after M moves


class PlanningEnv(environment.Environment[EnvState, EnvParams]):
    """The Huys et al. task. Observation: ``[state, moves_left]`` (int32); the memory row of an
    observation is ``(state, moves_left - 1)``. Terminates after exactly ``params.moves`` moves."""

    def __init__(self):
        super().__init__()
        self._next = jnp.asarray(NEXT_STATE)
        self._rew = jnp.asarray(REWARD)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        a = jnp.asarray(action, jnp.int32)
        reward = self._rew[state.state, a]
        state = EnvState(state=self._next[state.state, a], moves_left=state.moves_left - 1,
                         time=state.time + 1)
        terminated = self.is_terminated(state, params)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward,
                terminated, {"discount": self.discount(state, params)})

    def reset_env(self, key, params: EnvParams):
        s0 = jax.random.randint(key, (), 0, N_STATES, jnp.int32)
        state = EnvState(state=s0, moves_left=jnp.int32(params.moves), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params=None, key=None):
        return jnp.stack([state.state, state.moves_left]).astype(jnp.int32)

    def is_terminated(self, state: EnvState, params: EnvParams):
        return state.moves_left <= 0

    @staticmethod
    def memory_row(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Index ``(s, k - 1)`` into the ``[6, M, 2]`` memory table."""
        return obs[0], obs[1] - 1

    @property
    def name(self) -> str:
        return "HuysPlanning-DRA"

    @property
    def num_actions(self) -> int:
        return N_ACTIONS

    def action_space(self, params=None):
        return spaces.Discrete(N_ACTIONS)

    def observation_space(self, params: EnvParams):
        return spaces.Box(0, max(N_STATES - 1, params.moves), (2,), jnp.int32)

    def state_space(self, params: EnvParams):
        return spaces.Dict({"state": spaces.Discrete(N_STATES),
                            "moves_left": spaces.Discrete(params.moves + 1),
                            "time": spaces.Discrete(params.moves + 1)})
