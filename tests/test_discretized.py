"""DiscretizedTask: any gymnax Box/Discrete environment as a lane task. Mountain car through it
equals the special-purpose task it replaced, bit for bit; CartPole learns; Acrobot runs; every
bad argument is a ConfigError naming its key before anything runs."""
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.mountain_car import EnvParams, EnvState, MountainCar

from dra_jax import config, sweep
from dra_jax.config import ConfigError
from dra_jax.envs.discretized import DiscretizedTask
from dra_jax.envs.mountain_car import MountainCarTask, paper_start_state
from dra_jax.experiments import mountain_car as mc_exp
from dra_jax.lane import agent, batching

DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.1, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)
CP_CELLS, CP_LOW, CP_HIGH = (3, 3, 6, 6), (-2.4, -2.0, -0.21, -2.0), (2.4, 2.0, 0.21, 2.0)


# ------------------------------------------------------------------ the mountain car it replaced
# A frozen copy of MountainCarTask as it was before DiscretizedTask (git 1baf5e7,
# dra_jax/envs/mountain_car.py), kept only to compare against.


@dataclass(frozen=True, eq=False)
class _OldMountainCarTask:
    cells: tuple = (19, 15)
    scale: tuple = (10.0, 100.0)
    env: MountainCar = field(default_factory=MountainCar, repr=False)
    params: EnvParams = field(default_factory=EnvParams, repr=False)

    @property
    def n_states(self):
        return self.cells[0] * self.cells[1]

    n_actions = 3

    @property
    def learnable(self):
        return np.ones((self.n_states, self.n_actions), bool)

    def reset(self, u, tparams, episode):
        lo, hi = (-0.6, -0.4)
        x_rand = lo + (hi - lo) * jnp.asarray(u, jnp.float32)
        rand = jnp.asarray(tparams.get("random_start", False), bool)
        x = jnp.where(rand, x_rand, jnp.float32(-0.5)).astype(jnp.float32)
        return EnvState(position=x, velocity=jnp.float32(0.0), time=jnp.int32(0))

    def step(self, state, action, tparams, episode):
        _, state2, reward, _, _ = self.env.step_env(jax.random.key(0), state, action, self.params)
        terminated = self.env.is_terminated(state2, self.params)
        return state2, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool)

    def row(self, state, tparams):
        low = np.array([self.params.min_position, -self.params.max_speed], np.float32)
        idx = jnp.round((jnp.asarray(self.env.get_obs(state), jnp.float32) - low)
                        * jnp.asarray(self.scale, jnp.float32))
        idx = jnp.clip(idx, 0, jnp.asarray(self.cells) - 1).astype(jnp.int32)
        return idx[..., 0] * self.cells[1] + idx[..., 1]

    def greedy_rollout(self, q, max_steps):
        s0 = EnvState(position=jnp.float32(-0.5), velocity=jnp.float32(0.0), time=jnp.int32(0))

        def body(carry, _):
            st, done, n = carry
            a = jnp.argmax(q[self.row(st, {})]).astype(jnp.int32)
            st2, _, term = self.step(st, a, {}, 0)
            st = jax.tree.map(lambda new, old: jnp.where(done, old, new), st2, st)
            n = n + (~done).astype(jnp.int32)
            done = done | term
            return (st, done, n), self.env.get_obs(st)

        (_, reached, steps), path = jax.lax.scan(body, (s0, jnp.bool_(False), jnp.int32(0)),
                                                 None, length=max_steps)
        return jnp.concatenate([self.env.get_obs(s0)[None], path], axis=0), reached, steps


def _train(task, st, dras, seeds, tps):
    params = agent.stack_params([agent.make_run_params(d, s, tp) for d, s, tp in zip(dras, seeds, tps)])
    return jax.tree.map(np.asarray, batching.train_batch(task, st, params))


