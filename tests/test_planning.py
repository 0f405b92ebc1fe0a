"""The planning task (Sec. 4): environment, q*, planner, gradients, CMA-ES evaluation, configs."""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax import config as config_mod
from dra_jax.config import ConfigError
from dra_jax.core import memory
from dra_jax.envs import planning as env
from dra_jax.experiments import planning as px
from dra_jax.planning import equal_search as plan_equal
from dra_jax.planning import planner
from dra_jax.planning import runner as prun
from dra_jax.planning import trainer as pt

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "configs" / "planning.toml", ROOT / "configs" / "planning_moves.toml",
           ROOT / "configs" / "planning_loo.toml"]


@functools.partial(jax.jit, static_argnames=("grad",))
def _plan_jit(q, sigma, budget, beta, noise, grad):
    return planner.plan_batch(q, sigma, budget, beta, noise, grad=grad)


def _plan(moves, sigma_value, budget, n=64, seed=0, grad="analytic", q=None, beta=10.0):
    """``n`` trials; one compiled program per (M, n, grad), reused across budgets and sigmas."""
    q = jnp.asarray(env.q_star(moves)) if q is None else q
    sigma = jnp.full(q.shape, sigma_value, jnp.float32)
    noise = planner.trial_noise(jax.random.key(seed), n, env.full_budget(moves))
    return _plan_jit(q, sigma, jnp.int32(budget), jnp.float32(beta), noise, grad), noise


# ------------------------------------------------------------------ task and q*


def test_transitions_match_design():
    # docs/design.md, 1-based: 1 -> (2, +140), (4, +20); ...; 6 -> (1, -20), (3, +20)
    spec = {1: ((2, 140), (4, 20)), 2: ((3, -20), (5, -70)), 3: ((4, -20), (6, -70)),
            4: ((2, 20), (5, -20)), 5: ((1, -70), (6, -20)), 6: ((1, -20), (3, 20))}
    for s, moves in spec.items():
        for a, (s2, r) in enumerate(moves):
            assert env.NEXT_STATE[s - 1, a] == s2 - 1
            assert env.REWARD[s - 1, a] == r


@pytest.mark.parametrize("moves", [3, 4, 5])
def test_q_star_equals_brute_force(moves):
    q = env.q_star(moves)
    assert q.shape == (6, moves, 2)
    np.testing.assert_array_equal(q, env.brute_force_q(moves))
    # and the value of a whole trial is the best of all 2^M sequences
    np.testing.assert_array_equal(q[:, moves - 1].max(axis=1), env.best_paths(moves))


def test_paper_example():
    # Sec. 4.1: from state 5 with M = 3 the best path visits 6, 1, 2 (reward 100); M = 2 from
    # state 6: moving to 1 vs 3 differs by 120 points of cumulative reward
    q = env.q_star(3)
    assert q[4, 2].max() == 100
    total, states = env.path_reward(4, [1, 0, 0])
    assert total == 100 and states == [4, 5, 0, 1]
    assert env.impact(3)[5, 1] == 120


def test_gymnax_env_runs_under_jit_vmap():
    e = env.PlanningEnv()
    params = env.EnvParams(moves=4)

    def rollout(key):
        obs, st = e.reset_env(key, params)
        total = 0.0
        for a in (0, 1, 1, 0):
            obs, st, r, term, _ = e.step_env(key, st, a, params)
            total += r
        return obs, total, term

    keys = jax.random.split(jax.random.key(0), 6)
    obs, total, term = jax.jit(jax.vmap(rollout))(keys)
    assert bool(jnp.all(term)) and bool(jnp.all(obs[:, 1] == 0))
    s0 = jax.vmap(lambda k: e.reset_env(k, params)[1].state)(keys)
    for i in range(6):
        assert float(total[i]) == env.path_reward(int(s0[i]), (0, 1, 1, 0))[0]


# ------------------------------------------------------------------ the planner


