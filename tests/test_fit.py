"""The particle-filter likelihood of the fitter: exactness, unbiasedness, missed trials."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from dra_jax.envs import stimulus_response as sr
from dra_jax.fitting import data, models, particle, reference, simulate, zeta

THETA = np.array([0.1, 20.0, 0.5, 0.05, 1.0, 0.3])  # lam, beta, alpha_q, alpha_sigma, sigma_base, sigma0
ZETA = {"zeta": "rqmc", "n_zeta": 16}  # few zeta points: these tests are about the filter
QMC16 = {"zeta": "qmc", "n_zeta": 16}


def _dataset(kind="dra", n=3, seed=0, set_sizes=(2, 4, 6), reps=6):
    st = models.Static(kind, 6, 3)
    return simulate.synthetic_dataset(st, np.tile(THETA, (n, 1)), seed, set_sizes, reps)


def _jax_ll(kind, ds, theta, n_particles, tags=(0,), ess=0.5, zeta=None):
    st = models.Static(kind, 6, 3, **(zeta or ZETA))
    n, c = len(ds.subjects), len(tags)
    th = jnp.asarray(np.broadcast_to(theta, (n, c, 6)), jnp.float32)
    keys = jax.vmap(lambda i: jax.vmap(lambda t: jax.random.fold_in(jax.random.key(i), t))(
        jnp.asarray(tags)))(jnp.arange(n))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    ll, n_res = particle.loglik(st, n_particles, ess, th, tr, keys)
    return np.asarray(ll, np.float64), np.asarray(n_res)


def _ref_ll(kind, ds, i, theta, n_particles, rng, resample=True, n_nodes=1024, nodes=None):
    """The NumPy reference: its own randomized integration over zeta (``n_nodes`` points a
    particle and trial), or exactly ``nodes``."""
    st = models.Static(kind, 6, 3)
    tr = ds.trials
    return reference.loglik(st, theta, tr.s[i], tr.a[i], tr.r[i], tr.new_block[i] & tr.valid[i],
                            tr.block[i], n_particles, rng, resample=resample, n_nodes=n_nodes,
                            nodes=nodes)


@pytest.mark.parametrize("kind", ["qlearn", "lam0"])
def test_deterministic_latent_one_particle_is_the_exact_likelihood(kind):
    """With no latent randomness one particle gives the exact log-likelihood: the JAX filter
    (float32, fixed qmc nodes) equals the NumPy computation of prod_t P(a_t | s_t) (float64) on
    the same nodes (an arithmetic check; the node rule's own error is the next tests'), with
    missed trials in the data, and 16 particles give the same number (they are all the same
    particle)."""
    df = _dataset(kind)
    df.loc[[3, 40, 41], "action"] = np.nan
    ds = data.load(df, 6, 3)
    theta = THETA.copy()
    theta[1] = 4.0 if kind == "qlearn" else 20.0
    ll1, _ = _jax_ll(kind, ds, theta, 1, zeta=QMC16)
    ll16, _ = _jax_ll(kind, ds, theta, 16, zeta=QMC16)
    rng = np.random.default_rng(0)
    nodes = models.zeta_nodes(models.Static(kind, 6, 3, **QMC16))
    exact = np.array([_ref_ll(kind, ds, i, theta, 1, rng, nodes=nodes)
                      for i in range(len(ds.subjects))])
    assert np.all(np.isfinite(exact)) and np.all(exact < -10)
    np.testing.assert_allclose(ll1[:, 0], exact, rtol=2e-5)
    np.testing.assert_allclose(ll16[:, 0], exact, rtol=2e-5)


def test_particle_filter_is_unbiased_on_a_tiny_problem():
    """2 stimuli x 8 trials of DRA, whose sigma moves by its own random rollouts. The mean over
    3000 replicates of exp(loglik) of the JAX filter (4 particles, resampling whenever ESS < 0.99
    P, so on most trials; rqmc, 16 nodes) equals the brute-force Monte Carlo likelihood
    mean_i prod_t P(a_t | z_i,t) over 40000 independent latent paths of the NumPy reference (no
    resampling; each path's P(a_t | z_i,t) from the reference's own 32 randomized points, an
    unbiased estimate), within 4 combined standard errors; and the latent randomness matters: the
    likelihood differs from that of the same agent with its sigma frozen (alpha_sigma = 0) by
    many standard errors (measured: 0.63 and 66 SE)."""
    theta = np.array([0.05, 10.0, 0.6, 0.5, 1.0, 0.5])
    design = sr.make_design(np.random.default_rng(3), (2,), 4)
    a = design.correct.copy()
    a[[2, 5]] = (a[[2, 5]] + 1) % 3  # two errors; rewarded trials make q (so Psi) non-zero
    df = pd.DataFrame({"subject": "x", "block": design.block, "trial": design.trial,
                       "state": design.state, "action": a, "reward": sr.reward(design.correct, a)})
    ds = data.load(df, 6, 3)
    n_rep = 3000
    ll, n_res = _jax_ll("dra", ds, theta, 4, tags=np.arange(n_rep), ess=0.99)
    assert n_res.mean() > 1  # the filter does resample (measured: 1.17 times a replicate)
    lik = np.exp(ll[0])
    pf_mean, pf_se = lik.mean(), lik.std(ddof=1) / np.sqrt(n_rep)
    batches = [np.exp(_ref_ll("dra", ds, 0, theta, 4000, np.random.default_rng(100 + b),
                              resample=False, n_nodes=32)) for b in range(10)]
    bf_mean, bf_se = np.mean(batches), np.std(batches, ddof=1) / np.sqrt(len(batches))
    se = np.hypot(pf_se, bf_se)
    assert abs(pf_mean - bf_mean) < 4 * se, (pf_mean, bf_mean, se)
    frozen = theta.copy()
    frozen[3] = 0.0
    ll_frozen = _jax_ll("dra", ds, frozen, 1)[0][0, 0]
    assert abs(np.exp(ll_frozen) - bf_mean) > 6 * se, (np.exp(ll_frozen), bf_mean, se)


@pytest.mark.parametrize("kind", ["qlearn", "dra"])
def test_missed_trials_add_nothing(kind):
    """Marking trials as missed (with a reward of 1 that must be ignored) gives the same
    log-likelihood as deleting them: no term, no update. For the Q-learner the missed trials are
    anywhere; for DRA (one particle, the same key) its rollout noise is indexed by the trial, so
    the missed rows are the last ones of each subject and the comparison is exact."""
    df = _dataset(kind, n=2)
    if kind == "qlearn":
        rows = np.random.default_rng(1).choice(len(df), 12, replace=False)
    else:
        rows = df.groupby("subject").tail(4).index.to_numpy()
    missed = df.copy()
    missed.loc[rows, "action"] = np.nan
    missed.loc[rows, "reward"] = 1.0
    dropped = df.drop(index=rows).reset_index(drop=True)
    ds_m, ds_d = data.load(missed, 6, 3), data.load(dropped, 6, 3)
    assert ds_m.n_missed.sum() == len(rows)
    np.testing.assert_array_equal(ds_m.n_trials, ds_d.n_trials)
    ll_m, _ = _jax_ll(kind, ds_m, THETA, 1)
    ll_d, _ = _jax_ll(kind, ds_d, THETA, 1)
    full, _ = _jax_ll(kind, data.load(df, 6, 3), THETA, 1)
    np.testing.assert_allclose(ll_m, ll_d, rtol=1e-6)
    assert np.all(np.abs(full - ll_m) > 1.0)  # the deleted trials did carry likelihood


def _row_probs(a, beta_sigma, gap, n_zeta, keys):
    """P_hat of every action of one state (logits ``gap * (1 .. 0)`` evenly spaced, beta = 10,
    equal sigma) on ``n_zeta`` nodes: fixed qmc ``[A]`` and rqmc under each key ``[R, A]``."""
    beta = 10.0
    x = gap * np.linspace(1.0, 0.0, a)
    th = jnp.asarray([0.0, beta, 0.0, 0.0, 1.0, beta_sigma / beta], jnp.float32)
    lat = models.Latent(jnp.asarray(x / beta, jnp.float32)[None],
                        jnp.full((1, a), beta_sigma / beta, jnp.float32), None,
                        jnp.zeros((0,), jnp.float32), jnp.zeros((a,), jnp.float32))
    st = models.Static("lam0", 1, a, zeta="rqmc", n_zeta=n_zeta)
    acts = jnp.arange(a)
    fixed = jax.vmap(lambda i: models.chosen_prob(st, th, lat, 0, i))(acts)
    rq = jax.jit(jax.vmap(lambda k: jax.vmap(lambda i: models.chosen_prob(
        st, th, lat, 0, i, nodes=zeta.trial_nodes(n_zeta, a, k, 0)))(acts)))(keys)
    ref, ref_se = reference.fine_probs(np.array([0.0, beta]), x / beta,
                                       np.full(a, beta_sigma / beta))
    return np.asarray(fixed, np.float64), np.asarray(rq, np.float64), ref, ref_se


@pytest.mark.parametrize("a", [3, 4])
def test_rqmc_node_average_is_unbiased_for_the_choice_probability(a):
    """The rqmc estimate of P(a | s) (16 nodes, beta * sigma = 20, logit gap 10 from best to
    worst) averaged over 4000 keys equals the reference's 2^17-point randomized-QMC integral
    (float64, its own scramble and shifts) within 4 combined SE for every action (best, middle,
    worst), though a single key's estimate is far off (relative SD > 5% for the worst action);
    and keys give independent shifts (two trials' node sets differ)."""
    keys = jax.random.split(jax.random.key(3), 4000)
    _, rq, ref, ref_se = _row_probs(a, 20.0, 10.0, 16, keys)
    se = np.hypot(rq.std(0, ddof=1) / np.sqrt(len(keys)), ref_se)
    z = (rq.mean(0) - ref) / se
    assert np.all(np.abs(z) < 4), (rq.mean(0), ref, se, z)
    assert rq[:, -1].std() / ref[-1] > 0.05
    k = jax.random.key(0)
    assert not np.allclose(zeta.trial_nodes(16, a, k, 0), zeta.trial_nodes(16, a, k, 1))


def test_fixed_qmc_nodes_bias_is_detected_by_the_reference():
    """The fixed 16 Sobol nodes (``fit.zeta = "qmc"``) at 4 actions and beta * sigma = 20 give
    the same P(a | s) on every trial, and its error against the reference is many SE: the log
    bias summed over the best, middle and worst action rows at logit gaps 3 and 10 exceeds 10
    standard errors of the reference, and in the same rows rqmc's mean over keys does not
    (within 4 SE: the test of the previous one, made on log scale). (Measured: qmc's summed log
    error -0.06, reference SE ~ 1e-4.)"""
    keys = jax.random.split(jax.random.key(5), 2000)
    err_q, err_r, var_ref, var_r = 0.0, 0.0, 0.0, 0.0
    for gap in (3.0, 10.0):
        fixed, rq, ref, ref_se = _row_probs(4, 20.0, gap, 16, keys)
        for i in (0, 1, 3):
            err_q += np.log(fixed[i] / ref[i])
            err_r += np.log(rq[:, i].mean() / ref[i])
            var_ref += (ref_se[i] / ref[i]) ** 2
            var_r += (rq[:, i].std(ddof=1) / np.sqrt(len(keys)) / ref[i]) ** 2
    assert abs(err_q) > 10 * np.sqrt(var_ref + 0.0), (err_q, np.sqrt(var_ref))
    assert abs(err_r) < 4 * np.sqrt(var_ref + var_r), (err_r, np.sqrt(var_ref + var_r))


def test_lam0_rqmc_likelihood_is_unbiased_and_fixed_nodes_are_not():
    """lam0 (no latent randomness: the zeta nodes are the only noise) on 2 subjects x 72 trials
    (beta * sigma = 6): the mean over 400 keys of exp(loglik) of the JAX filter with rqmc on 64
    nodes equals that of the NumPy reference (its own 4096 randomized points a trial, 16 rng
    replicates) within 4 combined SE, for each subject; with the fixed 16 qmc nodes the
    filter's (deterministic) likelihood is off the reference by more than 8 SE (the bias that
    the reference, now on its own nodes, can see)."""
    ds = data.load(_dataset("lam0", n=2), 6, 3)
    n_rep = 400
    ll_r, _ = _jax_ll("lam0", ds, THETA, 1, tags=np.arange(n_rep),
                      zeta={"zeta": "rqmc", "n_zeta": 64})
    ll_q, _ = _jax_ll("lam0", ds, THETA, 1, zeta=QMC16)
    for i in range(2):
        ref = np.array([_ref_ll("lam0", ds, i, THETA, 1, np.random.default_rng(200 + j),
                                n_nodes=4096) for j in range(16)])
        c = ref.mean()
        lr, lref = np.exp(ll_r[i] - c), np.exp(ref - c)
        se = np.hypot(lr.std(ddof=1) / np.sqrt(n_rep), lref.std(ddof=1) / np.sqrt(len(lref)))
        assert abs(lr.mean() - lref.mean()) < 4 * se, (i, lr.mean(), lref.mean(), se)
        assert abs(np.exp(ll_q[i, 0] - c) - lref.mean()) > 8 * se, (i, ll_q[i, 0], c, se)


def test_rqmc_nodes_are_finite_at_the_grid_ends():
    """The shifted uniforms' extreme cells (all bits 0, all bits 1) give finite nodes (|zeta| <
    5.5), symmetric about 0: float32 represents (2 v + 1) / 2^24 exactly."""
    w = jnp.asarray([[0, 0xFFFFFFFF]], jnp.uint32)
    z = np.asarray(zeta.shifted_nodes(w, jnp.zeros(2, jnp.uint32)))
    assert np.all(np.isfinite(z)) and np.all(np.abs(z) < 5.5), z
    np.testing.assert_allclose(z[0, 0], -z[0, 1], rtol=1e-5)


def test_zeta_config_choices_and_bounds():
    """fit.zeta = "rqmc" validates; an unknown rule or n_zeta outside [1, 4096] is refused by
    name (rqmc with one node is plain Monte Carlo: still unbiased, so 1 stays allowed)."""
    from dra_jax.fitting import spec

    cfg = spec.validate({"task": "stimulus_response", "fit": {"zeta": "rqmc", "n_zeta": 1}})
    assert (cfg["fit"]["zeta"], cfg["fit"]["n_zeta"]) == ("rqmc", 1)
    for fit in ({"zeta": "sobol"}, {"zeta": "rqmc", "n_zeta": 0}, {"n_zeta": 8192}):
        with pytest.raises(spec.ConfigError) as e:
            spec.validate({"task": "stimulus_response", "fit": fit})
        assert e.value.key == "fit." + ("zeta" if "sobol" in fit.values() else "n_zeta")


def test_sincos_2pi_matches_the_exact_values():
    """Box-Muller's cos/sin of 2 pi u (the filter's rollout normals): exact to float32."""
    u = jnp.concatenate([jax.random.uniform(jax.random.key(0), (200_000,)),
                         jnp.linspace(0.0, 1.0, 4001, endpoint=False, dtype=jnp.float32),
                         jnp.asarray([0.25, 0.5, 0.75, 1.0 - 2.0 ** -24], jnp.float32)])
    c, s = jax.jit(models._sincos_2pi)(u)
    ang = 2.0 * np.pi * np.asarray(u, np.float64)
    np.testing.assert_allclose(np.asarray(c, np.float64), np.cos(ang), rtol=0, atol=2e-7)
    np.testing.assert_allclose(np.asarray(s, np.float64), np.sin(ang), rtol=0, atol=2e-7)
