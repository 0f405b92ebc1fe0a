"""Episodic MDPs, PSRL (Algorithm 6) and VE-PSRL (Algorithm 7): the issue's claims and contracts."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from dra_jax import config
from dra_jax.bandits import agents as ba
from dra_jax.config import ConfigError
from dra_jax.envs import episodic as envs
from dra_jax.episodic import psrl
from dra_jax.experiments import episodic as exp

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- planning


def _tiny_mdp(seed=0, S=2, A=2):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A)).astype(np.float32)
    R = rng.uniform(size=(S, A)).astype(np.float32)
    return envs.dense_structure(S, A), envs.MDP(jnp.asarray(P), jnp.asarray(R))


def _brute_value(P, R, pi, H):
    """V^pi(h=0) of a non-stationary policy pi [H, S] by forward propagation of the state law."""
    S = R.shape[0]
    total = np.zeros(S)
    for s0 in range(S):
        law = np.eye(S)[s0]
        for h in range(H):
            a = pi[h]
            total[s0] += law @ R[np.arange(S), a]
            law = law @ P[np.arange(S), a]
    return total


def test_value_iteration_equals_brute_force_over_all_policies():
    st, m = _tiny_mdp()
    H, S, A = 3, 2, 2
    Q, V, pi = envs.value_iteration(m, st.succ, H)
    P, R = np.asarray(m.P), np.asarray(m.R)
    best = np.full(S, -np.inf)
    for flat in itertools.product(range(A), repeat=H * S):  # all 64 non-stationary policies
        best = np.maximum(best, _brute_value(P, R, np.array(flat).reshape(H, S), H))
    np.testing.assert_allclose(np.asarray(V[0]), best, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(envs.policy_values(m, st.succ, pi)[0]), best, rtol=1e-5)
    other = np.array([[0, 1], [1, 1], [1, 0]])
    np.testing.assert_allclose(np.asarray(envs.policy_values(m, st.succ, jnp.asarray(other))[0]),
                               _brute_value(P, R, other, H), rtol=1e-5)
    assert np.asarray(V[H]).tolist() == [0.0, 0.0]


def test_riverswim_structure_and_optimal_policy_swims_right():
    st, m = envs.riverswim(6)
    P = np.asarray(m.P)
    np.testing.assert_allclose(P.sum(-1), 1.0, rtol=1e-6)
    assert not np.any(P[~st.support] > 0)
    _, V, pi = envs.value_iteration(m, st.succ, 20)
    assert np.all(np.asarray(pi)[:10] == 1)  # far from the end: swim right everywhere
    gs, gm = envs.slippery_grid(0.2)
    np.testing.assert_allclose(np.asarray(gm.P).sum(-1), 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- posterior


def test_posterior_update_matches_closed_form():
    st, _ = envs.riverswim(4)
    b = envs.prior_belief(st, 0.5, 2.0, 3.0)
    obs = [(1, 1, 2, 1.0), (1, 1, 2, 0.0), (1, 1, 1, 1.0), (0, 0, 2, 0.0)]
    for s, a, k, r in obs:
        b = envs.update_belief(b, s, a, k, r)
    alpha = np.where(st.support, 0.5, 0.0)
    alpha[1, 1, 2] += 2
    alpha[1, 1, 1] += 1
    alpha[0, 0, 2] += 1
    np.testing.assert_array_equal(np.asarray(b.alpha), alpha)
    assert float(b.ra[1, 1]) == 4.0 and float(b.rb[1, 1]) == 4.0
    assert float(b.ra[0, 0]) == 2.0 and float(b.rb[0, 0]) == 4.0
    # posterior samples: Dirichlet and Beta moments of the closed forms (4 standard errors)
    n = 10000
    keys = jax.random.split(jax.random.key(1), n)
    ms = jax.jit(jax.vmap(lambda k: envs.sample_mdp(k, b)))(keys)
    p = np.asarray(ms.P[:, 1, 1])
    a0 = alpha[1, 1]
    mean = a0 / a0.sum()
    var = mean * (1 - mean) / (a0.sum() + 1)
    np.testing.assert_array_less(np.abs(p.mean(0) - mean), 4 * np.sqrt(var / n) + 1e-7)
    np.testing.assert_allclose(p.var(0), var, rtol=0.08, atol=1e-7)  # ~5.6 SE
    r = np.asarray(ms.R[:, 1, 1])
    assert abs(r.mean() - 0.5) < 4 * np.sqrt(0.25 / 9 / n)
    assert np.all(np.asarray(ms.P[:, 0, :, 1]) == 0)  # the left bank's duplicate candidate


@pytest.mark.parametrize("a", [0.3, 1.0, 4.0, 60.0])
def test_gamma_sampler_matches_the_gamma_law(a):
    x = np.asarray(jax.jit(lambda k: envs.gamma(k, jnp.full((40000,), a)))(jax.random.key(3)))
    ks = stats.kstest(x, stats.gamma(a).cdf)
    assert ks.pvalue > 1e-3, ks
    assert abs(x.mean() - a) < 4 * np.sqrt(a / x.size)


def test_lane_task_steps_follow_the_true_mdp():
    st, m = envs.riverswim(6)
    task = envs.EpisodicTask(st, 5)
    tp = {"P": m.P, "R": m.R}

    def roll(u):
        s0 = task.reset(u, tp, 0)
        s1, r, term = task.step(s0, jnp.int32(1), tp, 0)
        return s1.s, r, term, task.row(s1, tp)

    u = jax.random.uniform(jax.random.key(0), (20000,))
    s1, r, term, row = jax.jit(jax.vmap(roll))(u)
    frac = np.bincount(np.asarray(s1), minlength=6) / u.size
    np.testing.assert_allclose(frac[:2], [0.4, 0.6], atol=0.015)  # left bank, swim right
    assert not np.any(np.asarray(term)) and np.all(np.asarray(row) == 6 + np.asarray(s1))


def test_gymnax_face_ends_after_the_horizon():
    st, m = envs.riverswim(6)
    e = envs.EpisodicMDP(st)
    params = envs.EnvParams(P=m.P, R=m.R, max_steps_in_episode=3)
    obs, state = e.reset_env(jax.random.key(0), params)
    dones = []
    for t in range(3):
        obs, state, r, done, _ = e.step_env(jax.random.key(t + 1), state, 1, params)
        dones.append(bool(done))
    assert int(obs) in range(6) and dones == [False, False, True]


# --------------------------------------------------------------------------- distortion


def test_distortion_hand_computed_two_state_example():
    # two 2-state, 1-action MDPs; M1 always goes to state 0 with no reward; M2 always goes to
    # state 1, reward 0.5 in state 0. Value class {V = (0, 1)}:
    #   B_{M1} V = (0 + V0, 0 + V0) = (0, 0);  B_{M2} V = (0.5 + V1, 0 + V1) = (1.5, 1)
    #   d(M1, M2) = max((0 - 1.5)^2, (0 - 1)^2) = 2.25
    st = envs.dense_structure(2, 1)
    P = jnp.asarray([[[[1.0, 0.0]], [[1.0, 0.0]]], [[[0.0, 1.0]], [[0.0, 1.0]]]])
    R = jnp.asarray([[[0.0], [0.0]], [[0.5], [0.0]]])
    d = np.asarray(psrl.distortion(envs.MDP(P, R), st.succ, jnp.asarray([[0.0, 1.0]]),
                                   jnp.ones((2, 1), bool)))
    np.testing.assert_allclose(d, [[0.0, 2.25], [2.25, 0.0]], rtol=1e-6)
    # box [0, H]^S: |dR| + H TV per state -> state 0: 0.5 + 3 * 1
    db = np.asarray(psrl.box_distortion(envs.MDP(P, R), 3, jnp.ones((2, 1), bool)))
    np.testing.assert_allclose(db, [[0.0, 12.25], [12.25, 0.0]], rtol=1e-6)


def test_distortion_over_all_policies_equals_brute_force_enumeration():
    S, A, Z, H = 3, 2, 4, 4
    st = envs.dense_structure(S, A)
    b = envs.prior_belief(st, 1.0, 1.0, 1.0)
    ms = jax.jit(jax.vmap(lambda i: envs.sample_mdp(jax.random.fold_in(jax.random.key(5), i), b)))(
        jnp.arange(Z))
    vals = jax.random.uniform(jax.random.key(6), (3, S)) * H
    mask = jnp.ones((S, A), bool)
    dist = jax.jit(lambda m: psrl.distortion(ms, st.succ, vals, m))
    d = np.asarray(dist(mask))
    P, R, V = np.asarray(ms.P), np.asarray(ms.R), np.asarray(vals)
    brute = np.zeros((Z, Z))
    for pol in itertools.product(range(A), repeat=S):  # every deterministic rule
        idx = (np.arange(S), np.array(pol))
        for v in V:
            bv = R[:, idx[0], idx[1]] + np.einsum("zst,t->zs", P[:, idx[0], idx[1]], v)
            brute = np.maximum(brute, np.max((bv[:, None] - bv[None]) ** 2, axis=-1))
    np.testing.assert_allclose(d, brute, rtol=1e-5, atol=1e-7)
    assert np.all(np.diag(d) == 0) and np.allclose(d, d.T)
    # a smaller policy class (only action 0 in state 0) never has a larger distortion
    d0 = np.asarray(dist(mask.at[0, 1].set(False)))
    assert np.all(d0 <= d + 1e-7)


def test_ba_warm_start():
    """``q0`` uniform is the default start; started at its own fixed point, BA stops at once
    with the same channel (the warm start VE-PSRL uses across episodes)."""
    d = jax.random.uniform(jax.random.key(2), (16, 16)) * 3
    d = d * (1 - jnp.eye(16))
    for beta in (0.3, 3.0):
        a = ba.blahut_arimoto(d, beta, 1e-6, 300, "while")
        b = ba.blahut_arimoto(d, beta, 1e-6, 300, "while", q0=jnp.full((16,), 1 / 16))
        np.testing.assert_array_equal(np.asarray(a.log_delta), np.asarray(b.log_delta))
        assert int(a.iters) == int(b.iters) > 5
        conv = ba.blahut_arimoto(d, beta, 1e-8, 20000, "while")
        warm = ba.blahut_arimoto(d, beta, 1e-6, 300, "while", q0=jnp.exp(conv.log_q))
        assert int(warm.iters) <= 2
        np.testing.assert_allclose(np.exp(np.asarray(warm.log_delta)),
                                   np.exp(np.asarray(conv.log_delta)), atol=1e-5)


# --------------------------------------------------------------------------- agents


BETAS = (0.1, 1.0, 10.0, 1e6)
SEEDS = tuple(range(12))
EPISODES = 150
Z = 16


@pytest.fixture(scope="module")
def riverswim_runs():
    st, true = envs.riverswim(6)
    tr = envs.MDP(np.asarray(true.P), np.asarray(true.R))
    out = {}
    static = psrl.Static("vepsrl", 20, EPISODES, Z, "all", "optimal", 4, 200, "while", True)
    seeds = [s for _ in BETAS for s in SEEDS]
    hyps = [psrl.make_hyper(beta=b, ba_tol=1e-6) for b in BETAS for _ in SEEDS]
    o, _, _ = exp.run_psrl_batch(static, st, seeds, hyps, [tr] * len(seeds), n_dev=1)
    out["vepsrl"] = jax.tree.map(lambda x: x.reshape((len(BETAS), len(SEEDS)) + x.shape[1:]), o)
    o, _, _ = exp.run_psrl_batch(static._replace(agent="psrl"), st, list(SEEDS),
                                 [psrl.make_hyper()] * len(SEEDS), [tr] * len(SEEDS), n_dev=1)
    out["psrl"] = o
    return out


def test_psrl_regret_on_riverswim_is_sublinear(riverswim_runs):
    cum = np.cumsum(riverswim_runs["psrl"].regret, axis=1).mean(0)
    first = cum[EPISODES // 10 - 1] / (EPISODES // 10)
    last = (cum[-1] - cum[EPISODES // 2 - 1]) / (EPISODES - EPISODES // 2)
    assert last <= 0.5 * first, (first, last)
    assert np.all(riverswim_runs["psrl"].regret >= -1e-4)  # V* is optimal


def test_vepsrl_at_huge_beta_is_psrl(riverswim_runs):
    big, ps = jax.tree.map(lambda x: x[-1], riverswim_runs["vepsrl"]), riverswim_runs["psrl"]
    assert big.moved.mean() < 0.01  # j = z: the same sample as PSRL's
    diff = big.cum_regret - ps.cum_regret
    se = ps.cum_regret.std() / np.sqrt(len(SEEDS))
    assert abs(diff.mean()) <= 2 * se + 1e-3, (diff, se)
    assert np.mean(np.isclose(big.regret, ps.regret, atol=1e-5)) > 0.9  # same random numbers


def test_rate_falls_and_distortion_rises_as_beta_falls(riverswim_runs):
    v = riverswim_runs["vepsrl"]
    # episode 0: every beta sees the same prior samples and a uniform start, so this is the
    # rate-distortion curve of one source: strictly ordered per seed
    r0, d0 = v.rate[:, :, 0], v.distortion[:, :, 0]
    assert np.all(np.diff(r0, axis=0) >= -1e-5) and np.all(np.diff(d0, axis=0) <= 1e-5)
    assert np.all(r0[-1] > r0[0] + 0.5)
    # over the whole run too (means over seeds and episodes)
    mean_rate = v.rate.mean(axis=(1, 2))
    assert np.all(np.diff(mean_rate) > 0), mean_rate
    assert v.distortion[0].mean() > v.distortion[-2].mean()
    # beta -> 0: one model for every z (rate ~ 0, the target is rarely z itself)
    assert v.rate[0, :, 1:].mean() < 0.05 and v.moved[0].mean() > 0.8


# --------------------------------------------------------------------------- configs


def _raw(**over):
    raw = {"task": "episodic", "_name": "t", "dra": {"episodes": 10}}
    for k, v in over.items():
        sec, _, key = k.partition("__")
        if key:
            raw.setdefault(sec, {})[key] = v
        else:
            raw[sec] = v
    return raw


@pytest.mark.parametrize("over,key", [
    ({"task_params__agent": "vepsrl:-1"}, "task_params.agent"),
    ({"sweep__agent": ["psrl", "vepsrl:-0.5"]}, "sweep.agent[1]"),
    ({"task_params__agent": "vepsrl"}, "task_params.agent"),
    ({"task_params__z_samples": 1}, "task_params.z_samples"),
    ({"task_params__horizon": 0}, "task_params.horizon"),
    ({"task_params__pi_class": "every_stochastic"}, "task_params.pi_class"),
    ({"task_params__n_values": 99}, "task_params.n_values"),
    ({"dra__max_steps": 5}, "dra.max_steps"),
    ({"sweep__episodes": [10, 20]}, "sweep.episodes"),
])
def test_bad_configs_name_the_key(over, key):
    with pytest.raises(ConfigError) as e:
        config.validate(_raw(**over))
    assert e.value.key == key


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    from dra_jax import sweep

    out = tmp_path / "out"
    rc = sweep.main(["--config", str(ROOT / "configs" / "episodic.toml"), "--out", str(out), "--quiet",
                     "--set", "task_params.z_samples=1"])
    assert rc == 2 and not out.exists()
