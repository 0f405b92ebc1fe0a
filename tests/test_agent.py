"""Algorithm 1 in the lane engine: against a plain-NumPy reference, under jit/vmap, both gradients."""
import jax
import numpy as np
import pytest
from lane_reference import DRA, TASK, reference
from lane_reference import train as _train

from dra_jax.lane import agent, batching


@pytest.mark.parametrize("psi,allocation,gamma,objective,optimizer,alpha_sigma", [
    ("A", "flexible", 1.0, "dra", "sgd", 0.1), ("R", "flexible", 0.95, "dra", "sgd", 0.1),
    ("Q", "equal_sgd", 1.0, "dra", "adam", 0.1), ("R", "flexible", 0.95, "elbo_step", "sgd", 0.02),
    ("A", "flexible", 1.0, "elbo", "adam", 0.1), ("R", "equal_sgd", 1.0, "elbo", "sgd", 0.1)])
def test_engine_matches_numpy_reference(psi, allocation, gamma, objective, optimizer,
                                        alpha_sigma):
    """Same random numbers -> same q, sigma and learning curve (all five columns) as a plain
    NumPy Algorithm 1, for the objectives of Eq. 1, Eq. 8 and Eq. 10 and for SGD and Adam.
    max_steps is small so that truncated rollouts (which bootstrap) occur. The reference writes
    the entropy gradient by the chain rule, the engine takes it by autodiff.

    The reference computes in float64, the engine in float32: the tolerances are float32
    accumulation over 6 episodes (the R-gradient sums returns of ~-40 over ~40 steps; the engine
    is within 2e-4 of float64 there, a float32 NumPy reference 5e-4). A wrong Psi, a missing
    bootstrap, a misplaced update or a flipped ELBO term changes sigma and q by 1e-2 to 1.
    (elbo_step with Psi = R steps sigma with alpha_sigma = 0.02: at 0.1 its per-access KL
    gradient drives some sigma to sigma_min = 0.01 within 3 episodes, where d(1/sigma)/dsigma =
    1e4 amplifies the float32 rounding to 1e-2 by episode 6; at 0.02 sigma stays in [1.2, 4.4]
    and the two agree to 3e-5.)"""
    st = agent.AgentStatic(episodes=6, n_traj=3, max_steps=40, eval_every=2, n_rollouts=3,
                           need_R=psi == "R", need_entropy=objective != "dra",
                           optimizer=optimizer, block=16)
    dra = dict(DRA, psi=psi, allocation=allocation, gamma=gamma, objective=objective,
               alpha_sigma=alpha_sigma)
    out = _train(st, [dra], [7])
    q, sigma, curves, steps = reference(st, dra, 7, optimizer=optimizer)
    assert int(out.env_steps[0]) == steps
    assert int(out.truncations[0]) > 0 or psi != "A"  # truncations happen in this set-up
    np.testing.assert_allclose(out.q[0], q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.sigma[0], sigma, rtol=1e-4, atol=3e-4)
    np.testing.assert_allclose(out.curves[0], curves, rtol=1e-4, atol=1e-3)
    assert not np.allclose(sigma, 3.0)  # sigma actually moved
    if objective != "dra":
        assert np.all(curves[:, 4] > 0.0)  # the entropy term is there to be compared


def test_vmapped_batch_equals_loop_over_runs():
    st = agent.AgentStatic(episodes=20, n_traj=4, max_steps=200, eval_every=10, n_rollouts=5)
    dras = [dict(DRA, sigma0=s0, lam=lam) for s0, lam in [(1.0, 0.2), (3.0, 0.1), (5.0, 0.3)]]
    seeds = [0, 1, 2]
    batch = _train(st, dras, seeds)
    for i in range(3):
        single = _train(st, [dras[i]], [seeds[i]])
        # bit for bit: train_batch pads a one-run batch to two (batching.pad_batch)
        for name in ("q", "sigma", "curves", "env_steps", "truncations"):
            np.testing.assert_array_equal(getattr(batch, name)[i], getattr(single, name)[0])
    # a plain jit(vmap(train)) of the unchunked train() agrees too
    params = agent.stack_params([agent.make_run_params(d, s) for d, s in zip(dras, seeds)])
    direct = jax.jit(jax.vmap(lambda p: agent.train(TASK, st, p)))(params)
    np.testing.assert_array_equal(np.asarray(direct.sigma), batch.sigma)
    np.testing.assert_array_equal(np.asarray(direct.curves), batch.curves)


