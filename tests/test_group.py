"""Hierarchical EM (dra_jax.fitting.group): group-level recovery, the Laplace evidence against
quadrature, its outputs and its bad inputs."""
import json

import numpy as np
import pandas as pd
import pytest

from dra_jax.config import ConfigError
from dra_jax.fitting import cli, group, models, optimize, simulate, spec

QL = {"task": "stimulus_response", "figures": [],
      "fit": {"restarts": 2, "generations": 15, "n_reps": 2},
      "models": {"qlearn": {"free": ["beta", "alpha_q"], "beta": 5.0, "alpha_q": 0.5}},
      "bounds": {"beta": [0.5, 30.0], "alpha_q": [0.02, 1.0]},
      "group": {"method": "em", "max_iter": 60, "tol": 1e-3}}
MU = np.array([-1.2, 0.0])   # logit: beta ~ 6.1, alpha_q ~ 0.51 at the group median
SD = np.array([0.5, 0.8])


def _toml(tmp_path, cfg):
    """A TOML file of ``cfg`` (tables of scalars and lists)."""
    lines = [f'task = "{cfg["task"]}"', f'figures = {json.dumps(cfg["figures"])}']
    for sec in ("fit", "bounds", "group", "compare"):
        if sec in cfg:
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in cfg[sec].items()]
    for m, sec in cfg["models"].items():
        lines.append(f"[models.{m}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in sec.items()]
    path = tmp_path / "fit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _population(n, seed, set_sizes=(2, 3, 4, 5), reps=6):
    """n Q-learners with y ~ N(MU, diag(SD^2)) in the fit's logit coordinates, 4 blocks each."""
    cfg = spec.validate(QL)
    tf = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"])
    rng = np.random.default_rng(seed)
    y = MU + SD * rng.standard_normal((n, 2))
    theta = tf.theta(y)
    df = simulate.synthetic_dataset(models.Static("qlearn", 6, 3), theta, seed, set_sizes, reps)
    return cfg, tf, y, df


def test_em_recovers_the_group_and_beats_maximum_likelihood_per_subject():
    """40 simulated Q-learners, 4 blocks (84 trials) each, drawn from a known group. EM's group
    medians are within 3 standard errors (sd / sqrt(n)) of the truth, and its MAP estimates
    are closer to each subject's true parameters than the maximum-likelihood ones (RMSE in
    logit units, both parameters): the shrinkage the group prior is for."""
    n = 40
    cfg, tf, y_true, df = _population(n, 3)
    res = cli.fit(df, cfg)
    g = res.extra["group"].set_index("parameter")
    em = res.extra["em"]["qlearn"]
    assert em["converged"] and em["iterations"] < 60, em["iterations"]
    for j, p in enumerate(["beta", "alpha_q"]):
        assert abs(g.loc[p, "mean_t"] - MU[j]) < 3 * SD[j] / np.sqrt(n), (p, g.loc[p, "mean_t"])
        assert g.loc[p, "median"] == pytest.approx(tf.to_x(MU)[j], rel=0.25)
    y_map = tf.to_y(res.fits[["beta", "alpha_q"]].to_numpy())
    ml = res.extra["fits_ml"]
    y_ml = np.clip(tf.to_y(np.clip(ml[["beta", "alpha_q"]].to_numpy(), tf.lo + 1e-9,
                                   tf.hi - 1e-9)), -12, 12)
    rmse = lambda y: np.sqrt(np.mean((y - y_true) ** 2, 0))  # noqa: E731
    assert np.all(rmse(y_map) < rmse(y_ml)), (rmse(y_map), rmse(y_ml))
    # every subject's MAP log-likelihood is at most its ML one (ML maximizes it)
    assert np.all(res.fits["loglik"].to_numpy() <= ml["loglik"].to_numpy() + 1e-3)


def test_laplace_evidence_matches_quadrature_on_a_grid():
    """For a one-parameter Q-learner (alpha_q free) under a fixed Gaussian prior, the Laplace
    log evidence of the E-step equals the prior-integrated likelihood by quadrature on a fine
    grid in logit space to within 0.05 nats (a subject with ~150 trials: nearly Gaussian)."""
    cfg = spec.validate({**QL, "models": {"qlearn": {"free": ["alpha_q"], "beta": 5.0,
                                                     "alpha_q": 0.5}}})
    tf = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"])
    theta = tf.theta(np.array([[0.3]] * 5))
    df = simulate.synthetic_dataset(models.Static("qlearn", 6, 3), theta, 1, (3, 5, 4), 9)
    from dra_jax.fitting import data as data_mod

    ds = data_mod.load_for(df, cfg)
    mo = group._Model(cfg, "qlearn", ds)
    mu, cov = np.array([0.5]), np.array([[0.6]])
    prec, logdet = group._prior_terms(cov)
    y, nll, h = group._estep_exact(mo, np.zeros((5, 1)), mu, prec, {})
    lap = -nll - group._penalty(y, mu, prec) - 0.5 * logdet - 0.5 * np.log(h[:, 0, 0] + prec[0, 0])
    grid = np.linspace(-6, 7, 2601)
    ll = optimize.evaluate(cfg, "qlearn", ds, tf.theta(np.broadcast_to(grid[None, :, None],
                                                                        (5, len(grid), 1))), 0)
    logp = ll - 0.5 * (grid - mu[0]) ** 2 / cov[0, 0] - 0.5 * np.log(2 * np.pi * cov[0, 0])
    m = logp.max(1, keepdims=True)
    quad = (m + np.log(np.trapezoid(np.exp(logp - m), grid, axis=1)[:, None]))[:, 0]
    np.testing.assert_allclose(lap, quad, atol=0.05)
    # and the MAP is the grid's argmax of the log posterior
    np.testing.assert_allclose(y[:, 0], grid[np.argmax(logp, 1)], atol=0.01)


def test_cli_writes_group_table_map_fits_and_bms(tmp_path):
    """The fit command with group.method = em writes group.csv (natural-unit medians inside the
    95% interval), fits.csv with SEs, at_bound and the log evidence, fits_ml.csv, and the BMS
    block on the Laplace evidence."""
    cfg, tf, y_true, df = _population(8, 5, set_sizes=(2, 4), reps=5)
    df.to_csv(tmp_path / "d.csv", index=False)
    raw = {**QL, "fit": {**QL["fit"], "generations": 8},
           "models": {**QL["models"], "fixed_alpha": {"kind": "qlearn", "free": ["beta"],
                                                      "beta": 5.0, "alpha_q": 0.05}}}
    toml = _toml(tmp_path, {**raw, "group": {"method": "em", "max_iter": 40}})
    out = tmp_path / "out"
    assert cli.main(["--config", str(toml), "--data", str(tmp_path / "d.csv"), "--out", str(out),
                     "--quiet"]) == 0
    g = pd.read_csv(out / "group.csv")
    assert list(g.columns[:6]) == ["model", "parameter", "transform", "mean_t", "sd_t", "median"]
    assert ((g["lo95"] <= g["median"]) & (g["median"] <= g["hi95"])).all()
    fits = pd.read_csv(out / "fits.csv")
    assert {"beta_se", "alpha_q_se", "at_bound", "log_evidence"} <= set(fits.columns)
    assert (fits["log_evidence"] < fits["loglik"]).all()  # the evidence pays for the prior
    assert (out / "fits_ml.csv").is_file()
    s = json.loads((out / "summary.json").read_text())
    assert s["bms"]["evidence"] == "laplace" and s["bms"]["models"] == ["qlearn", "fixed_alpha"]
    assert s["em"]["qlearn"]["iterations"] >= 1 and "converged" in s["em"]["qlearn"]
    assert s["em_converged"] == all(s["em"][m]["converged"] for m in s["em"])


def test_non_convergence_is_flagged(tmp_path):
    """An EM stopped by its cap says so."""
    cfg, tf, y_true, df = _population(6, 2, set_sizes=(2, 4), reps=5)
    cfg = spec.validate({**QL, "fit": {**QL["fit"], "generations": 6},
                         "group": {"method": "em", "max_iter": 1, "tol": 1e-9}})
    res = cli.fit(df, cfg)
    assert res.extra["em"]["qlearn"]["converged"] is False
    assert res.extra["em_converged"] is False


@pytest.mark.parametrize("edit,key", [
    ({"group": {"method": "bayes"}}, "group.method"),
    ({"compare": {"cv": "kfold"}}, "compare.cv"),
    ({"group": {"method": "em", "max_iter": 0}}, "group.max_iter"),
    ({"group": {"em": True}}, "group.em"),
    ({"group": {"accelerate": "aitken"}}, "group.accelerate"),
    ({"group": {"hessian_reuse": -0.1}}, "group.hessian_reuse"),
])
def test_bad_group_settings_are_config_errors(edit, key):
    with pytest.raises(ConfigError) as e:
        spec.validate({**QL, **edit})
    assert e.value.key == key


def test_em_with_too_few_subjects_exits_2_writing_nothing(tmp_path, capsys):
    cfg, tf, y_true, df = _population(3, 1, set_sizes=(2,), reps=4)
    df.to_csv(tmp_path / "d.csv", index=False)
    toml = _toml(tmp_path, QL)
    out = tmp_path / "out"
    rc = cli.main(["--config", str(toml), "--data", str(tmp_path / "d.csv"), "--out", str(out)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "group.method" in err and "5" in err and "3" in err


def test_nonfinite_exact_hessian_falls_back_to_finite_differences(monkeypatch):
    """A lane whose exact Hessian comes back NaN (as lam0's does near beta's bound on the real
    data) takes the central-difference Hessian of the same likelihood: close to the exact one
    of that lane, the other lanes untouched, and the count reported."""
    cfg, tf, y_true, df = _population(4, 2, set_sizes=(2, 4), reps=5)
    from dra_jax.fitting import data as data_mod

    ds = data_mod.load_for(df, cfg)
    mo = group._Model(cfg, "qlearn", ds)
    mu, prec = np.zeros(2), np.eye(2)
    y0 = np.asarray(y_true, float)[:mo.n]
    _, _, h_exact = group._estep_exact(mo, y0.copy(), mu, prec, {})
    real = optimize.Derivatives.hessian

    def broken(self, y, penalty=True):
        h = real(self, y, penalty)
        h[1] = np.nan
        return h

    monkeypatch.setattr(optimize.Derivatives, "hessian", broken)
    state = {}
    _, _, h = group._estep_exact(mo, y0.copy(), mu, prec, state)
    assert state["n_fd_hessian"] == 1 and np.isfinite(h).all()
    np.testing.assert_allclose(h[1], h_exact[1], rtol=0.05, atol=0.05 * np.abs(h_exact[1]).max())
    np.testing.assert_array_equal(np.delete(h, 1, 0), np.delete(h_exact, 1, 0))


DRA = {"task": "stimulus_response", "figures": [],
       "fit": {"n_particles": 8, "search_particles": 4, "n_traj": 4, "n_reps": 2},
       "models": {"dra": {"kind": "dra", "free": ["lam", "beta"], "lam": 0.1, "beta": 5.0,
                          "alpha_q": 0.5}},
       "bounds": {"lam": [0.0, 1.0], "beta": [0.5, 30.0]},
       "group": {"method": "em", "generations": 2, "hessian_reuse": 0.5}}


def _dra_model(n=10):
    from dra_jax.fitting import data as data_mod

    _, _, _, df = _population(n, 4, set_sizes=(2, 3), reps=4)
    cfg = spec.validate(DRA)
    return group._Model(cfg, "dra", data_mod.load_for(df, cfg))


def test_a_lane_subset_gives_each_lane_its_own_numbers():
    """The E-step evaluates only the lanes whose Hessian it needs, padded to a power of two:
    each lane's estimate is the one it has in the full call (its keys are its subject's)."""
    mo = _dra_model()
    y = np.random.default_rng(0).normal(0.0, 0.5, (mo.n, 3, mo.d))
    full = group._nll_crn(mo, y, group._HESS_A, mo.cfg)
    idx = np.array([7, 2, 5])
    sub = group._nll_crn(mo, y[idx], group._HESS_A, mo.cfg, lanes=idx)
    assert sub.shape == (3, 3)
    np.testing.assert_allclose(sub, full[idx], rtol=1e-5)
    assert group._bucket(3, 10) == 8 and group._bucket(9, 10) == 10 and group._bucket(9, 79) == 16


def test_stochastic_estep_reestimates_the_hessian_where_the_map_moved():
    """A stochastic E-step keeps a lane's Hessian while its MAP stays within hessian_reuse x
    its finite-difference steps of where it was estimated, re-estimates it beyond, and the final
    E-step re-estimates every lane that moved at all: the reported Hessian is the one of the
    reported MAP under the lane's steps."""
    mo = _dra_model()
    d, reuse = mo.d, mo.cfg["group"]["hessian_reuse"]
    y0 = np.zeros((mo.n, d))
    mu, prec = np.zeros(d), np.eye(d)
    state = {}
    y1, nll1, h1 = group._estep_cma(mo, y0.copy(), mu, prec, 0, state)
    assert state["n_hessian_refreshed"] == mo.n and np.isfinite(h1).all()
    steps = state["fd_steps"]
    assert (steps >= mo.cfg["group"]["fd_step"]).all()
    # nll at the MAP is the n_particles estimate under key set A, as the Hessian's centre
    np.testing.assert_allclose(nll1, group._fd_hessian(mo, y1, steps=steps, check=False)[1],
                               rtol=1e-5)
    kept = moved = 0
    for it in (1, 2):
        y_prev, hy_prev = state["hess_y"].copy(), state["hess"].copy()
        y, _, h = group._estep_cma(mo, y1, mu + 0.3 * it, prec, it, state)
        far = (np.abs(y - y_prev) > reuse * steps).any(1)
        np.testing.assert_array_equal(state["hess_y"][far], y[far])
        np.testing.assert_array_equal(h[~far], hy_prev[~far])  # kept where it stayed close
        assert state["n_hessian_refreshed"] == far.sum()
        kept, moved, y1 = kept + (~far).sum(), moved + far.sum(), y
    assert kept > 0 and moved > 0, (kept, moved)  # both branches were taken
    y, _, h = group._estep_cma(mo, y1, mu + 1.0, prec, 3, state, final=True)
    np.testing.assert_array_equal(state["hess_y"], y)
    fresh = group._fd_hessian(mo, y, steps=steps, check=False)[0]
    np.testing.assert_allclose(h, fresh, rtol=1e-4, atol=1e-4)


def _linear_em(rates, target, log):
    """A fake EM map on a diagonal prior: its (mu, log sd) move a fraction ``1 - rate`` of the
    way to ``target`` per step (plain EM converges linearly at ``rates``); the "evidence" is
    minus the squared distance to the fixed point. ``log`` receives each call's kind."""
    d = len(target) // 2

    def em_map(mu, cov, kind):
        t = group._vec(mu, cov, "diag")
        new = target + rates * (t - target)
        m, c = group._unvec(new, d, "diag")
        log.append(kind)
        change = max(np.abs(m - mu).max(), np.abs(np.sqrt(np.diag(c)) - np.sqrt(np.diag(cov))).max())
        return m, c, -float(np.sum((t - target) ** 2)), float(change)
    return em_map


def test_squarem_converges_where_plain_em_crawls():
    """On a map that contracts at rate 0.97 (qlearn's EM on the real data crawled at 0.96),
    SQUAREM reaches the fixed point with fewer than a fifth of plain EM's E-steps."""
    target = np.array([0.5, -1.0, np.log(0.4), np.log(1.5)])
    rates = np.array([0.97, 0.9, 0.95, 0.8])
    g = {"max_iter": 400, "tol": 1e-4, "covariance": "diag"}
    mu0, cov0 = np.zeros(2), np.eye(2)
    plain = []
    mp, cp, conv = group._plain_em(_linear_em(rates, target, plain), mu0, cov0, g)
    assert conv and len(plain) > 150, len(plain)
    err_plain = np.abs(group._vec(mp, cp, "diag") - target).max()
    log = []
    mu, cov, conv = group._squarem(_linear_em(rates, target, log), mu0, cov0, g)
    assert conv and 5 * len(log) < len(plain), (len(log), len(plain))
    assert "extrapolated" in log
    # as close to the fixed point as plain EM is when the same rule stops it
    assert np.abs(group._vec(mu, cov, "diag") - target).max() <= err_plain


def test_squarem_falls_back_to_plain_em_when_the_residual_grows():
    """An extrapolated prior where the EM map moves more than at the last plain iterate is
    rejected: with every extrapolation rejected, SQUAREM's path is plain EM's (with the rejected
    steps spent)."""
    target = np.array([0.5, -1.0, np.log(0.4), np.log(1.5)])
    rates = np.array([0.97, 0.9, 0.95, 0.8])
    log = []
    base = _linear_em(rates, target, log)

    def refusing(mu, cov, kind):
        m, c, ev, ch = base(mu, cov, kind)
        return m, c, ev, (np.inf if kind == "extrapolated" else ch)

    g = {"max_iter": 30, "tol": 1e-9, "covariance": "diag"}
    mu, cov, conv = group._squarem(refusing, np.zeros(2), np.eye(2), g)
    assert not conv and len(log) == 30
    n_em = log.count("em")
    assert 0 < log.count("extrapolated") and n_em < 30
    # the result is plain EM's after as many plain iterations as SQUAREM took
    t = group._vec(np.zeros(2), np.eye(2), "diag")
    for _ in range(n_em):
        t = target + rates * (t - target)
    np.testing.assert_allclose(group._vec(mu, cov, "diag"), t, rtol=1e-12)


def test_full_covariance_round_trip_and_non_pd_is_refused():
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    mu = np.array([0.1, -0.2])
    m, c = group._unvec(group._vec(mu, cov, "full"), 2, "full")
    np.testing.assert_allclose(m, mu)
    np.testing.assert_allclose(c, cov)
    assert group._unvec(np.array([0.0, 0.0, 1.0, 2.0, 1.0]), 2, "full") is None
