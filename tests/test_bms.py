"""Random-effects BMS (dra_jax.fitting.bms) against an independent implementation written
here, the two-model exceedance probability against its closed forms, limits, bad input."""
import math

import numpy as np
import pytest
from scipy import special, stats

import dra_jax.fitting as fitting
from dra_jax.config import ConfigError
from dra_jax.fitting import selection


def _independent(lme, alpha0=1.0, n_mc=400_000, seed=1):
    """A plain-loop VB (Stephan et al. 2009, eqs. 14-16), XP by sampling the Dirichlet, the
    free energy at the fixed point as sum_n log sum_k exp(L + E log r) - KL, the KL by Monte
    Carlo over scipy's Dirichlet density, F0 by direct summation."""
    n, k = len(lme), len(lme[0])
    alpha = [alpha0] * k
    for _ in range(5000):
        s = sum(alpha)
        new = [alpha0] * k
        for i in range(n):
            u = [lme[i][j] + special.digamma(alpha[j]) - special.digamma(s) for j in range(k)]
            m = max(u)
            e = [math.exp(x - m) for x in u]
            for j in range(k):
                new[j] += e[j] / sum(e)
        done = max(abs(a - b) for a, b in zip(new, alpha)) < 1e-12
        alpha = new
        if done:
            break
    alpha = np.array(alpha)
    rng = np.random.default_rng(seed)
    r = rng.dirichlet(alpha, n_mc)
    xp = np.bincount(r.argmax(1), minlength=k) / n_mc
    elogr = special.digamma(alpha) - special.digamma(alpha.sum())
    kl = np.mean(stats.dirichlet.logpdf(r.T, alpha) - stats.dirichlet.logpdf(r.T, np.full(k, alpha0)))
    kl_se = np.std(stats.dirichlet.logpdf(r.T, alpha)
                   - stats.dirichlet.logpdf(r.T, np.full(k, alpha0))) / np.sqrt(n_mc)
    f1 = sum(math.log(sum(math.exp(lme[i][j] + elogr[j]) for j in range(k))) for i in range(n)) - kl
    f0 = sum(math.log(sum(math.exp(lme[i][j]) for j in range(k)) / k) for i in range(n))
    return alpha, xp, f1, f0, kl_se


CASES = [(20, 2, 1.0, 0), (40, 3, 3.0, 1), (60, 4, 0.5, 2), (25, 4, 8.0, 3), (30, 3, 0.05, 4)]


@pytest.mark.parametrize("n,k,scale,seed", CASES)
def test_bms_matches_an_independent_implementation(n, k, scale, seed):
    rng = np.random.default_rng(seed)
    lme = scale * rng.standard_normal((n, k)) - 300.0
    lme[:, 0] += 0.5 * scale
    got = fitting.bms(lme)
    alpha, xp, f1, f0, kl_se = _independent(lme.tolist())
    np.testing.assert_allclose(got["alpha"], alpha, rtol=1e-8)
    np.testing.assert_allclose(got["expected_frequencies"], alpha / alpha.sum(), rtol=1e-8)
    np.testing.assert_allclose(got["xp"], xp, atol=4e-3)  # MC: 400k draws, SE <= 8e-4
    assert got["F1"] == pytest.approx(f1, abs=6 * kl_se + 1e-8)
    assert got["F0"] == pytest.approx(f0, abs=1e-8)
    bor = 1 / (1 + math.exp(f1 - f0))
    assert got["bor"] == pytest.approx(bor, abs=max(6 * kl_se * bor * (1 - bor), 1e-9))
    np.testing.assert_allclose(got["pxp"], (1 - got["bor"]) * got["xp"] + got["bor"] / k,
                               rtol=1e-12)
    assert got["converged"] and np.isclose(got["pxp"].sum(), 1.0)


@pytest.mark.parametrize("a1,a2", [(3.0, 5.0), (11.0, 1.0), (7.0, 7.0), (2.5, 40.2)])
def test_two_model_exceedance_is_the_beta_closed_form(a1, a2):
    """xp_1 = P(r_1 > 1/2), r_1 ~ Beta(a1, a2) = 1 - I_{1/2}(a1, a2); for integer alphas also
    the binomial sum of the Beta CDF, I_x(a, b) = sum_{j=a}^{a+b-1} C(a+b-1, j) x^j (1-x)^(a+b-1-j)."""
    xp = selection.exceedance([a1, a2])
    assert xp[0] == pytest.approx(1 - stats.beta.cdf(0.5, a1, a2), abs=1e-12)
    if float(a1).is_integer() and float(a2).is_integer():
        a, b = int(a1), int(a2)
        m = a + b - 1
        cdf = sum(math.comb(m, j) for j in range(a, m + 1)) * 0.5 ** m
        assert xp[0] == pytest.approx(1 - cdf, abs=1e-12)
    # and the general Gamma-integral route of K > 2 gives the same for two models
    grid = selection.exceedance_grid(np.array([[a1, a2]]))[0]
    np.testing.assert_allclose(grid, xp, atol=1e-6)


def test_limits_equal_evidence_and_a_dominant_model():
    """All models equal in every subject: the null is favoured (BOR > 0.8), PXP = 1/K. One model
    better by 50 nats in every subject: frequencies (N + 1) / (N + K), BOR ~ 0, PXP ~ 1."""
    n, k = 30, 3
    same = fitting.bms(np.full((n, k), -100.0))
    assert same["bor"] > 0.8
    np.testing.assert_allclose(same["pxp"], 1 / k, atol=1e-9)
    dom = np.full((n, k), -100.0)
    dom[:, 1] += 50.0
    r = fitting.bms(dom)
    np.testing.assert_allclose(r["expected_frequencies"][1], (n + 1) / (n + k), rtol=1e-9)
    assert r["bor"] < 1e-10 and r["pxp"][1] > 1 - 1e-9


@pytest.mark.parametrize("bad,msg", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), "log_evidence[0, 1]"),
    (np.zeros((5, 1)), "at least 2 models"),
    (np.zeros(4), "matrix"),
])
def test_bad_input_is_a_config_error(bad, msg):
    with pytest.raises(ConfigError) as e:
        fitting.bms(bad)
    assert e.value.key == "bms" and msg in str(e.value)


def test_spread_over_monte_carlo_draws():
    rng = np.random.default_rng(5)
    lme = 2.0 * rng.standard_normal((25, 3))
    lme[:, 2] += 1.0
    zero = selection.bms_spread(lme, np.zeros_like(lme), n_draws=20)
    exact = fitting.bms(lme)
    np.testing.assert_allclose(zero["pxp"]["mean"], exact["pxp"], atol=1e-6)
    assert max(zero["pxp"]["sd"]) < 1e-9
    noisy = selection.bms_spread(lme, np.full_like(lme, 1.0), n_draws=50, seed=3)
    assert min(noisy["pxp"]["sd"]) > 1e-3
    again = selection.bms_spread(lme, np.full_like(lme, 1.0), n_draws=50, seed=3)
    assert noisy == again


def test_figure_and_summary_block(tmp_path):
    from dra_jax.fitting.figures import draw_bms

    rng = np.random.default_rng(0)
    lme = rng.standard_normal((12, 3))
    block = selection.summary_block(["a", "b", "c"], lme, np.full_like(lme, 0.3), "bic")
    assert block["models"] == ["a", "b", "c"] and "spread" in block and block["evidence"] == "bic"
    path = draw_bms(block, tmp_path / "bms.png")
    assert path.stat().st_size > 5000
