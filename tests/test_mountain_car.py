"""Mountain car (Sec. 3.2): gymnax underneath, the discretizer, truncation vs termination, both
gradients, the greedy rollout and the config checks. Mountain car is a DiscretizedTask; that it
equals the special-purpose task it replaced, bit for bit, is in tests/test_discretized.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.mountain_car import EnvParams, EnvState, MountainCar

from dra_jax import config
from dra_jax.config import ConfigError
from dra_jax.envs.discretized import DiscretizedTask
from dra_jax.envs.mountain_car import MountainCarTask, cells_for, obs_bounds
from dra_jax.experiments import mountain_car as mc_exp
from dra_jax.lane import agent, batching

TASK = MountainCarTask()
TP = {"random_start": np.bool_(False)}
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.1, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


def _state(x, v, t=0):
    return EnvState(position=jnp.float32(x), velocity=jnp.float32(v), time=jnp.int32(t))


# ------------------------------------------------------------------ gymnax underneath


def test_dynamics_equal_gymnax_step_env():
    """300 random actions from random starts, 64 runs under jit + vmap: the adapter's state,
    reward and termination equal gymnax's own step_env / is_terminated step for step."""
    env, params = MountainCar(), EnvParams()
    key = jax.random.key(0)
    acts = jax.random.randint(key, (64, 300), 0, 3)
    # momentum-pumping actions on half the runs so that some reach the flag
    x0 = jax.random.uniform(jax.random.key(1), (64,), minval=-0.6, maxval=-0.4)

    def roll(step_fn, x, a_seq):
        def body(st, a):
            a = jnp.where(a == 0, jnp.where(st.velocity >= 0, 2, 0), a)  # bias towards pumping
            st2, r, term = step_fn(st, a)
            return st2, (st2.position, st2.velocity, st2.time, r, term)
        return jax.lax.scan(body, _state(x, 0.0), a_seq)[1]

    def ours(st, a):
        return TASK.step(st, a, TP, 0)

    def theirs(st, a):
        _, st2, r, _, _ = env.step_env(jax.random.key(3), st, a, params)
        return st2, r, env.is_terminated(st2, params)

    a = jax.jit(jax.vmap(lambda x, s: roll(ours, x, s)))(x0, acts)
    b = jax.jit(jax.vmap(lambda x, s: roll(theirs, x, s)))(x0, acts)
    for u, w in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(w))
    assert np.asarray(a[4]).any()  # the flag was reached in some runs
    assert np.all(np.asarray(a[3]) == -1.0)


def test_time_limit_is_not_a_termination():
    """At gymnax's 200-step limit its ``step`` reports truncated, not terminated; the adapter's
    terminated follows gymnax's terminated (the engine truncates at max_steps itself)."""
    env, params = MountainCar(), EnvParams()
    st = _state(-0.5, 0.0, 199)
    _, _, _, terminated, truncated, _ = env.step(jax.random.key(0), st, 1, params)
    assert bool(truncated) and not bool(terminated)
    _, _, term = TASK.step(st, 1, TP, 0)
    assert not bool(term)
    st = _state(0.49, 0.05, 3)  # over the flag with v >= 0
    _, _, _, terminated, truncated, _ = env.step(jax.random.key(0), st, 2, params)
    _, _, term = TASK.step(st, 2, TP, 0)
    assert bool(term) and bool(terminated) and not bool(truncated)


def test_reset_paper_start_and_random_start():
    st = TASK.reset(0.9, TP, 0)
    assert float(st.position) == -0.5 and float(st.velocity) == 0.0
    u = jnp.linspace(0.0, 0.999, 50)
    xs = jax.vmap(lambda uu: TASK.reset(uu, {"random_start": np.bool_(True)}, 0).position)(u)
    assert float(xs.min()) == pytest.approx(-0.6) and float(xs.max()) < -0.4
    assert np.all(np.diff(np.asarray(xs)) > 0)


# ------------------------------------------------------------------ discretizer


