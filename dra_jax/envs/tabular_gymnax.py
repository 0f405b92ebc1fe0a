"""The gymnax face of tabular tasks: :class:`TabularEnv` (any :class:`TabularTask`) and
:class:`GridWorld` (the Fig. 1 maze with its switch), ``dra_jax.envs.make("GridWorldDRA-v0")``.

Kept apart from :mod:`dra_jax.envs.tabular` because importing gymnax takes seconds that the
lane engine never needs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from dra_jax.envs.gridworld import GridTask, Layout
from dra_jax.envs.tabular import TabularTask


@struct.dataclass
class EnvState(environment.EnvState):
    pos: jax.Array  # state index
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    stage: int = 0  # which stage's tables (traced; e.g. 1 = the grid-world's switched maze)
    max_steps_in_episode: int = 500


class TabularEnv(environment.Environment[EnvState, EnvParams]):
    """Any :class:`TabularTask` as a gymnax ``Environment``: observation = the state index,
    the stage chosen by the traced ``EnvParams.stage``; ``is_terminal`` includes gymnax's time
    limit ``max_steps_in_episode`` (``is_terminated`` is the task's own termination)."""

    def __init__(self, task: TabularTask, env_name: str | None = None):
        super().__init__()
        self.task = task
        t = task.tables
        self._next = jnp.asarray(t.next_state)
        self._rew = jnp.asarray(t.reward)
        self._term = jnp.asarray(t.terminal)
        self._start_logits = jnp.log(jnp.asarray(t.start_probs, jnp.float32))
        self._name = env_name or task.name

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        m = jnp.asarray(params.stage, jnp.int32)
        pos = self._next[m, state.pos, action]
        reward = self._rew[m, state.pos, action]
        state = EnvState(pos=pos, time=state.time + 1)
        done = self.is_terminal(state, params)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward,
                done, {"discount": self.discount(state, params)})

    def reset_env(self, key, params: EnvParams):
        pos = jax.random.categorical(key, self._start_logits).astype(jnp.int32)
        state = EnvState(pos=pos, time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params=None, key=None):
        return state.pos

    def is_terminated(self, state: EnvState, params: EnvParams):
        return self._term[jnp.asarray(params.stage, jnp.int32), state.pos]

    def is_terminal(self, state: EnvState, params: EnvParams):
        return jnp.logical_or(self.is_terminated(state, params), self.is_truncated(state, params))

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return self.task.n_actions

    def action_space(self, params=None):
        return spaces.Discrete(self.task.n_actions)

    def observation_space(self, params: EnvParams):
        return spaces.Discrete(self.task.n_states)

    def state_space(self, params: EnvParams):
        return spaces.Dict({"pos": spaces.Discrete(self.task.n_states),
                            "time": spaces.Discrete(params.max_steps_in_episode)})


class GridWorld(TabularEnv):
    """The Fig. 1 maze as a gymnax environment (:class:`TabularEnv` of the grid-world with its
    switch): observation = the flat cell index; ``EnvParams.stage`` 0 = original maze,
    1 = switched maze (traced)."""

    def __init__(self, layout: Layout = Layout()):
        super().__init__(GridTask(layout, with_switch=True), "GridWorld-DRA")
        self.layout = layout