def test_mountain_car_equals_the_task_it_replaced_bit_for_bit():
    """A short training batch (Psi = A, R, Q; paper and random start; 4 runs) through the old
    special-purpose task and through MountainCarTask() = DiscretizedTask("MountainCar-v0", ...):
    final q, sigma, learning curves, env steps and truncations are identical, as are the greedy
    rollouts of the learned means."""
    new, old = MountainCarTask(), _OldMountainCarTask()
    assert isinstance(new, DiscretizedTask) and not new.stochastic
    st = agent.AgentStatic(episodes=8, n_traj=2, max_steps=200, eval_every=4, n_rollouts=3,
                           need_R=True)
    dras = [dict(DRA, psi=p) for p in ("A", "R", "Q", "A")]
    tps = [{"random_start": np.bool_(r)} for r in (False, True, True, False)]
    a = _train(new, st, dras, [0, 1, 2, 3], tps)
    b = _train(old, st, dras, [0, 1, 2, 3], tps)
    for name in a._fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert np.ptp(a.q) > 0 and np.ptp(a.sigma) > 0  # something was learned
    path, reached, steps = mc_exp.greedy_rollouts(new, a.q, 200)
    p2, r2, s2 = jax.jit(jax.vmap(lambda q: old.greedy_rollout(q, 200)))(jnp.asarray(a.q))
    np.testing.assert_array_equal(path, np.asarray(p2))
    np.testing.assert_array_equal(reached, np.asarray(r2))
    np.testing.assert_array_equal(steps, np.asarray(s2))


def test_mountain_car_rows_and_steps_equal_the_old_task_on_random_states():
    new, old = MountainCarTask(), _OldMountainCarTask()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.3, 0.7, 5000).astype(np.float32)
    v = rng.uniform(-0.08, 0.08, 5000).astype(np.float32)
    a = rng.integers(0, 3, 5000).astype(np.int32)
    sts = EnvState(position=jnp.asarray(x), velocity=jnp.asarray(v), time=jnp.zeros(5000, jnp.int32))
    for fn in (lambda t, s, aa: t.row(s, {}), lambda t, s, aa: t.step(s, aa, {}, 0)):
        got = jax.vmap(lambda s, aa: fn(new, s, aa))(sts, a)
        ref = jax.vmap(lambda s, aa: fn(old, s, aa))(sts, a)
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(r))
    st = paper_start_state()
    assert int(new.row(st, {})) == 7 * 15 + 7


# ------------------------------------------------------------------ the generic parts


def test_discretizer_is_the_per_dimension_formula_row_major():
    task = DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH)
    low, high = np.float32(CP_LOW), np.float32(CP_HIGH)
    scale = np.float32((np.array(CP_CELLS) - 1) / (np.float64(high) - np.float64(low)))
    np.testing.assert_array_equal(task.obs_scale, scale)
    rng = np.random.default_rng(1)
    obs = rng.uniform(low * 1.5, high * 1.5, (20_000, 4)).astype(np.float32)
    idx = np.clip(np.round((obs - low) * scale), 0, np.array(CP_CELLS) - 1).astype(int)
    np.testing.assert_array_equal(np.asarray(task.cell_index(obs)), idx)
    np.testing.assert_array_equal(np.asarray(task.discretize(obs)),
                                  np.ravel_multi_index(tuple(idx.T), CP_CELLS))
    assert task.n_states == int(np.prod(CP_CELLS)) and task.n_actions == 2
    np.testing.assert_array_equal(np.asarray(task.cell_index(np.stack([low, high]))),
                                  [[0] * 4, list(np.array(CP_CELLS) - 1)])
    # bounds from the observation space where finite: Acrobot's are all finite
    acro = DiscretizedTask("Acrobot-v1", (2, 2, 2, 2, 3, 3))
    np.testing.assert_allclose(acro.obs_high, [1, 1, 1, 1, 4 * np.pi, 9 * np.pi], rtol=1e-6)
    # a one-cell dimension is ignored
    one = DiscretizedTask("CartPole-v1", (1, 1, 6, 1), low=CP_LOW, high=CP_HIGH)
    assert one.n_states == 6 and set(np.asarray(one.discretize(obs)).tolist()) == set(range(6))


