"""Both returns: the discounted return (F's term) and the undiscounted sum of rewards."""
import numpy as np
import pytest

from dra_jax.envs.gridworld import GridTask
from dra_jax.lane import agent, batching

TASK = GridTask()
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


def _train(st, dras, seeds):
    params = agent.stack_params([agent.make_run_params(d, s, {}) for d, s in zip(dras, seeds)])
    return batching.train_batch(TASK, st, params)


def test_undiscounted_equals_discounted_when_gamma_is_1():
    st = agent.AgentStatic(episodes=20, n_traj=3, max_steps=100, eval_every=5, n_rollouts=4,
                           need_R=True)
    out = _train(st, [DRA, dict(DRA, psi="R"), dict(DRA, sigma0=1.0)], [0, 1, 2])
    c = np.asarray(out.curves)
    np.testing.assert_array_equal(c[..., 5], c[..., 1])
    assert np.ptp(c[..., 1]) > 1.0  # the returns moved


@pytest.mark.parametrize("gamma", [0.9, 0.5])
def test_both_returns_of_a_deterministic_shortest_path(gamma):
    """q = q*, sigma pinned at 0.01, beta = 100: every evaluation rollout walks a shortest path
    (14 moves from the start: 13 at -1, then +10), so the undiscounted sum is -3 and the
    discounted return is sum_t<13 -gamma^t + 10 gamma^13, whatever gamma (q* has the same
    argmax for these gammas: the shortest path)."""
    st = agent.AgentStatic(episodes=2, n_traj=1, max_steps=100, eval_every=1, n_rollouts=5,
                           q_init="optimal")
    dra = dict(DRA, gamma=gamma, beta=100.0, sigma0=0.01, learn_q=False, learn_sigma=False, lam=0.0)
    out = _train(st, [dra, dra], [0, 1])
    c = np.asarray(out.curves)
    disc = -sum(gamma ** t for t in range(13)) + 10 * gamma ** 13
    np.testing.assert_allclose(c[..., 5], -3.0, atol=1e-5)
    np.testing.assert_allclose(c[..., 1], disc, rtol=1e-5)


def test_runs_carry_both_returns_a_converged_flag_and_figures_survive(tmp_path, monkeypatch):
    """summary.json: both returns per run, the converged flag and its numbers; a figure that
    raises is skipped with a warning and the results stay on disk."""
    import json
    import warnings

    import dra_jax
    from dra_jax.figures import lane

    out = tmp_path / "gw"
    res = dra_jax.run("configs/gridworld.toml", out=out, progress=False,
                      set=["dra.episodes=40", "n_seeds=2", "sweep.sigma0=[3.0]", "eval.every=5",
                           "eval.n_rollouts=5", "dra.gamma=0.9"])
    rec = res.runs[0]
    assert rec["final"]["expected_reward_undiscounted"] != rec["final"]["expected_reward"]
    assert rec["converged"] in (True, False) and rec["tail_noise_of_objective"] >= 0
    assert (out / "figures" / "convergence.png").is_file()

    def boom(*a, **k):
        raise RuntimeError("figure bug")

    monkeypatch.setitem(lane._FIGURES, "convergence", boom)
    out2 = tmp_path / "gw2"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dra_jax.run("configs/gridworld.toml", out=out2, progress=False,
                    set=["dra.episodes=10", "n_seeds=2", "sweep.sigma0=[3.0]", "eval.every=5",
                         "eval.n_rollouts=2"])
    assert any("figure 'convergence'" in str(x.message) and "figure bug" in str(x.message) for x in w)
    assert json.loads((out2 / "summary.json").read_text())["runs"]
    assert (out2 / "curves.npz").is_file() and (out2 / "figures" / "allocation.png").is_file()


def test_tail_trend_flags_drift_and_accepts_noise():
    from dra_jax.core.stats import tail_trend

    rng = np.random.default_rng(0)
    eps = np.arange(0, 5001, 100)
    flat = -10 + rng.normal(0, 0.5, len(eps))
    drift = -10 - 0.002 * eps + rng.normal(0, 0.05, len(eps))
    assert tail_trend(flat, eps)["converged"] is True
    t = tail_trend(drift, eps)  # the last 5 evaluations span 400 episodes: a change of -0.8
    assert t["converged"] is False and t["change"] == pytest.approx(-0.002 * 400, rel=0.2)
    # pure noise is flagged about 5% of the time (a 95% interval), not more
    flags = [tail_trend(-10 + np.random.default_rng(s).normal(0, 0.5, len(eps)), eps)["converged"]
             for s in range(200)]
    assert 0.85 <= np.mean(flags) <= 1.0