def test_chunking_does_not_change_numbers():
    st = agent.AgentStatic(episodes=15, n_traj=3, max_steps=200, eval_every=5, n_rollouts=4)
    params = agent.stack_params([agent.make_run_params(dict(DRA, sigma0=s), 3) for s in (1.0, 4.0)])
    whole = batching.train_batch(TASK, st, params)
    chunked = batching.train_batch(TASK, st, params, chunk_superblocks=3)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_other_traced_values_do_not_recompile():
    st = agent.AgentStatic(episodes=5, n_traj=2, max_steps=100, eval_every=5, n_rollouts=2)
    init_b, adv_b, fin_b = batching.make_batched(TASK, st)
    p1 = agent.stack_params([agent.make_run_params(dict(DRA, sigma0=s), i) for i, s in enumerate((1.0, 3.0))])
    p2 = agent.stack_params([agent.make_run_params(dict(DRA, sigma0=s, lam=0.05, psi="Q"), i + 9)
                             for i, s in enumerate((4.0, 5.0))])
    batching.train_batch(TASK, st, p1)
    sizes = (init_b._cache_size(), adv_b._cache_size(), fin_b._cache_size())
    batching.train_batch(TASK, st, p2)
    assert (init_b._cache_size(), adv_b._cache_size(), fin_b._cache_size()) == sizes
    assert batching.make_batched(TASK, st) == (init_b, adv_b, fin_b)