def test_termination_is_the_envs_own_never_its_time_limit():
    """CartPole at gymnax's 500-step limit: gymnax's step says truncated, the task says not
    terminated (the engine truncates); past the angle threshold it is terminated."""
    from gymnax.environments.classic_control.cartpole import CartPole
    from gymnax.environments.classic_control.cartpole import EnvState as CPState

    task = DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH)
    env = CartPole()
    z = jnp.float32(0.0)
    st = CPState(x=z, x_dot=z, theta=z, theta_dot=z, time=jnp.int32(499))
    _, _, _, terminated, truncated, _ = env.step(jax.random.key(0), st, 1, env.default_params)
    assert bool(truncated) and not bool(terminated)
    st2, r, term = task.step(st, jnp.int32(1), {}, 0)
    assert not bool(term) and float(r) == 1.0 and int(st2.time) == 500
    tilted = st.replace(theta=jnp.float32(0.3), time=jnp.int32(3))
    assert bool(task.step(tilted, jnp.int32(1), {}, 0)[2])


def test_reset_from_u_and_fixed_start():
    task = DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH)
    u = jax.random.uniform(jax.random.key(0), (500,))
    sts = jax.vmap(lambda uu: task.reset(uu, {}, 0))(u)
    obs = np.asarray(jax.vmap(task.observe)(sts))
    assert obs.min() >= -0.05 and obs.max() <= 0.05 and len(np.unique(obs[:, 0])) == 500
    again = np.asarray(task.observe(task.reset(u[7], {}, 0)))
    np.testing.assert_array_equal(again, obs[7])  # a function of u
    fixed = DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH,
                            start={"theta": 0.1, "x": -1.0})
    o = np.asarray(jax.vmap(lambda uu: fixed.observe(fixed.reset(uu, {}, 0)))(u))
    np.testing.assert_allclose(o[:, 0], -1.0)
    np.testing.assert_allclose(o[:, 2], 0.1)
    assert np.ptp(o[:, 1]) > 0  # the other fields still come from reset_env


def test_stochastic_env_keeps_and_splits_a_key():
    """Acrobot's step_env draws torque noise from its key: detected, so the task state carries
    a key, seeded from u at reset and split at every step."""
    acro = DiscretizedTask("Acrobot-v1", (2, 2, 2, 2, 3, 3))
    assert acro.stochastic
    assert not DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH).stochastic
    s0 = acro.reset(jnp.float32(0.25), {}, 0)
    s1, r, term = acro.step(s0, jnp.int32(2), {}, 0)
    s2, _, _ = acro.step(s1, jnp.int32(2), {}, 0)
    keys = [np.asarray(s[1]) for s in (s0, s1, s2)]
    assert len({k.tobytes() for k in keys}) == 3
    assert float(r) == -1.0 and not bool(term)
    other = acro.reset(jnp.float32(0.75), {}, 0)
    assert not np.array_equal(np.asarray(other[1]), keys[0])


# ------------------------------------------------------------------ CartPole learns


def test_cartpole_lambda0_agent_beats_three_times_the_random_policy():
    """CartPole-v1, 3 x 3 x 6 x 6 cells, expected SARSA with sigma pinned at 0.01 (lambda = 0),
    beta = 1, 150 episodes, 2 seeds: the final evaluation return (50 rollouts, max_steps 500) is
    at least 3x the uniformly random policy's mean return measured here (about 22 steps)."""
    task = DiscretizedTask("CartPole-v1", CP_CELLS, low=CP_LOW, high=CP_HIGH)
    rand = np.asarray(jax.jit(task.random_policy_returns, static_argnums=(1, 2))(
        jax.random.key(0), 2000, 500))
    assert 18.0 < rand.mean() < 27.0
    st = agent.AgentStatic(episodes=150, n_traj=1, max_steps=500, eval_every=150, n_rollouts=50)
    d = dict(DRA, beta=1.0, alpha_q=0.3, lam=0.0, sigma0=0.01, learn_sigma=False)
    out = _train(task, st, [d, d], [0, 1], [{}, {}])
    first, final = out.curves[:, 0, 1], out.curves[:, -1, 1]
    assert np.all(first < 2 * rand.mean())  # untrained: about random
    assert final.mean() >= 3.0 * rand.mean(), (final, rand.mean())


# ------------------------------------------------------------------ the config task


def _raw(**tp):
    base = {"env_id": "CartPole-v1", "cells": list(CP_CELLS), "low": list(CP_LOW),
            "high": list(CP_HIGH)}
    base.update(tp)
    return {"task": "gymnax", "_name": "t", "task_params": base, "dra": {"episodes": 4}}