@pytest.mark.parametrize("moves", [3, 4, 5])
@pytest.mark.parametrize("sigma_value", [0.01, 50.0, 1e4])
def test_full_budget_finds_every_path(moves, sigma_value):
    res, noise = _plan(moves, sigma_value, env.full_budget(moves))
    assert np.all(np.asarray(res.n_paths) == 2 ** moves)
    assert np.all(np.asarray(res.spent) == env.full_budget(moves))
    np.testing.assert_array_equal(np.asarray(res.best_reward),
                                  env.best_paths(moves)[np.asarray(noise.s0)])


@pytest.mark.parametrize("moves", [3, 5])
def test_budget_respected_and_paths_legal(moves):
    full = env.full_budget(moves)
    for budget in (moves, moves + 1, 2 * moves + 1, full // 2, full - 1):
        res, noise = _plan(moves, 50.0, budget, n=64, seed=budget)
        spent = np.asarray(res.spent)
        assert np.all(spent <= budget)
        np.testing.assert_array_equal(np.asarray(res.step_active).sum(axis=1), spent)
        assert np.all(np.asarray(res.n_paths) == budget // moves)  # no path is revisited
        for i in range(64):
            s0 = int(noise.s0[i])
            path = np.asarray(res.best_path[i])
            total, _ = env.path_reward(s0, path)
            assert float(res.best_reward[i]) == total
            # the best path is the best of the complete paths in the trial's own trace
            act = np.asarray(res.step_active[i])
            acts = np.asarray(res.step_action[i])[act]
            rewards = np.asarray(res.step_reward[i])[act]
            states = np.asarray(res.step_state[i])[act]
            n_complete = len(acts) // moves
            paths = [tuple(acts[j * moves:(j + 1) * moves]) for j in range(n_complete)]
            assert len(set(paths)) == n_complete
            for j in range(n_complete):
                assert states[j * moves] == s0
                assert rewards[j * moves:(j + 1) * moves].sum() == env.path_reward(s0, paths[j])[0]
            assert total == max(rewards[j * moves:(j + 1) * moves].sum() for j in range(n_complete))


def test_forced_moves_have_zero_score():
    # once a subtree is fully explored the planner must take the other move; its log-prob under
    # the renormalized distribution (the one sampled from) is 0 whatever sigma, so the score
    # vanishes there, while the unrenormalized softmax would give a nonzero score. A small beta
    # keeps the softmax away from saturation so the difference is visible.
    moves = 3
    for grad in ("analytic", "autodiff"):
        res, noise = _plan(moves, 50.0, env.full_budget(moves), n=64, seed=3, grad=grad,
                           beta=0.05)
        score = np.asarray(res.step_score)
        last = slice(env.full_budget(moves) - moves, None)  # the last path: forced at every step
        assert np.abs(score[:, last]).max() < 1e-6  # (XLA rounding leaves ~1e-9)
        # the score of the unrenormalized softmax at those same steps is far from zero
        q = env.q_star(moves)
        s, k = np.asarray(res.step_state)[:, last], np.asarray(res.step_k)[:, last]
        a = np.asarray(res.step_action)[:, last]
        z = np.asarray(noise.zeta)[:, last]
        logits = 0.05 * (q[s, k - 1] + 50.0 * z)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        natural = 0.05 * z * (np.eye(2)[a] - p)
        assert np.abs(natural).max() > 1e-2


def test_low_precision_hurts_at_low_budget_only():
    lo, _ = _plan(3, 0.01, 3)
    hi, _ = _plan(3, 1e4, 3)
    assert float(lo.best_reward.mean()) > float(hi.best_reward.mean()) + 30


@pytest.mark.parametrize("moves", [3, 4])
def test_analytic_and_autodiff_gradients_agree(moves):
    q = jnp.asarray(env.q_star(moves)) + jax.random.normal(jax.random.key(9), (6, moves, 2))
    for budget in (moves, env.full_budget(moves) // 2, env.full_budget(moves)):
        ra, _ = _plan(moves, 30.0, budget, seed=1, q=q)
        rb, _ = _plan(moves, 30.0, budget, seed=1, q=q, grad="autodiff")
        np.testing.assert_array_equal(np.asarray(ra.step_action), np.asarray(rb.step_action))
        ga = np.asarray(jax.vmap(planner.trial_gradient)(ra))
        gb = np.asarray(jax.vmap(planner.trial_gradient)(rb))
        assert np.count_nonzero(ga) > 0
        np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-5 * np.abs(ga).max())


def test_expected_reward_chunking_and_traced_n():
    """Chunks of trials from fold_in(key, i); trial j of a chunk starts in state j mod 6 (the
    expectation is exact over the start states); a chunk is rounded up to a multiple of 6."""
    q = jnp.asarray(env.q_star(3))
    sigma = jnp.full(q.shape, 40.0)
    key = jax.random.key(5)
    f = jax.jit(lambda n: planner.expected_reward(key, q, sigma, 6, 10.0, n, chunk=66))
    a = float(f(jnp.int32(132)))
    starts = jnp.arange(66, dtype=jnp.int32) % 6
    direct = np.concatenate([
        np.asarray(planner.plan_batch(q, sigma, 6, 10.0, planner.trial_noise(
            jax.random.fold_in(key, i), 66, 24)._replace(s0=starts)).best_reward)
        for i in (0, 1)]).mean()
    assert a == pytest.approx(direct, rel=1e-6)
    assert float(f(jnp.int32(66))) != a
    g = jax.jit(lambda n: planner.expected_reward(key, q, sigma, 6, 10.0, n, chunk=64))
    assert float(g(jnp.int32(128))) == pytest.approx(a, rel=1e-6)  # 64 -> 66


# ------------------------------------------------------------------ training and CMA-ES


def _cfg(**over):
    raw = {"task": "planning", "n_seeds": 2, "figures": [],
           "dra": {"episodes": 4, "n_traj": 8},
           "eval": {"every": 2, "n_rollouts": 16}, "final": {"n_rollouts": 32},
           "sweep": {"budget": [3, 24], "allocation": ["flexible", "equal"]},
           "cma": {"enabled": False}}
    for k, v in over.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    return config_mod.validate(raw)


def test_vmapped_population_equals_each_candidate_alone():
    st = pt.PlanStatic(moves=3)
    p = {"beta": jnp.float32(10.0), "lam": jnp.float32(1.0), "sigma_base": jnp.float32(100.0)}
    sig = jax.random.uniform(jax.random.key(1), (5, 6, 3, 2), minval=0.5, maxval=100.0)
    budgets = jnp.asarray([3, 6, 12, 24, 7], jnp.int32)
    key = jax.random.key(2)
    pop = jax.jit(lambda s, b: pt.population_objective(st, p, s, b, key, 64))(sig, budgets)
    one = jax.jit(lambda s, b: pt.objective_estimate(st, p, s, b, key, 64))
    alone = np.asarray([one(sig[i], budgets[i]) for i in range(5)])
    np.testing.assert_allclose(np.asarray(pop), alone, rtol=1e-6)
    assert len(set(np.round(alone, 3))) == 5


def test_frozen_runs_skip_training_with_the_same_numbers(monkeypatch):
    """A pinned equal-precision run with q = q* not learned (the Fig. 3 protocol) trains
    nothing an output reads: its program skips the episodes (``PlanStatic.frozen``) and its
    curve, final values and tables equal the trained program's, bit for bit."""
    cfg = _cfg()
    runs = list(config_mod.iter_run_params(cfg))
    searched, _ = plan_equal.resolve_planning(cfg, runs, lambda r: px._static_of(cfg, r),
                                                lambda r: px.resolve_budget(cfg, r))
    eq = [r for r in searched if r["dra"]["allocation"] == "equal"]
    assert eq and all(px._static_of(cfg, r).frozen for r in eq)
    assert not any(px._static_of(cfg, r).frozen for r in searched
                   if r["dra"]["allocation"] != "equal")
    fast = px.run(cfg, runs, None)
    real = px._static_of
    monkeypatch.setattr(px, "_static_of", lambda c, r: real(c, r)._replace(frozen=False))
    slow = px.run(cfg, runs, None)
    for k in ("curve_objective", "curve_reward", "sigma", "q"):
        np.testing.assert_array_equal(fast.curves[k], slow.curves[k], err_msg=k)
    assert fast.finals == slow.finals
    assert fast.timing["env_steps"] < slow.timing["env_steps"]


def test_cma_es_of_a_problem_solved_in_this_process_is_reused(monkeypatch):
    """The same CMA-ES problem (planning and planning_loo's: the gradient's settings differ,
    CMA-ES never reads them) is solved once per process and its result returned again, equal
    to a fresh solve; another seed is another problem."""
    monkeypatch.setattr(pt, "_CMA_DONE", {})
    cma = {"enabled": True, "generations": 2, "popsize": 4, "n_eval_trials": 8, "restarts": 1}
    cfg = _cfg(cma=cma)
    st = px._static_of(cfg, {"dra": cfg["dra"], "task_params": cfg["task_params"],
                             "seed": cfg["seed"]})
    first = pt.run_cma(cfg, st, [3, 9])
    other = _cfg(cma=cma, dra={"episodes": 6, "n_traj": 3, "optimizer": "adam"})
    st2 = px._static_of(other, {"dra": other["dra"], "task_params": other["task_params"],
                                "seed": other["seed"]})
    assert st2 != st and pt.cma_problem(other, st2, [3, 9]) == pt.cma_problem(cfg, st, [3, 9])
    again = pt.run_cma(other, st2, [3, 9])
    assert not first["reused"] and again["reused"] and again["run_s"] == 0.0
    monkeypatch.setattr(pt, "_CMA_DONE", {})
    fresh = pt.run_cma(cfg, st, [3, 9])
    for k in ("objective", "sigma", "history"):
        np.testing.assert_array_equal(again[k], fresh[k])
    reseeded = dict(cfg, seed=cfg["seed"] + 1)
    assert pt.cma_problem(reseeded, st, [3, 9]) != pt.cma_problem(cfg, st, [3, 9])
    assert not pt.run_cma(reseeded, st, [3, 9])["reused"]


def test_training_and_sweep_runner_small():
    cfg = _cfg(cma={"enabled": True, "generations": 2, "popsize": 4, "n_eval_trials": 8,
                    "restarts": 2})
    runs = list(config_mod.iter_run_params(cfg))
    res = px.run(cfg, runs, None)
    assert len(res.finals) == 8
    assert res.curves["curve_objective"].shape == (8, 3)
    sig = res.curves["sigma"]
    full = env.best_paths(3)
    for run, f, s in zip(runs, res.finals, sig):
        # the cost from the final sigma (NumPy, float64), F = reward - cost (Eq. 1)
        r = s.astype(np.float64) / 100.0
        cost = np.sum(0.5 * (r * r - 1.0) - np.log(r))  # lam = 1, sigma_base = 100
        assert f["cost"] == pytest.approx(cost, rel=1e-4)
        assert f["objective"] == pytest.approx(f["expected_reward"] - cost, rel=1e-4, abs=1e-3)
        if px.resolve_budget(cfg, run) == 24:
            # the full budget finds every path: the final evaluation's expected reward is the
            # mean of the best path's reward over the six start states, exactly
            assert f["expected_reward"] == pytest.approx(full.mean(), rel=1e-6)
    assert np.all((sig >= 0.01) & (sig <= 100.0))
    eq = np.asarray([r["dra"]["allocation"] == "equal" for r in runs])
    assert np.all(np.ptp(sig[eq].reshape(eq.sum(), -1), axis=1) < 1e-4)  # one shared sigma
    assert np.any(np.ptp(sig[~eq].reshape((~eq).sum(), -1), axis=1) > 0)
    assert res.arrays["cma_objective"].shape == (2, 2)
    # the group-batched runner equals a whole run by `train` of one run alone
    st = px._static_of(cfg, runs[1])
    final, curve, _ = jax.jit(lambda p: pt.train(st, p))(px.make_params(cfg, runs[1]))
    np.testing.assert_allclose(np.asarray(curve)[:, 2], res.curves["curve_objective"][1],
                               rtol=1e-5)
    assert float(final[2]) == pytest.approx(res.finals[1]["objective"], rel=1e-5)


def test_pinned_last_move_stays_at_one_and_is_free():
    cfg = _cfg(task_params={"pin_last_move": True}, sweep={"budget": [3]})
    runs = list(config_mod.iter_run_params(cfg))
    res = px.run(cfg, runs, None)
    sig = res.curves["sigma"]
    assert np.all(sig[:, :, 0, :] == 1.0) and np.all(sig[:, :, 1:, :] != 1.0)
    # the cost counts the 24 learned memories only
    kl = float(memory.kl_cost(jnp.asarray(sig[0, :, 1:, :]), 100.0))
    assert res.finals[0]["cost"] == pytest.approx(kl, rel=1e-4)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    cfg = config_mod.load(path)
    assert cfg["task"] == "planning" and cfg["dra"]["psi"] == "max"
    runs = list(config_mod.iter_run_params(cfg))
    for r in runs:
        b, m = px.resolve_budget(cfg, r), r["task_params"]["moves"]
        assert m <= b <= env.full_budget(m)
    assert set(cfg["figures"]) <= set(px.FIGURES)


def test_paper_budgets_in_moves_config():
    cfg = config_mod.load(CONFIGS[1])
    by_m = {}
    for r in config_mod.iter_run_params(cfg):
        by_m.setdefault(r["task_params"]["moves"], set()).add(px.resolve_budget(cfg, r))
    assert by_m == {3: set(range(3, 25, 3)), 4: {4, 8, 12, 16, 24, 32, 48, 64},
                    5: {5, 10, 20, 30, 40, 80, 120, 160}}


@pytest.mark.parametrize("over,key", [
    ({"task_params": {"budget": 25}}, "task_params.budget"),
    ({"task_params": {"budget": 2}}, "task_params.budget"),
    ({"task_params": {"moves": 4, "budget": 65}}, "task_params.budget"),
    ({"sweep": {"budget": [3, 6, 30]}}, "sweep.budget[2]"),
    ({"task_params": {"moves": 6}}, "task_params.moves"),
    ({"dra": {"psi": "A"}}, "dra.psi"),
    ({"task_params": {"budget_index": 3}, "budgets": {"m3": [3, 6]}}, "task_params.budget_index"),
    ({"budgets": {"m3": [3, 30]}}, "budgets.m3[1]"),
    ({"cma": {"popsize": 1}}, "cma.popsize"),
    ({"eval": {"every": 3}}, "eval.every"),
])
def test_bad_values_are_rejected_naming_the_key(over, key):
    raw = {"task": "planning", "dra": {"episodes": 4}, "eval": {"every": 2}}
    for sec, v in over.items():
        raw.setdefault(sec, {}).update(v)
    with pytest.raises(ConfigError) as e:
        config_mod.validate(raw)
    assert e.value.key == key


def test_cli_rejects_a_budget_outside_range(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "dra_jax.sweep", "--config", str(CONFIGS[0]), "--out", str(out),
         "--set", "sweep.budget=[3, 25]"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "sweep.budget[1]" in proc.stderr and "[3, 24]" in proc.stderr
    assert not out.exists()


def test_budget_sweep_is_traced_one_compile(monkeypatch):
    # budgets and allocations are traced: all runs below share ONE advance program
    cfg = _cfg(sweep={"budget": [3, 9, 24], "allocation": ["flexible", "equal"]})
    runs = list(config_mod.iter_run_params(cfg))
    assert len({px._static_of(cfg, r) for r in runs}) == 1
    compiled: dict = {}
    monkeypatch.setattr(prun, "_COMPILED", compiled)  # no program kept from other tests
    res = px.run(cfg, runs, None)
    # one training program for every budget and allocation; the searched equal runs (q and
    # sigma pinned) get the frozen program, which trains nothing (PlanStatic.frozen)
    advance = [k[1] for k in compiled if k[0] == "advance"]
    assert len([st for st in advance if not st.frozen]) == 1 and len(res.finals) == len(runs)
    assert len([st for st in advance if st.frozen]) == 1
    # while n_traj is static: two values make two groups (two programs)
    cfg2 = _cfg(variants={"a": {"n_traj": 1}, "b": {"n_traj": 2}}, sweep={"budget": [3, 6]})
    assert len({px._static_of(cfg2, r) for r in config_mod.iter_run_params(cfg2)}) == 2
