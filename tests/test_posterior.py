"""PMMH posterior of one subject (dra_jax.fitting.posterior): the MCMC diagnostics on chains
with known answers, the block pseudo-marginal bookkeeping (keys and estimates on accept and
reject), the stationary distribution under a noisy unbiased estimator with a closed-form
target, a deterministic model against a brute-force grid posterior, and a DRA smoke run."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from dra_jax.config import ConfigError
from dra_jax.fitting import data, models, optimize, posterior, simulate, spec

# --------------------------------------------------------------------------- diagnostics


def _ar1(rng, m, n, rho, mu=0.0):
    x = np.empty((m, n))
    x[:, 0] = rng.normal(size=m) / np.sqrt(1 - rho ** 2)
    e = rng.normal(size=(m, n))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x + np.asarray(mu).reshape(-1, 1)


def test_rhat_ess_iid():
    x = np.random.default_rng(0).normal(size=(4, 2000))
    assert abs(posterior.rhat(x) - 1.0) < 0.01
    for f in (posterior.ess, posterior.ess_bulk, posterior.ess_tail):
        assert 0.85 * x.size < f(x) < 1.15 * x.size, f


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ess_ar1_closed_form(rho):
    """AR(1) with coefficient rho: ESS = n (1 - rho) / (1 + rho)."""
    x = _ar1(np.random.default_rng(1), 4, 20_000, rho)
    want = x.size * (1 - rho) / (1 + rho)
    assert 0.85 * want < posterior.ess(x) < 1.15 * want
    assert 0.85 * want < posterior.ess_bulk(x) < 1.15 * want
    assert abs(posterior.rhat(x) - 1.0) < 0.02


def test_rhat_flags_chains_apart():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 1000)) + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    assert posterior.rhat(x) > 1.1
    # one chain with a larger spread only: the tail (folded) R-hat sees it
    y = rng.normal(size=(4, 1000)) * np.array([1.0, 1.0, 1.0, 3.0])[:, None]
    assert posterior.rhat(y) > 1.05
    # a trend inside every chain: split chains see it
    z = rng.normal(size=(4, 1000)) + np.linspace(0, 2, 1000)[None]
    assert posterior.rhat(z) > 1.1


def test_diagnostics_match_arviz():
    az = pytest.importorskip("arviz")
    x = _ar1(np.random.default_rng(3), 4, 500, 0.7, mu=[0, 0.1, 0, -0.1])
    assert posterior.rhat(x) == pytest.approx(float(az.rhat(x)), rel=1e-9)
    assert posterior.ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-9)
    assert posterior.ess_tail(x) == pytest.approx(float(az.ess(x, method="tail")), rel=1e-9)
    split = posterior._split(x)
    assert posterior.ess(split) == pytest.approx(float(az.ess(x, method="mean")), rel=1e-9)


# --------------------------------------------------------------------------- kernel bookkeeping


def _kernel(loglik_fn, n_chains=3, n_blocks=5, d=2, refresh=2, prior=(np.zeros(2), np.eye(2))):
    s = posterior.Settings(n_chains, n_blocks, d, refresh, t0=10, init_sd=0.5,
                           target_accept=0.234, ridge=1e-6)
    stream, mh = jax.random.key(11), jax.random.key(12)
    lp = posterior.log_prior_fn(prior)
    return s, stream, lp, posterior.build_kernel(loglik_fn, lp, stream, mh, s)


def _unif(keys):  # [B, C] -> [B, C]: a number of each lane's key
    return jax.vmap(jax.vmap(jax.random.uniform))(keys)


def test_refreshed_blocks_get_new_keys_others_keep_theirs():
    """Accepted proposals (flat target, key-dependent but negligible estimates): exactly
    ``refresh`` blocks of each chain move to the iteration's counter, the others keep theirs,
    and the stored estimates are the ones of the new keys."""
    flat = (np.zeros(2), np.eye(2) * 1e12)
    ll_fn = lambda y, keys: 1e-7 * _unif(keys)  # noqa: E731
    s, stream, lp, step = _kernel(ll_fn, prior=flat)
    ch = posterior.init_chain(ll_fn, lp, stream, np.zeros((3, 2)), s)
    u_prev = np.asarray(ch.u)
    for it in range(4):
        ch, (_, _, acc) = jax.jit(step)(ch, (jnp.int32(it), jnp.bool_(False)))
        assert np.asarray(acc).all()
        u = np.asarray(ch.u)
        changed = u != u_prev
        assert (changed.sum(1) == s.refresh).all()
        assert (u[changed] == it + 1).all() and (u[~changed] == u_prev[~changed]).all()
        np.testing.assert_array_equal(
            np.asarray(ch.ll), np.asarray(ll_fn(ch.y, posterior.lane_keys(stream, ch.u))).T)
        u_prev = u
    # different chains, blocks and counters never share a key
    k = posterior.lane_keys(stream, jnp.asarray(np.arange(15).reshape(3, 5) % 4, jnp.int32))
    assert len({tuple(np.asarray(jax.random.key_data(x))) for x in k.ravel()}) == 15


def test_rejected_proposal_restores_keys_and_estimates():
    """A target that rejects every move away from 0: the point, the keys and the stored block
    estimates (which depend on the keys) stay those of the start."""
    ll_fn = lambda y, keys: -1e6 * jnp.sum(y ** 2, -1)[None] + _unif(keys)  # noqa: E731
    s, stream, lp, step = _kernel(ll_fn)
    ch0 = posterior.init_chain(ll_fn, lp, stream, np.zeros((3, 2)), s)
    ch = ch0
    for it in range(5):
        ch, (_, _, acc) = jax.jit(step)(ch, (jnp.int32(it), jnp.bool_(True)))
        assert not np.asarray(acc).any()
    for f in ("y", "ll", "u", "lp"):
        np.testing.assert_array_equal(np.asarray(getattr(ch, f)), np.asarray(getattr(ch0, f)))


def test_pseudo_marginal_noisy_estimator_has_exact_target():
    """Gaussian blocks times unbiased log-normal noise ``exp(sigma z - sigma^2 / 2)`` keyed by
    each block's key, Gaussian prior: the chain's y-marginal must be the exact Gaussian
    posterior although every estimate is noisy (SD of one total log estimate 2, of the log
    ratio 1.4). Reusing or mismatching keys and estimates would change the stationary law."""
    rng = np.random.default_rng(4)
    b_n, d, sig = 4, 2, 1.0
    m_b = rng.normal(size=(b_n, d))
    a = rng.normal(size=(b_n, d, d))
    p_b = np.einsum("bij,bkj->bik", a, a) * 0.5 + np.eye(d)  # block precisions
    mu0, cov0 = np.array([0.5, -0.5]), np.eye(d) * 4.0
    prec = np.linalg.inv(cov0) + p_b.sum(0)
    cov = np.linalg.inv(prec)
    mean = cov @ (np.linalg.inv(cov0) @ mu0 + np.einsum("bij,bj->i", p_b, m_b))
    pb, mb = jnp.asarray(p_b, jnp.float32), jnp.asarray(m_b, jnp.float32)

    def ll_fn(y, keys):  # [C, d], [B, C] -> [B, C]
        z = y[None] - mb[:, None]
        exact = -0.5 * jnp.einsum("bci,bij,bcj->bc", z, pb, z)
        noise = jax.vmap(jax.vmap(lambda k: jax.random.normal(k)))(keys)
        return exact + sig * noise - 0.5 * sig ** 2

    s, stream, lp, step = _kernel(ll_fn, n_chains=4, n_blocks=b_n, refresh=1,
                                  prior=(mu0, cov0))
    ch = posterior.init_chain(ll_fn, lp, stream, rng.normal(size=(4, d)), s)
    n_iter, n_burn = 30_000, 5_000
    _, ys, _, accs, _, _ = posterior.sample(step, ch, n_iter, n_burn, 5_000)
    kept = ys[:, n_burn:].astype(np.float64)
    flat = kept.reshape(-1, d)
    for j in range(d):
        se = np.sqrt(cov[j, j] / posterior.ess_bulk(kept[..., j]))
        assert abs(flat[:, j].mean() - mean[j]) < 4 * se, (j, flat[:, j].mean(), mean[j], se)
        assert flat[:, j].std() == pytest.approx(np.sqrt(cov[j, j]), rel=0.08)
        assert posterior.rhat(kept[..., j]) < 1.02
    assert np.corrcoef(flat.T)[0, 1] == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]),
                                                      abs=0.06)
    assert 0.05 < accs[:, n_burn:].mean() < 0.5


# --------------------------------------------------------------------------- the real model


def _cfg(models_, **post):
    return spec.validate({"task": "stimulus_response", "models": models_,
                          "bounds": {"beta": [1.0, 40.0], "alpha_q": [0.02, 1.0],
                                     "lam": [0.0, 1.0]},
                          "fit": {"n_traj": 2, "n_zeta": 16},
                          "posterior": {"n_chains": 4, **post}})


QLEARN = {"qlearn": {"kind": "qlearn", "free": ["beta", "alpha_q"], "beta": 5.0,
                     "alpha_q": 0.5}}


@pytest.fixture(scope="module")
def qdata():
    cfg = _cfg(QLEARN, n_iter=8000)
    th = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"]).base.copy()
    th[models.BETA], th[models.ALPHA_Q] = 4.0, 0.3
    st = optimize.static_for(cfg, "qlearn")
    df = simulate.synthetic_dataset(st, th[None], 3, set_sizes=(2, 3, 4, 5), reps=8,
                                    subjects=["s1"])
    return cfg, data.to_dataset(df, 6, 3)


@pytest.mark.parametrize("pack", [False, True])
def test_block_lanes_sum_to_the_subject_likelihood(qdata, pack):
    cfg, ds = qdata
    tr, groups = posterior.block_lanes(ds, "s1", pack)
    assert sorted(b for g in groups for b in g) == sorted(ds.df["block"].unique())
    st = optimize.static_for(cfg, "qlearn")
    tf = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"])
    th = tf.theta_at(np.array([[6.0, 0.2], [20.0, 0.7]]))  # [2, P]
    from dra_jax.fitting import particle

    b = tr.s.shape[0]
    keys = jnp.stack([jax.random.split(jax.random.key(0), 2)] * b)
    ll, _ = particle.loglik(st, 1, 0.5, jnp.asarray(np.broadcast_to(th, (b, 2, th.shape[1])),
                                                    jnp.float32), tr, keys)
    whole = optimize.evaluate(cfg, "qlearn", ds, th[None], 0)[0]
    np.testing.assert_allclose(np.asarray(ll).sum(0), whole, rtol=1e-5)


def test_qlearn_matches_grid_posterior(qdata, tmp_path):
    """A deterministic model (exact likelihood, plain MH): the posterior means and SDs of beta
    and alpha_q (natural units, uniform prior on the box) against a 161 x 161 grid in the logit
    coordinates, where the prior is the logistic density."""
    cfg, ds = qdata
    res = posterior.run(cfg, ds, "s1")
    assert res["zeta"] == "qmc" and res["n_particles"] == 1 and not res["stochastic"]
    assert res["noise"]["sd_loglik"] == 0.0
    tf = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"])
    g = np.linspace(-9, 9, 161)
    yy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    ll = optimize.evaluate(cfg, "qlearn", ds, tf.theta(yy)[None], 0, width=len(yy))[0]
    lp = ll + np.sum(-np.logaddexp(0, -yy) - np.logaddexp(0, yy), 1)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    x = tf.to_x(yy)
    g_mean = w @ x
    g_sd = np.sqrt(w @ (x - g_mean) ** 2)
    for j, p in enumerate(res["free"]):
        sm = res["summary"][p]
        assert abs(sm["mean"] - g_mean[j]) < 4 * sm["mcse_mean"] + 0.005 * g_sd[j], (p, sm, g_mean)
        assert sm["rhat"] < 1.05 and sm["ess_bulk"] > 300
        # the marginal CDF at the grid's cell edges near its 10/50/90% points (beta's tail
        # towards the box edge is heavy, so its SD is too noisy a check; the CDF is not)
        cdf = np.cumsum(np.bincount(np.searchsorted(g, yy[:, j]), w, len(g)))
        draws = res["draws_y"][..., j]
        for q in (0.1, 0.5, 0.9):
            k = int(np.searchsorted(cdf, q))
            edge = 0.5 * (g[k] + g[k + 1])
            f = np.mean(draws <= edge)
            se = np.sqrt(cdf[k] * (1 - cdf[k]) / posterior.ess_bulk(draws))
            assert abs(f - cdf[k]) < 4 * se + 0.01, (p, q, f, cdf[k], se)
    assert 0.1 < np.mean(res["accept"]) < 0.5
    paths = posterior.write(res, tmp_path)
    df = pd.read_csv(paths["csv"])
    assert list(df.columns) == ["chain", "iter", "beta", "alpha_q", "loglik"]
    assert len(df) == 4 * (res["n_iter"] - res["n_burn"]) and paths["figure"].stat().st_size > 0


def test_unknown_subject_is_a_config_error(qdata):
    cfg, ds = qdata
    with pytest.raises(ConfigError, match=r"--posterior.*'nobody' is not in the data; 1 subjects"):
        posterior.run(cfg, ds, "nobody")


def test_dra_smoke_unbiased_settings(tmp_path):
    """DRA on a small simulated subject with few particles: rqmc zeta (an unbiased estimate),
    several blocks refreshed one at a time, finite output, reproducible numbers."""
    cfg = _cfg({"dra": {"kind": "dra", "free": ["lam", "beta"], "lam": 0.1, "beta": 10.0,
                        "alpha_q": 0.5}}, n_iter=40, n_particles=4, burn=0.5)
    st = optimize.static_for(cfg, "dra")
    th = optimize.Transform(cfg["models"]["dra"], cfg["bounds"]).base
    df = simulate.synthetic_dataset(st, th[None], 5, set_sizes=(2, 3), reps=4, subjects=["x"])
    ds = data.to_dataset(df, 6, 3)
    res = posterior.run(cfg, ds, "x", chunk=20, n_check=8)
    assert res["zeta"] == "rqmc" and res["n_particles"] == 4 and res["stochastic"]
    assert np.isfinite(res["trace"]).all() and np.isfinite(res["trace_loglik"]).all()
    assert res["noise"]["sd_loglik"] > 0 and res["n_blocks"] >= 1
    assert res["draws"].shape == (4, 20, 2)
    lo, hi = np.array([0.0, 1.0]), np.array([1.0, 40.0])
    assert ((res["trace"] >= lo) & (res["trace"] <= hi)).all()
    again = posterior.run(cfg, ds, "x", chunk=20, n_check=8)
    np.testing.assert_array_equal(res["trace"], again["trace"])


def _cli_toml(tmp_path, n_iter):
    path = tmp_path / "post.toml"
    path.write_text('task = "stimulus_response"\nfigures = []\n'
                    '[fit]\nn_traj = 2\nn_zeta = 16\n'
                    f'[posterior]\nn_chains = 2\nn_iter = {n_iter}\n'
                    '[bounds]\nbeta = [1.0, 40.0]\nalpha_q = [0.02, 1.0]\n'
                    '[models.qlearn]\nkind = "qlearn"\nfree = ["beta", "alpha_q"]\n'
                    'beta = 5.0\nalpha_q = 0.5\n'
                    '[models.rlwm]\nkind = "rlwm"\nfree = ["alpha_q", "capacity"]\n')
    return path


def test_cli_posterior_writes_draws_summary_and_figure(qdata, tmp_path):
    from dra_jax.fitting import cli

    _, ds = qdata
    ds.df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "out"
    rc = cli.main(["--config", str(_cli_toml(tmp_path, 60)), "--data", str(tmp_path / "d.csv"),
                   "--out", str(out), "--posterior", "s1", "--set", "posterior.model=qlearn",
                   "--quiet"])
    assert rc == 0
    draws = pd.read_csv(out / "posterior_s1_qlearn.csv")
    assert len(draws) == 2 * 30 and list(draws.columns[2:]) == ["beta", "alpha_q", "loglik"]
    import json

    meta = json.loads((out / "posterior_s1_qlearn.json").read_text())
    assert set(meta["summary"]) == {"beta", "alpha_q"} and "rhat" in meta["summary"]["beta"]
    assert (out / "figures" / "posterior_s1_qlearn.png").is_file()
    assert not (out / "fits.csv").exists()  # a posterior run fits nothing


@pytest.mark.parametrize("args,key", [
    (["--posterior", "nobody"], "--posterior"),
    (["--posterior", "s1", "--set", "posterior.model=rlwm"], "models.rlwm.free"),
    (["--posterior", "s1", "--set", "posterior.model=nope"], "posterior.model"),
])
def test_cli_posterior_bad_request_exits_2_writing_nothing(qdata, tmp_path, capsys, args, key):
    from dra_jax.fitting import cli

    _, ds = qdata
    ds.df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "out"
    rc = cli.main(["--config", str(_cli_toml(tmp_path, 20)), "--data", str(tmp_path / "d.csv"),
                   "--out", str(out), *args])
    assert rc == 2 and not out.exists()
    assert key in capsys.readouterr().err