def test_mountain_car_is_the_generic_task_with_the_papers_choices():
    """DiscretizedTask("MountainCar-v0") with the observation space's bounds, scale (10, 100),
    no key in its state (step_env draws nothing), and the paper's start."""
    low, high = obs_bounds()
    assert isinstance(TASK, DiscretizedTask) and TASK.env_id == "MountainCar-v0"
    np.testing.assert_array_equal(TASK.obs_low, low)
    np.testing.assert_array_equal(TASK.obs_high, high)
    np.testing.assert_array_equal(TASK.obs_scale, np.float32([10, 100]))
    assert not TASK.stochastic and TASK.n_actions == 3
    assert not DiscretizedTask("MountainCar-v0", (19, 15)).stochastic  # detected, not assumed


def test_discretizer_bounds_and_range():
    low, high = obs_bounds()
    assert cells_for((10.0, 100.0)) == (19, 15) == TASK.cells
    assert TASK.n_states == 19 * 15
    idx = np.asarray(TASK.cell_index(jnp.stack([low, high])))
    np.testing.assert_array_equal(idx, [[0, 0], [18, 14]])
    rows = np.asarray(TASK.discretize(jnp.stack([low, high])))
    np.testing.assert_array_equal(rows, [0, TASK.n_states - 1])
    # the paper's start (-0.5, 0) is cell (7, 7); rows reshape to [cells_x, cells_v]
    assert int(TASK.row(_state(-0.5, 0.0), TP)) == 7 * 15 + 7
    # random observations inside, and far outside, the bounds never leave the table
    rng = np.random.default_rng(0)
    inside = rng.uniform(low, high, (10_000, 2)).astype(np.float32)
    outside = rng.uniform(-1e3, 1e3, (10_000, 2)).astype(np.float32)
    extreme = np.array([[np.finfo(np.float32).max, -np.finfo(np.float32).max],
                        [-np.finfo(np.float32).max, np.finfo(np.float32).max],
                        [-1.2000001, 0.0700001]], np.float32)
    for obs in (inside, outside, extreme):
        idx = np.asarray(TASK.cell_index(obs))
        assert idx.min() >= 0 and np.all(idx.max(0) <= np.array(TASK.cells) - 1)
        r = np.asarray(TASK.discretize(obs))
        assert r.min() >= 0 and r.max() < TASK.n_states
    # inside the bounds it is round((obs - low) * scale), and every cell is hit
    np.testing.assert_array_equal(np.asarray(TASK.cell_index(inside)),
                                  np.round((inside - low) * np.float32([10, 100])).astype(int))
    assert len(np.unique(np.asarray(TASK.discretize(inside)))) == TASK.n_states


# ------------------------------------------------------------------ truncation


def _train(st, dras, seeds):
    params = agent.stack_params([agent.make_run_params(d, s, TP) for d, s in zip(dras, seeds)])
    return jax.tree.map(np.asarray, batching.train_batch(TASK, st, params))


def test_truncated_step_bootstraps_as_a_terminal_step_would_not():
    """One acting episode cut at max_steps = 1, so its only step is a truncation, from random
    means (q_init = uniform) and near-noiseless memories (sigma = 1e-4). The run with learn_q =
    false gives the initial means q0; the one expected-SARSA update is then
    ``q1 - q0 = 0.1 * (target - q0)`` at (start, a). Bootstrapping: target = -1 + p' . q0(s')
    with p' = softmax(10 q0(s')); a terminal step would give target = -1. The seed is one where
    the two differ by more than 0.05, far beyond the tolerance."""
    st = agent.AgentStatic(episodes=1, n_traj=1, max_steps=1, eval_every=1, n_rollouts=1,
                           q_init="uniform")
    dra = dict(DRA, sigma0=1e-4, sigma_min=1e-6, learn_sigma=False)
    q0 = _train(st, [dict(dra, learn_q=False)], [2]).q[0]
    out = _train(st, [dra], [2])
    q1 = out.q[0]
    assert int(out.truncations[0]) == 2  # the acting and the gradient rollout
    changed = np.argwhere(q1 != q0)
    assert len(changed) == 1
    s0, a = changed[0]
    start = TASK.reset(0.5, TP, 0)
    assert s0 == int(TASK.row(start, TP))
    s2 = int(TASK.row(TASK.step(start, int(a), TP, 0)[0], TP))
    z = 10.0 * q0[s2]
    p2 = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    bootstrap = float(p2 @ q0[s2])
    assert abs(bootstrap) > 0.05  # a terminal (no-bootstrap) update would fail below
    target = q0[s0, a] + (q1[s0, a] - q0[s0, a]) / 0.1
    assert target == pytest.approx(-1.0 + bootstrap, abs=5e-3)


