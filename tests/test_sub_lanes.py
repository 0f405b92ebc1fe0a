"""Sub-lanes (issue 12): a run's gradient and evaluation rollouts side by side, against the NumPy
reference walking the same timeline, and invariant to batch and chunking."""
import jax
import numpy as np
import pytest
from lane_reference import DRA, TASK, reference
from lane_reference import train as _train

from dra_jax.lane import agent


@pytest.mark.parametrize("W,psi,allocation,gamma,objective,optimizer,alpha_sigma,max_steps", [
    (2, "R", "flexible", 0.95, "elbo_step", "sgd", 0.02, 60),
    (4, "Q", "equal_sgd", 1.0, "elbo", "adam", 0.1, 120)])
def test_sub_lanes_match_numpy_reference(W, psi, allocation, gamma, objective, optimizer,
                                         alpha_sigma, max_steps):
    """W sub-lanes per run (W = 2 does not divide n_traj = 3, W = 4 leaves a sub-lane idle in
    the gradient phase): the same q, sigma and curves as the NumPy reference that runs the
    acting episode on sub-lane 0, trajectory / evaluation rollout j on sub-lane j % W from the
    next step on, and waits for the block's end after each phase. Rollouts of unequal length
    (random walks of q = 0, some truncated at max_steps) make the sub-lanes' clocks differ, so
    a wrong start, wait or noise row changes q and sigma. Tolerances as in
    tests/test_agent.py (float32 engine against a float64 reference)."""
    st = agent.AgentStatic(episodes=6, n_traj=3, max_steps=max_steps, eval_every=2, n_rollouts=3,
                           need_R=psi == "R", need_entropy=objective != "dra",
                           optimizer=optimizer, sub_lanes=W)
    dra = dict(DRA, psi=psi, allocation=allocation, gamma=gamma, objective=objective,
               alpha_sigma=alpha_sigma)
    out = _train(st, [dra], [7])
    q, sigma, curves, steps = reference(st, dra, 7, optimizer=optimizer, sub_lanes=W)
    n_rollouts = st.episodes * (1 + st.n_traj) + len(st.eval_episodes) * st.n_rollouts
    assert 0 < int(out.truncations[0]) < n_rollouts  # lengths differ: some rollouts truncated
    assert int(out.env_steps[0]) == steps
    np.testing.assert_allclose(out.q[0], q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.sigma[0], sigma, rtol=1e-4, atol=3e-4)
    np.testing.assert_allclose(out.curves[0], curves, rtol=1e-4, atol=1e-3)
    assert not np.allclose(sigma, 3.0)


def test_sub_lanes_do_not_depend_on_batch_or_chunks_and_shorten_the_run():
    """With W = 3 sub-lanes: a run in a batch of three equals it alone (padded to two) and
    chunked, bit for bit; and its sweep ends in fewer blocks than with one lane per run (the
    n_traj = 4 trajectories run side by side after the acting episode)."""
    st = agent.AgentStatic(episodes=12, n_traj=4, max_steps=200, eval_every=6, n_rollouts=5,
                           sub_lanes=3)
    dras = [dict(DRA, sigma0=s0, lam=lam) for s0, lam in [(1.0, 0.2), (3.0, 0.1), (5.0, 0.3)]]
    batch = _train(st, dras, [0, 1, 2])
    single = _train(st, [dras[1]], [1], chunk_superblocks=1)
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(single)):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[0])
    assert np.all(batch.episodes == 12) and not np.any(np.isnan(batch.curves))

    blocks = {}
    for W in (1, 3):
        _train(st._replace(sub_lanes=W), dras, [0, 1, 2],
               on_chunk=lambda lane: blocks.__setitem__(W, np.asarray(lane.block_idx)[:3]))
    assert np.all(blocks[3] * 1.5 < blocks[1]), blocks


def test_sub_lanes_must_be_positive():
    with pytest.raises(ValueError, match="sub_lanes"):
        agent.init(TASK, agent.AgentStatic(episodes=1, sub_lanes=0),
                   agent.make_run_params(DRA, 0))


def test_config_key_reaches_the_engine_and_is_checked():
    """``[dra] sub_lanes`` (static: one program per value) goes into AgentStatic; 0 is refused
    naming the key."""
    from dra_jax import config
    from dra_jax.config import ConfigError
    from dra_jax.lane import runner

    cfg = config.validate({"task": "gridworld", "_name": "t",
                           "dra": {"episodes": 10, "sub_lanes": 3}})
    run = next(iter(config.iter_run_params(cfg)))
    assert runner.agent_static(run, cfg).sub_lanes == 3
    with pytest.raises(ConfigError, match="sub_lanes"):
        config.validate({"task": "gridworld", "_name": "t", "dra": {"episodes": 10, "sub_lanes": 0}})