@pytest.mark.parametrize("psi,episodes", [("A", 30), ("R", 2)])
def test_analytic_and_autodiff_training_give_the_same_sigma(psi, episodes):
    # from q*, so rollouts are short and returns moderate: with returns of -300 (early random
    # walks) the R-gradient moves sigma so far per update that a one-ulp difference flips an
    # action within a few episodes and the two runs then diverge chaotically
    # (R moves sigma by up to ~10 per update here: the one-ulp differences of the two scores,
    # times returns of ~-30 over ~30 steps, compound to ~5e-5 by episode 4, so its run is 2
    # episodes = 10 gradient trajectories)
    base = agent.AgentStatic(episodes=episodes, n_traj=5, max_steps=300, eval_every=2, n_rollouts=5,
                             need_R=psi == "R", q_init="optimal")
    dras = [dict(DRA, psi=psi, sigma0=s) for s in (1.0, 3.0)]
    an = _train(base._replace(grad="analytic"), dras, [4, 5])
    au = _train(base._replace(grad="autodiff"), dras, [4, 5])
    np.testing.assert_array_equal(an.env_steps, au.env_steps)  # the same trajectories
    np.testing.assert_allclose(an.sigma, au.sigma, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(an.q, au.q, rtol=1e-5, atol=1e-5)
    assert np.abs(an.sigma - 1.0).max() > 0.1 or np.abs(an.sigma - 3.0).max() > 0.1


def test_equal_precision_shares_sigma_and_lambda0_learns_sigma_at_no_cost():
    """Equal precision keeps one shared sigma. With lam = 0 and sigma learning, the cost
    vanishes and sigma follows the reward gradient alone: the NumPy reference's numbers."""
    st = agent.AgentStatic(episodes=20, n_traj=4, max_steps=60, eval_every=10, n_rollouts=3)
    free = dict(DRA, lam=0.0, sigma0=0.5)
    out = _train(st, [dict(DRA, allocation="equal_sgd"), free], [0, 1])
    learned = TASK.learnable
    shared = out.sigma[0][learned]
    assert np.ptp(shared) == 0.0 and shared[0] != 3.0
    assert np.all(out.curves[1][:, 2] == 0.0)  # lam = 0: no cost
    _, sigma, curves, _ = reference(st, free, 1)
    np.testing.assert_allclose(out.sigma[1], sigma, rtol=1e-4, atol=3e-4)
    np.testing.assert_allclose(out.curves[1], curves, rtol=1e-4, atol=1e-3)
    assert np.abs(out.sigma[1] - 0.5).max() > 0.1  # sigma learned


def test_truncation_bootstraps_and_is_counted():
    """A truncated step bootstraps like any non-terminal one. Start at q* with near-greedy
    memories (sigma = 0.01): the expected-SARSA target r + E_p'[q*(s')] equals q*(s, a), so q
    stays at q*. Had truncation been treated as termination, the target would be r = -1 and
    q(start, a) = q* + 0.1 * (-1 - q*) would move by 0.1 * |1 + q*| >= 0.1."""
    st = agent.AgentStatic(episodes=20, n_traj=1, max_steps=1, eval_every=20, n_rollouts=1,
                           q_init="optimal")
    out = _train(st, [dict(DRA, sigma0=0.01, learn_sigma=False)], [0])
    assert int(out.truncations[0]) == 20 * 2  # acting + gradient rollouts, all truncated
    qstar = TASK.q_star()
    start = TASK.tables.start
    assert np.min(np.abs(1.0 + qstar[start])) >= 1.0  # a terminal-style update would move >= 0.1
    np.testing.assert_allclose(out.q[0], qstar, atol=1e-3)


@pytest.mark.parametrize("W,eval_from", [(1, 0), (3, 8), (3, 0), (1, 8)])
def test_pinned_runs_skip_the_gradient_rollouts_and_match_the_reference(W, eval_from):
    """A pinned program (``AgentStatic.pinned``: every run has learn_sigma = false) goes from
    the acting episode straight to the sync: the NumPy reference walking that timeline gives
    the same q and curves, sigma never moves, and the run takes fewer env steps than the
    unpinned program with its (discarded) gradient rollouts. ``eval_from`` drops the
    evaluations before it, the later ones keep their episodes."""
    st = agent.AgentStatic(episodes=12, n_traj=4, max_steps=200, eval_every=4, n_rollouts=3,
                           sub_lanes=W, pinned=True, eval_from=eval_from)
    dra = dict(DRA, sigma0=0.7, learn_sigma=False)
    out = _train(st, [dra], [3])
    q, sigma, curves, steps = reference(st, dra, 3)
    assert list(st.eval_episodes) == [e for e in (0, 4, 8, 12) if e >= eval_from]
    assert curves.shape == out.curves[0].shape == (len(st.eval_episodes), agent.N_CURVES)
    assert int(out.env_steps[0]) == steps
    np.testing.assert_allclose(out.q[0], q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.curves[0], curves, rtol=1e-4, atol=1e-3)
    assert np.all(out.sigma[0] == np.float32(0.7)) and np.all(sigma == 0.7)
    assert np.abs(out.q[0]).max() > 0.1  # the means learned
    unpinned = _train(st._replace(pinned=False, eval_from=0), [dra], [3])
    assert int(unpinned.env_steps[0]) > int(out.env_steps[0]) + 12 * 4  # >= 1 step a rollout
    assert np.all(unpinned.sigma[0] == np.float32(0.7))  # (learn_sigma = false there too)


def test_eval_from_past_the_last_episode_is_refused():
    with pytest.raises(ValueError, match="eval_from"):
        agent.AgentStatic(episodes=10, eval_every=5, eval_from=11).eval_episodes