# ------------------------------------------------------------------ training


def test_analytic_and_autodiff_training_give_the_same_sigma():
    # Psi = A. (With Psi = Q, tried: the start cell's gradient is a sum of many terms of size
    # beta * |zeta| * |q| that largely cancel, and the two methods' float32 roundings then
    # differed by up to 8e-4 relative in sigma there: the same estimator, but not to 1e-5.)
    st = agent.AgentStatic(episodes=4, n_traj=3, max_steps=200, eval_every=2, n_rollouts=2)
    dras = [dict(DRA, psi="A", sigma0=s0) for s0 in (3.0, 1.0)]
    an = _train(st._replace(grad="analytic"), dras, [0, 1])
    au = _train(st._replace(grad="autodiff"), dras, [0, 1])
    np.testing.assert_array_equal(an.env_steps, au.env_steps)  # identical trajectories
    np.testing.assert_allclose(an.sigma, au.sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(an.q, au.q, rtol=1e-5, atol=1e-6)
    # sigma moved by more than the KL pull alone: visited memories differ from unvisited ones
    for i, s0 in enumerate((3.0, 1.0)):
        assert np.ptp(an.sigma[i]) > 1e-3 and not np.allclose(an.sigma[i], s0)


# ------------------------------------------------------------------ greedy rollout


def test_greedy_rollout_reaches_the_flag_with_an_energy_pumping_policy():
    """q that says 'push along the velocity' (the textbook solution) reaches the flag; q = 0
    (argmax = push left forever) does not. Steps are checked against stepping gymnax directly."""
    xc, vc = TASK.cell_centers()
    q = np.zeros((TASK.n_states, 3), np.float32)
    vv = np.broadcast_to(vc[None, :], TASK.cells).reshape(-1)
    q[np.arange(TASK.n_states), np.where(vv >= 0, 2, 0)] = 1.0
    path, reached, steps = mc_exp.greedy_rollouts(TASK, np.stack([q, 0 * q]), 200)
    assert bool(reached[0]) and not bool(reached[1])
    assert path.shape == (2, 201, 2)
    env, params = MountainCar(), EnvParams()
    st, n = _state(-0.5, 0.0), 0
    while not bool(env.is_terminated(st, params)):
        a = int(np.argmax(q[int(TASK.row(st, TP))]))
        _, st, _, _, _ = env.step_env(jax.random.key(0), st, a, params)
        n += 1
    assert int(steps[0]) == n < 200
    np.testing.assert_allclose(path[0, n], [float(st.position), float(st.velocity)], rtol=1e-5)


# ------------------------------------------------------------------ config


def _raw(**over):
    raw = {"task": "mountain_car", "_name": "t", "dra": {"episodes": 10}}
    for k, v in over.items():
        sec, _, key = k.partition("__")
        raw.setdefault(sec, {})[key] = v
    return raw


@pytest.mark.parametrize("over,key", [
    ({"dra__q_init": "optimal"}, "dra.q_init"),
    ({"task_params__cells": [19, 16]}, "task_params.cells"),
    ({"task_params__cells": [19]}, "task_params.cells"),
    ({"task_params__scale": [10.0, -100.0]}, "task_params.scale[1]"),
    ({"task_params__random_start": 1}, "task_params.random_start"),
    ({"sweep__cells": [[19, 15]]}, "sweep.cells"),
])
def test_bad_mountain_car_configs_name_the_key(over, key):
    with pytest.raises(ConfigError) as e:
        config.validate(_raw(**over))
    assert e.value.key == key


def test_config_defaults_are_table_b1():
    cfg = config.validate(_raw())
    d = cfg["dra"]
    assert (d["lam"], d["sigma_base"], d["sigma0"], d["beta"], d["gamma"], d["n_traj"],
            d["alpha_q"], d["alpha_sigma"], d["max_steps"]) == (0.1, 5.0, 3.0, 10.0, 1.0, 10, 0.1, 0.1, 200)
    assert cfg["task_params"]["cells"] == [19, 15]
    with pytest.raises(NotImplementedError, match="optimal"):
        TASK.q_star()
