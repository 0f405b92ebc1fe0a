"""The particle-filter likelihood of the fitter: exactness, unbiasedness, missed trials."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from dra_jax.envs import stimulus_response as sr
from dra_jax.fitting import data, models, particle, reference, simulate

THETA = np.array([0.1, 20.0, 0.5, 0.05, 1.0, 0.3])  # lam, beta, alpha_q, alpha_sigma, sigma_base, sigma0
ZETA = {"zeta": "qmc", "n_zeta": 16}  # few zeta points: these tests are about the filter


def _dataset(kind="dra", n=3, seed=0, set_sizes=(2, 4, 6), reps=6):
    st = models.Static(kind, 6, 3)
    return simulate.synthetic_dataset(st, np.tile(THETA, (n, 1)), seed, set_sizes, reps)


def _jax_ll(kind, ds, theta, n_particles, tags=(0,), ess=0.5):
    st = models.Static(kind, 6, 3, **ZETA)
    n, c = len(ds.subjects), len(tags)
    th = jnp.asarray(np.broadcast_to(theta, (n, c, 6)), jnp.float32)
    keys = jax.vmap(lambda i: jax.vmap(lambda t: jax.random.fold_in(jax.random.key(i), t))(
        jnp.asarray(tags)))(jnp.arange(n))
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    ll, n_res = particle.loglik(st, n_particles, ess, th, tr, keys)
    return np.asarray(ll, np.float64), np.asarray(n_res)


def _ref_ll(kind, ds, i, theta, n_particles, rng, resample=True):
    st = models.Static(kind, 6, 3, **ZETA)
    tr = ds.trials
    return reference.loglik(st, theta, tr.s[i], tr.a[i], tr.r[i], tr.new_block[i] & tr.valid[i],
                            tr.block[i], n_particles, rng, resample=resample)


@pytest.mark.parametrize("kind", ["qlearn", "lam0"])
def test_deterministic_latent_one_particle_is_the_exact_likelihood(kind):
    """With no latent randomness one particle gives the exact log-likelihood: the JAX filter
    (float32) equals the NumPy computation of prod_t P(a_t | s_t) (float64), with missed trials
    in the data, and 16 particles give the same number (they are all the same particle)."""
    df = _dataset(kind)
    df.loc[[3, 40, 41], "action"] = np.nan
    ds = data.load(df, 6, 3)
    theta = THETA.copy()
    theta[1] = 4.0 if kind == "qlearn" else 20.0
    ll1, _ = _jax_ll(kind, ds, theta, 1)
    ll16, _ = _jax_ll(kind, ds, theta, 16)
    rng = np.random.default_rng(0)
    exact = np.array([_ref_ll(kind, ds, i, theta, 1, rng) for i in range(len(ds.subjects))])
    assert np.all(np.isfinite(exact)) and np.all(exact < -10)
    np.testing.assert_allclose(ll1[:, 0], exact, rtol=2e-5)
    np.testing.assert_allclose(ll16[:, 0], exact, rtol=2e-5)


def test_particle_filter_is_unbiased_on_a_tiny_problem():
    """2 stimuli x 8 trials of DRA, whose sigma moves by its own random rollouts. The mean over
    3000 replicates of exp(loglik) of the JAX filter (4 particles, resampling whenever ESS < 0.99
    P, so on most trials) equals the brute-force Monte Carlo likelihood
    mean_i prod_t P(a_t | z_i,t) over 40000 independent latent paths of the NumPy reference (no
    resampling), within 4 combined standard errors; and the latent randomness matters: the
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
                              resample=False)) for b in range(10)]
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


def test_sincos_2pi_matches_the_exact_values():
    """Box-Muller's cos/sin of 2 pi u (the filter's rollout normals): exact to float32."""
    u = jnp.concatenate([jax.random.uniform(jax.random.key(0), (200_000,)),
                         jnp.linspace(0.0, 1.0, 4001, endpoint=False, dtype=jnp.float32),
                         jnp.asarray([0.25, 0.5, 0.75, 1.0 - 2.0 ** -24], jnp.float32)])
    c, s = jax.jit(models._sincos_2pi)(u)
    ang = 2.0 * np.pi * np.asarray(u, np.float64)
    np.testing.assert_allclose(np.asarray(c, np.float64), np.cos(ang), rtol=0, atol=2e-7)
    np.testing.assert_allclose(np.asarray(s, np.float64), np.sin(ang), rtol=0, atol=2e-7)