@pytest.mark.parametrize("tp,key,words", [
    ({"env_id": "CartPole-v9"}, "task_params.env_id", "CartPole-v1"),
    ({"env_id": "FrozenLake-misc", "cells": [3], "low": [], "high": []}, "task_params.env_id", "Box"),
    ({"env_id": "Pendulum-v1", "cells": [3, 3, 3], "low": [], "high": []}, "task_params.env_id",
     "Discrete"),
    ({"low": [], "high": []}, "task_params.low", "unbounded"),
    ({"low": [-2.4, -2.0, -0.21], "high": []}, "task_params.low", "(4)"),
    ({"high": [2.4, 2.0, 0.21, 2.0, 1.0]}, "task_params.high", "(4)"),
    ({"cells": [3, 0, 6, 6]}, "task_params.cells[1]", "in [1, 2147483647]"),
    ({"cells": [3, 6, 6]}, "task_params.cells", "(4)"),
    ({"cells": []}, "task_params.cells", "(4)"),
    ({"high": [2.4, 2.0, -0.3, 2.0]}, "task_params.high", "low"),
    ({"scale": [1.0, 1.0]}, "task_params.scale", "(4)"),
    ({"start_state": [0.0, 0.0]}, "task_params.start_state", "x, x_dot, theta, theta_dot"),
])
def test_bad_gymnax_task_params_name_the_key(tp, key, words):
    with pytest.raises(ConfigError) as e:
        config.validate(_raw(**tp))
    assert e.value.key == key and words in str(e.value), str(e.value)


def test_bad_python_arguments_name_the_argument():
    with pytest.raises(ConfigError) as e:
        DiscretizedTask("NoSuchEnv-v0", (3,))
    assert e.value.key == "env"
    with pytest.raises(ConfigError) as e:
        DiscretizedTask("CartPole-v1", (3, 3, 6, 6), low=CP_LOW)  # high unbounded in velocity
    assert e.value.key == "high" and "dimension 1" in str(e.value)
    with pytest.raises(ConfigError) as e:
        DiscretizedTask("MountainCar-v0", (19, 15), start={"speed": 0.0})
    assert e.value.key == "start" and "position, velocity" in str(e.value)
    with pytest.raises(ConfigError) as e:
        config.validate(dict(_raw(), dra={"q_init": "optimal"}))
    assert e.value.key == "dra.q_init"


def test_cli_bad_gymnax_config_exits_2_and_writes_nothing(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('task = "gymnax"\n[task_params]\nenv_id = "CartPole-v1"\ncells = [3, 3, 6, 6]\n')
    out = tmp_path / "out"
    assert sweep.main(["--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()


def test_acrobot_short_sweep_through_the_cli(tmp_path):
    """Acrobot-v1 (bounds from its observation space, stochastic dynamics) runs end to end: DRA
    vs lambda = 0, results and the learning-curve figures written."""
    import json

    cfg = tmp_path / "acrobot.toml"
    cfg.write_text("""
task = "gymnax"
n_seeds = 2
figures = ["baselines", "convergence"]
[task_params]
env_id = "Acrobot-v1"
cells = [2, 2, 2, 2, 3, 3]
start_state = [0.0, 0.0, 0.0, 0.0]
[dra]
episodes = 4
n_traj = 2
max_steps = 60
[eval]
every = 2
n_rollouts = 3
[variants.dra]
[variants.lambda0]
lam = 0.0
sigma0 = 0.01
learn_sigma = false
""")
    out = tmp_path / "out"
    assert sweep.main(["--config", str(cfg), "--out", str(out), "--quiet", "--cpu-devices", "1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["runs"]) == 4
    assert s["task"]["stochastic"] and s["task"]["n_states"] == 2 ** 4 * 9
    assert -61.0 <= s["random_policy"]["mean_return"] <= -1.0
    for r in s["runs"]:
        assert -60.0 <= r["final"]["expected_reward"] <= 0.0
    assert (out / "figures" / "baselines.png").stat().st_size > 0
    assert (out / "figures" / "convergence.png").stat().st_size > 0
