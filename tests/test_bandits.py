"""Capacity-limited bandits: Blahut-Arimoto, TS / satisficing TS / BLASTS / DRA, configs."""
from __future__ import annotations

import glob
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from dra_jax import config
from dra_jax.bandits import agents as ba
from dra_jax.config import ConfigError
from dra_jax.envs import bandits as envs

CONFIGS = sorted(glob.glob("configs/bandits_*.toml"))


def _hb(p):
    """Binary entropy in nats."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


# --------------------------------------------------------------------------- Blahut-Arimoto


def _binary_source(pi_num: int, pi_den: int, dist: float):
    """Z = pi_den samples, pi_num of environment A (action 0 optimal), the rest of B (action 1);
    the wrong action costs ``dist`` (squared regret of a gap sqrt(dist))."""
    gap = math.sqrt(dist)
    env_a, env_b = [1.0, 1.0 - gap], [1.0 - gap, 1.0]
    return jnp.asarray([env_a] * pi_num + [env_b] * (pi_den - pi_num), jnp.float32)


@pytest.mark.parametrize("loop", ba.BA_LOOPS)
@pytest.mark.parametrize("space", ["prob", "log"])
def test_blahut_arimoto_binary_closed_form(loop, space):
    """Binary source P(A) = pi with Hamming distortion D (Cover & Thomas 10.3.1): at slope beta
    the optimal channel is a binary symmetric one with crossover eps = 1 / (1 + exp(beta D)),
    output marginal q_A = (pi - eps) / (1 - 2 eps), rate H(pi) - H(eps), distortion eps D
    (valid while eps < min(pi, 1 - pi)). BA from the uniform marginal must get there."""
    pi, dist, beta = 2 / 3, 0.49, 2.0  # D = 0.7^2: a distortion that is not squared shows
    theta = _binary_source(2, 3, dist)
    d = ba.regret_distortion(theta)
    np.testing.assert_allclose(d, [[0, dist], [0, dist], [dist, 0]], atol=1e-6)
    r = ba.blahut_arimoto(d, beta, tol=1e-8, max_iter=5000, loop=loop, space=space)
    eps = 1 / (1 + math.exp(beta * dist))
    q_a = (pi - eps) / (1 - 2 * eps)
    assert not bool(r.capped)
    assert int(r.iters) > 5  # a real fixed-point iteration, not a one-step answer
    np.testing.assert_allclose(np.exp(np.asarray(r.log_q)), [q_a, 1 - q_a], atol=2e-5)
    np.testing.assert_allclose(float(r.rate), _hb(pi) - _hb(eps), atol=2e-5)
    np.testing.assert_allclose(float(r.distortion), eps * dist, atol=2e-5)
    # the forward channel: delta(0|A) = q_A / (q_A + (1 - q_A) exp(-beta D)) (the *backward*
    # channel A|action is the BSC with crossover eps)
    delta = np.exp(np.asarray(r.log_delta))
    d0 = q_a / (q_a + (1 - q_a) * math.exp(-beta * dist))
    np.testing.assert_allclose(delta[0], [d0, 1 - d0], atol=2e-5)


def test_blahut_arimoto_cap_is_reported_and_loops_agree():
    theta = _binary_source(2, 3, 1.0)
    d = ba.regret_distortion(theta)
    capped = ba.blahut_arimoto(d, 2.0, tol=1e-8, max_iter=3)
    assert bool(capped.capped) and int(capped.iters) == 3
    key = jax.random.key(1)
    theta = jax.random.normal(key, (50, 6))
    d = ba.regret_distortion(theta)
    runs = [ba.blahut_arimoto(d, 3.0, 1e-6, 500, loop, space)
            for loop in ba.BA_LOOPS for space in ("prob", "log")]
    for r in runs[1:]:
        assert int(r.iters) == int(runs[0].iters)
        np.testing.assert_allclose(np.exp(r.log_q), np.exp(runs[0].log_q), atol=1e-5)
        np.testing.assert_allclose(r.rate, runs[0].rate, atol=1e-5)


def test_ba_duality_gap_bounds_the_suboptimality():
    """The returned ``gap`` is an upper bound on how far the channel's ``I + beta D`` lies above
    the optimum (taken from a long log-space run), at every cap, and vanishes at convergence."""
    d = ba.regret_distortion(jax.random.uniform(jax.random.key(5), (48, 6)))
    beta = 8.0
    opt = ba.blahut_arimoto(d, beta, 0.0, 20000, space="log")
    l_star = float(opt.rate + beta * opt.distortion)
    assert float(opt.gap) < 1e-5
    gaps = []
    for cap in (1, 3, 10, 30, 100):
        r = ba.blahut_arimoto(d, beta, 0.0, cap)
        excess = float(r.rate + beta * r.distortion) - l_star
        assert -2e-5 <= excess <= float(r.gap) + 2e-5, (cap, excess, float(r.gap))
        gaps.append(float(r.gap))
    assert gaps[0] > 1e-3 and gaps[-1] < gaps[0] / 10


def _np_objective(q, d, beta):
    """``I + beta D`` (nats) of the Blahut-Arimoto channel of marginal ``q``, in float64."""
    w = q * np.exp(-beta * (d - d.min(axis=1, keepdims=True)))
    delta = w / w.sum(axis=1, keepdims=True)
    marg = delta.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.sum(np.where(delta > 0, delta * np.log(delta / marg), 0.0)) / len(d)
    return rate + beta * np.sum(delta * d) / len(d)


def test_ba_vertex_certificate_stops_at_the_optimum():
    """``vertex=True``, started near a vertex ``e_b``: where the KKT conditions hold there the
    result is ``e_b`` after 0 iterations (rate 0), whose ``I + beta D`` is not above that of
    2000 plain float64 iterations (which creep towards ``e_b``); where they do not it
    changes nothing (same iterations, same marginal)."""
    theta = jnp.asarray([0.3, 0.0, -0.1, -0.4]) + 0.3 * jax.random.normal(jax.random.key(8), (64, 4))
    d = ba.regret_distortion(theta)
    d64 = np.asarray(d, np.float64)
    seen = set()
    solve = jax.jit(ba.blahut_arimoto, static_argnames=("max_iter", "vertex"))
    q0 = jnp.asarray([0.97, 0.01, 0.01, 0.01])
    for beta in (0.5, 2.0, 10.0, 100.0):
        r = solve(d, beta, 1e-5, 100, q0=q0, vertex=True)
        plain = solve(d, beta, 1e-5, 100, q0=q0)
        q = np.asarray(q0, np.float64)
        for _ in range(2000):
            w = q * np.exp(-beta * (d64 - d64.min(axis=1, keepdims=True)))
            q = (w / w.sum(axis=1, keepdims=True)).mean(axis=0)
        q_v = np.exp(np.asarray(r.log_q, np.float64))
        if float(r.rate) == 0.0:
            seen.add("vertex")
            b = int(np.argmax(q_v))
            np.testing.assert_array_equal(q_v, np.eye(4)[b])
            assert b == 0 and q[b] > 0.99 and int(r.iters) == 0 < int(plain.iters)
            assert _np_objective(np.eye(4)[b], d64, beta) <= _np_objective(q, d64, beta) + 1e-9
        else:
            seen.add("interior")
            assert int(r.iters) == int(plain.iters)
            np.testing.assert_array_equal(r.log_q, plain.log_q)
            assert q.max() < 0.99
    assert seen == {"vertex", "interior"}, seen
    # at the edge (binary source, Cover & Thomas 10.3.1): the optimum leaves the vertex e_A
    # where the BSC crossover eps = 1 / (1 + exp(beta D)) falls below 1 - pi; just past that
    # (q_A = 0.995, max_a c_a(e_A) = 1.003) the certificate must fail, just before it hold
    pi, dist = 2 / 3, 0.49
    d = ba.regret_distortion(_binary_source(2, 3, dist))
    for q_a, vertex_optimal in ((0.995, False), (1.005, True)):
        eps = (q_a - pi) / (2 * q_a - 1)
        beta = math.log(1 / eps - 1) / dist
        r = solve(d, beta, 1e-9, 5000, q0=jnp.asarray([0.9, 0.1]), vertex=True)
        got = float(np.exp(r.log_q[0]))
        if vertex_optimal:
            assert got == 1.0 and int(r.iters) == 0
        else:
            assert got == pytest.approx(q_a, abs=5e-4) and int(r.iters) > 0


def test_rate_nonnegative_and_falls_with_beta():
    theta = jax.random.normal(jax.random.key(2), (300, 5))
    d = ba.regret_distortion(theta)
    betas = jnp.asarray([100.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.0])
    res = jax.vmap(lambda b: ba.blahut_arimoto(d, b, 1e-7, 20000))(betas)
    rates = np.asarray(res.rate)
    assert not np.asarray(res.capped).any()
    assert (rates >= 0).all()
    assert (np.diff(rates) < 0).all(), rates  # strictly falls as beta falls ...
    assert rates[0] > 0.5 and rates[-1] < 1e-6  # ... from near H(A*) to zero
    assert (np.diff(np.asarray(res.distortion)) > 0).all()  # and distortion rises


def test_blasts_tends_to_ts_as_beta_grows():
    theta = 1.0 + jax.random.normal(jax.random.key(3), (2000, 3)) * 1.0
    theta = theta + jnp.asarray([-2.0, -1.0, 0.0])  # beliefs N(-1,1), N(0,1), N(1,1)
    ts = np.asarray(ba.action_histogram(ba.ts_action(theta), 3))
    gaps = []
    for beta in (0.3, 3.0, 30.0, 3000.0, 1e6):
        r = ba.blahut_arimoto(ba.regret_distortion(theta), beta, 1e-7, 20000)
        gaps.append(np.abs(np.exp(np.asarray(r.log_q)) - ts).max())
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-3 and gaps[0] > 0.1


def test_blasts_action_is_drawn_from_the_channel():
    theta = jax.random.normal(jax.random.key(4), (40, 4))
    r = ba.blahut_arimoto(ba.regret_distortion(theta), 1.0, 1e-7, 5000)
    keys = jax.random.split(jax.random.key(5), 20000)
    acts = jax.jit(jax.vmap(ba.blasts_action, in_axes=(0, None)))(keys, r)
    freq = np.bincount(np.asarray(acts), minlength=4) / len(acts)
    np.testing.assert_allclose(freq, np.exp(np.asarray(r.log_q)), atol=0.015)


# --------------------------------------------------------------------------- decision rules


def test_satisficing_ts_with_zero_epsilon_is_ts():
    theta = jax.random.normal(jax.random.key(6), (5000, 10))
    np.testing.assert_array_equal(ba.sts_action(theta, 0.0), ba.ts_action(theta))
    assert (np.asarray(ba.sts_action(theta, 0.5)) != np.asarray(ba.ts_action(theta))).any()
    # whole runs: same keys -> the same actions, pull by pull
    n, steps = 4, 30
    keys = jax.random.split(jax.random.key(7), n)
    hp = jax.vmap(lambda e: ba.make_hyper(epsilon=e))(jnp.zeros(n))
    ep = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n), envs.EnvParams())
    outs = {}
    for agent in ("ts", "sts"):
        st = ba.Static(agent, "gaussian", 10, steps, record_every=steps, track_rate=False)
        outs[agent] = jax.jit(jax.vmap(ba.make_run(st)))(keys, hp, ep)
    np.testing.assert_array_equal(outs["ts"].counts, outs["sts"].counts)
    np.testing.assert_array_equal(outs["ts"].cum_regret, outs["sts"].cum_regret)
    assert (np.asarray(outs["ts"].counts).max(axis=1) < steps).all()  # it did explore


def test_sts_rate_distortion_bounds():
    theta = jax.random.normal(jax.random.key(8), (500, 50))
    for eps in (0.0, 0.3, 1.0):
        rate, dist, _ = ba.sts_rate_distortion(theta, eps)
        assert 0 <= float(rate) <= math.log(500) + 1e-5
        assert float(dist) <= eps * eps + 1e-6  # A_eps is within eps of the best


# --------------------------------------------------------------------------- posteriors


def test_gaussian_posterior_update_closed_form():
    ep = envs.EnvParams(prior_mean=0.3, prior_sd=0.5, noise_sd=2.0)
    b = envs.prior_belief("gaussian", 3, ep)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 3, 25)
    rews = rng.normal(size=25).astype(np.float32)
    for a, r in zip(acts, rews):
        b = envs.update_belief("gaussian", b, int(a), r, ep)
    for arm in range(3):
        rs = rews[acts == arm]
        prec = 1 / 0.5**2 + len(rs) / 2.0**2
        mean = (0.3 / 0.5**2 + rs.sum() / 2.0**2) / prec
        np.testing.assert_allclose(b.b[arm], prec, rtol=1e-5)
        np.testing.assert_allclose(b.a[arm], mean, rtol=1e-5, atol=1e-6)


def test_bernoulli_posterior_update_closed_form():
    ep = envs.EnvParams(prior_a=1.0, prior_b=1.0)
    b = envs.prior_belief("bernoulli", 4, ep)
    rng = np.random.default_rng(1)
    acts = rng.integers(0, 4, 40)
    rews = (rng.random(40) < 0.4).astype(np.float32)
    for a, r in zip(acts, rews):
        b = envs.update_belief("bernoulli", b, int(a), r, ep)
    for arm in range(4):
        rs = rews[acts == arm]
        assert float(b.a[arm]) == 1 + rs.sum()
        assert float(b.b[arm]) == 1 + len(rs) - rs.sum()
    np.testing.assert_allclose(envs.posterior_mean("bernoulli", b), b.a / (b.a + b.b))


def test_beta_sampler_moments():
    ab = jnp.asarray([[1.0, 1.0], [3.0, 9.0], [0.4, 0.7], [40.0, 2.0]])
    n = 200_000
    x = np.asarray(jax.jit(jax.vmap(lambda k, p: envs.sample_beta(k, p[0], p[1], (n,))))(
        jax.random.split(jax.random.key(9), 4), ab))
    for (a, b), xs in zip(np.asarray(ab), x):
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
        assert abs(xs.mean() - mean) < 5 * math.sqrt(var / n), (a, b)
        assert abs(xs.var() - var) < 0.03 * var, (a, b)
        assert (xs > 0).all() and (xs < 1).all()


def test_env_reset_and_step():
    env = envs.Bandit(5, "gaussian")
    ep = env.default_params
    obs, st = env.reset(jax.random.key(10), ep)
    assert st.means.shape == (5,) and int(obs) == 0
    _, st2, r, term, trunc, info = env.step(jax.random.key(11), st, 2, ep)
    assert not bool(term) and not bool(trunc)
    np.testing.assert_allclose(st2.means, st.means)
    np.testing.assert_allclose(info["regret"], float(st.means.max() - st.means[2]), atol=1e-6)
    means = envs.Bandit(5, "bernoulli").draw_means(jax.random.key(12), ep)
    assert ((means > 0) & (means < 1)).all()


# --------------------------------------------------------------------------- runs


def test_vmap_equals_single_runs_and_dra_sigma_clipped():
    n, steps = 3, 20
    keys = jax.random.split(jax.random.key(12), n)
    hp = jax.vmap(lambda lam: ba.make_hyper(lam=lam, sigma_min=0.05, sigma_max=1.5))(jnp.asarray([0.0, 0.5, 5.0]))
    ep = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n), envs.EnvParams())
    st = ba.Static("dra", "gaussian", 6, steps, record_every=steps, track_rate=False)
    run = ba.make_run(st)
    batched = jax.jit(jax.vmap(run))(keys, hp, ep)
    single = jax.jit(run)
    for i in range(n):
        one = single(keys[i], jax.tree.map(lambda x: x[i], hp), jax.tree.map(lambda x: x[i], ep))
        np.testing.assert_allclose(one.cum_regret, batched.cum_regret[i], rtol=1e-5)
        np.testing.assert_allclose(one.sigma, batched.sigma[i], rtol=1e-5)
    sig = np.asarray(batched.sigma)
    assert (sig >= 0.05 - 1e-6).all() and (sig <= 1.5 + 1e-6).all()
    # lam pulls sigma to sigma_base = 1: bigger lam, sigma closer to 1
    dev = np.abs(sig - 1.0).mean(axis=1)
    assert dev[2] < dev[0]


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads(path):
    cfg = config.load(path)
    assert cfg["task"] == "bandits"
    assert cfg["figures"]
    assert len(list(config.iter_run_params(cfg))) >= 1


def test_there_are_bandit_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("override,key", [
    ("sweep.agent=['ts', 'blasts:-1']", "sweep.agent[1]"),
    ("task_params.agent='sts:-0.1'", "task_params.agent"),
    ("task_params.agent='blasts'", "task_params.agent"),
    ("task_params.agent='greedy'", "task_params.agent"),
    ("task_params.arms=1", "task_params.arms"),
    ("task_params.info_cost=-1.0", "task_params.info_cost"),
    ("task_params.ba_tol=0.0", "task_params.ba_tol"),
    ("task_params.record_every=7", "task_params.record_every"),
    ("task_params.kind='poisson'", "task_params.kind"),
    ("dra.lam=-0.1", "dra.lam"),
    ("dra.episodes=100", "dra.episodes"),
    ("figures=['rate_distortion']", "figures"),
    ("task_params.bogus=1", "task_params.bogus"),
])
def test_bad_values_are_rejected_naming_the_key(override, key):
    path = "configs/bandits_regret_vs_rate.toml"
    config.load(path)  # the base config is fine
    with pytest.raises(ConfigError) as e:
        config.load(path, [override])
    assert e.value.key == key


# --------------------------------------------------------------------------- BLASTS end to end


def _numpy_blasts(key, arms, steps, ba_beta, tol, max_iter, z_samples, ep, warm=True,
                  vertex=True):
    """BLASTS (the review's Algorithm 2) on a Gaussian bandit in plain NumPy (float64), fed the
    random numbers the JAX agent draws (same keys, same calls): the bandit's means, the random
    bits of the posterior samples (made normal here: scipy's ``ndtri`` of the midpoint
    uniforms), the sample index, the Gumbel noise of the categorical draw, the reward noise.
    Everything else (posterior, distortion, Blahut-Arimoto, the draw) is computed here.
    Blahut-Arimoto starts from the uniform marginal, or with ``warm`` from the last step's
    marginal mixed with ``ba.WARM_MIX`` of the uniform; with ``vertex`` it is ``e_b`` after 0
    iterations (``b`` the argmax of the start) when the KKT conditions ``mean_z K_za / K_zb <=
    1`` hold for every ``a``. Returns per step the action,
    the posterior (mean, precision) after it and the channel's rate I(Z; A) (nats)."""
    k_env, k_steps = jax.random.split(key)
    means = ep.prior_mean + ep.prior_sd * np.asarray(jax.random.normal(k_env, (arms,)), np.float64)
    m = np.full(arms, ep.prior_mean, np.float64)
    tau = np.full(arms, 1.0 / ep.prior_sd ** 2)
    actions, beliefs, rates, iters, vertices = [], [], [], [], []
    q_last = np.full(arms, 1.0 / arms)
    for t in range(steps):
        k_act, k_rew, _, _ = jax.random.split(jax.random.fold_in(k_steps, t), 4)
        k_th, k_pick = jax.random.split(k_act)
        bits = np.asarray(jax.random.bits(k_th, (z_samples, arms), jnp.uint32)) >> 9
        normals = special.ndtri((bits.astype(np.float64) + 0.5) * 2.0 ** -23)
        theta = m + normals / np.sqrt(tau)
        d = (theta.max(axis=1, keepdims=True) - theta) ** 2
        kernel = np.exp(-ba_beta * (d - d.min(axis=1, keepdims=True)))

        def optimal_vertex(q):  # e_b if the KKT conditions hold there, else None
            b = int(np.argmax(q))
            with np.errstate(divide="ignore", invalid="ignore"):
                c = np.mean(kernel / kernel[:, [b]], axis=0)
            c[b] = 0.0
            return np.eye(arms)[b] if vertex and (c <= 1.0).all() else None

        q = (1 - ba.WARM_MIX) * q_last + ba.WARM_MIX / arms if warm else np.full(arms, 1.0 / arms)
        it, e_b = 0, optimal_vertex(q)
        while e_b is None and it < max_iter:  # Blahut-Arimoto
            it += 1
            delta = q * kernel
            delta /= delta.sum(axis=1, keepdims=True)
            q_new = delta.mean(axis=0)
            done = np.abs(q_new - q).max() < tol
            q = q_new
            if done:
                break
        if e_b is not None:
            q, delta = e_b, np.tile(e_b, (z_samples, 1))
        q_last = q
        iters.append(it)
        vertices.append(e_b is not None)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates.append(np.nansum(np.where(delta > 0, delta * np.log(delta / q), 0.0)) / z_samples)
        kz, ka = jax.random.split(k_pick)
        zi = int(jax.random.randint(kz, (), 0, z_samples))
        gumbel = np.asarray(jax.random.gumbel(ka, (arms,)), np.float64)
        with np.errstate(divide="ignore"):
            a = int(np.argmax(np.log(delta[zi]) + gumbel))
        r = means[a] + ep.noise_sd * float(jax.random.normal(k_rew, ()))
        tau_new = tau[a] + 1.0 / ep.noise_sd ** 2
        m[a] = (tau[a] * m[a] + r / ep.noise_sd ** 2) / tau_new
        tau[a] = tau_new
        actions.append(a)
        beliefs.append((m.copy(), tau.copy()))
    return (means, np.asarray(actions), beliefs, np.asarray(rates), np.asarray(iters),
            np.asarray(vertices))


@pytest.mark.parametrize("warm,vertex", [(True, True), (False, False)])
def test_blasts_agent_equals_a_numpy_blasts_step_by_step(warm, vertex):
    """50 steps of the JAX BLASTS agent on a 3-arm Gaussian bandit, with and without the warm
    start (and its vertex certificate): the same actions, channel rates, iteration counts and
    posteriors as the NumPy agent, and make_run's whole-run regret curve and pull counts. With
    the certificate both kinds of step occur: channels stopped at a vertex, and interior ones."""
    arms, steps, z, cap = 3, 50, 64, 100
    ep = envs.EnvParams(noise_sd=0.7)
    hp = ba.make_hyper(ba_beta=3.0, ba_tol=1e-4)
    key = jax.random.key(21)
    means, acts, beliefs, rates, iters, at_vertex = _numpy_blasts(key, arms, steps, 3.0, 1e-4, cap,
                                                                  z, ep, warm, vertex)
    assert 0 < at_vertex.sum() < steps if vertex else not at_vertex.any()
    st = ba.Static("blasts", "gaussian", arms, steps, record_every=1, z_samples=z,
                   ba_max_iter=cap, ba_loop="while", ba_warm_start=warm, ba_vertex=vertex)
    env = envs.Bandit(arms, "gaussian")
    k_env, k_steps = jax.random.split(key)
    means_j = env.reset_env(k_env, ep)[1].means
    np.testing.assert_allclose(means_j, means, rtol=1e-6)
    belief = envs.prior_belief("gaussian", arms, ep)
    carry = ba.Carry(belief, envs.posterior_mean("gaussian", belief), jnp.ones(arms),
                     jnp.zeros(arms), 0.0, 0.0, 0.0, 0.0, jnp.int32(0), jnp.int32(0),
                     jnp.full(arms, 1.0 / arms), jnp.int32(0))
    step = jax.jit(lambda c, k: ba._step(st, env, ep, hp, means_j, c, k))
    for t in range(steps):
        carry, out = step(carry, jax.random.fold_in(k_steps, t))
        a = int(np.argmin(np.abs(means - float(out.reward))))
        assert a == acts[t], t
        assert float(out.rate) == pytest.approx(rates[t], rel=1e-3, abs=1e-4), t  # the channel
        assert abs(int(out.iters) - iters[t]) <= 1, t  # the same start and stopping rule
        np.testing.assert_allclose(carry.belief.a, beliefs[t][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(carry.belief.b, beliefs[t][1], rtol=1e-6)
    assert len(set(acts.tolist())) == arms  # it explored every arm
    run = jax.jit(ba.make_run(st))(key, hp, ep)
    np.testing.assert_array_equal(np.asarray(run.counts), np.bincount(acts, minlength=arms))
    regret = np.cumsum(means.max() - means[acts])
    np.testing.assert_allclose(run.cum_regret, regret, rtol=1e-5, atol=1e-5)
    assert float(run.mean_iters) == pytest.approx(iters.mean(), abs=0.1)


def test_blasts_at_large_beta_has_the_regret_of_thompson_sampling():
    """As beta -> inf the BA channel plays the argmax of one uniformly chosen posterior sample:
    Thompson sampling. Over 300 bandits (the same for both agents, different random streams),
    BLASTS at beta = 1e6 and TS differ in mean total regret by less than 3 SE of the paired
    difference, and that SE is under 5% of TS's regret (a 15% difference would show)."""
    n, arms, steps = 300, 3, 100
    keys = jax.random.split(jax.random.key(31), n)
    ep = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n), envs.EnvParams())
    total = {}
    for agent in ("ts", "blasts"):
        st = ba.Static(agent, "gaussian", arms, steps, record_every=steps, z_samples=32,
                       ba_loop="while", track_rate=False)
        hp = jax.vmap(lambda b: ba.make_hyper(ba_beta=b))(jnp.full(n, 1e6))
        total[agent] = np.asarray(jax.jit(jax.vmap(ba.make_run(st)))(keys, hp, ep).total_regret,
                                  np.float64)
    d = total["blasts"] - total["ts"]
    se = d.std() / np.sqrt(n)
    assert abs(d.mean()) < 3 * se, (d.mean(), se)
    assert se < 0.05 * total["ts"].mean(), (se, total["ts"].mean())
    assert np.mean(d != 0) > 0.5  # different random streams: not the same runs
