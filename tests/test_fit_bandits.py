"""Fitting bandit agents (TS with softmax / lapse, BLASTS, one-state DRA) and the search's
particle count."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from dra_jax.fitting import bandit_models, cli, data, models, optimize, particle, simulate, spec

TH = np.array([0.1, 4.0, 0.3, 0.05, 1.0, 1.0, 0.1, 2.0, 0.2, 1.5, 0.8])  # PARAMS order


def test_ts_argmax_probability_is_the_exact_integral():
    """The Gauss-Hermite TS argmax probability equals scipy's adaptive quadrature of the same
    1-D integral (posteriors of very different widths) to 1e-4, and sums to 1 over arms."""
    m = np.array([0.3, -0.2, 0.5, 0.1])
    sd = np.array([0.4, 1.0, 0.3, 0.6])
    p = np.asarray(jax.vmap(bandit_models.ts_argmax_prob, in_axes=(None, None, 0))(
        jnp.asarray(m), jnp.asarray(sd), jnp.arange(4)), np.float64)

    def exact(a):
        f = lambda x: stats.norm.pdf(x) * np.prod([stats.norm.cdf((m[a] + sd[a] * x - m[j]) / sd[j])  # noqa: E731
                                                   for j in range(4) if j != a])
        return integrate.quad(f, -12, 12, epsabs=1e-12)[0]

    np.testing.assert_allclose(p, [exact(a) for a in range(4)], atol=1e-4)
    assert abs(p.sum() - 1.0) < 1e-4


def _np_blasts(m, sd, beta, nodes, iters):
    th = m + sd * nodes
    d = (th.max(1, keepdims=True) - th) ** 2
    kern = np.exp(-beta * (d - d.min(1, keepdims=True)))
    q = np.full(m.size, 1.0 / m.size)
    for _ in range(iters):
        delta = q * kern
        delta /= delta.sum(1, keepdims=True)
        q_new = delta.mean(0)
        if np.max(np.abs(q_new - q)) < 1e-5:
            return q_new
        q = q_new
    return q


@pytest.mark.parametrize("kind", ["ts_softmax", "ts_lapse", "blasts"])
def test_bandit_agents_one_particle_is_the_exact_likelihood(kind):
    """Beliefs are deterministic given the data: the filter with one particle equals a NumPy
    computation of sum_t log P(a_t) (conjugate Normal posterior with prior mean 0.2, sd 1.5,
    noise sd 0.8; soft TS on the same zeta nodes, the TS argmax integral by scipy quad, BLASTS by
    a NumPy Blahut-Arimoto loop), with a missed trial and a new block in the data."""
    st = models.Static(kind, 1, 3, n_zeta=32)
    df = simulate.synthetic_bandit_dataset(st, TH[None], 3, n_blocks=2, n_trials=12)
    df.loc[5, "action"] = np.nan
    ds = data.load(df, 1, 3)
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    ll, _ = particle.loglik(st, 1, 0.5, jnp.asarray(TH[None, None], jnp.float32), tr,
                            jax.random.key(0)[None, None])
    nodes = models.zeta_nodes(st)[0].astype(np.float64)
    want = 0.0
    for _, g in df.groupby("block"):
        m, tau = np.full(3, TH[8]), np.full(3, TH[9] ** -2)
        for a, r in zip(g["action"], g["reward"]):
            if np.isnan(a):
                continue
            a = int(a)
            sd = tau ** -0.5
            if kind == "ts_softmax":
                x = TH[1] * (m + nodes * sd)
                p = np.mean(np.exp(x[:, a] - x.max(1)) / np.exp(x - x.max(1, keepdims=True)).sum(1))
            elif kind == "ts_lapse":
                f = lambda z: stats.norm.pdf(z) * np.prod([stats.norm.cdf((m[a] + sd[a] * z - m[j]) / sd[j])  # noqa: E731
                                                           for j in range(3) if j != a])
                p = (1 - TH[6]) * integrate.quad(f, -12, 12, epsabs=1e-12)[0] + TH[6] / 3
            else:
                p = (1 - TH[6]) * _np_blasts(m, sd, TH[7], nodes, 100)[a] + TH[6] / 3
            want += np.log(p)
            tau_new = tau[a] + TH[10] ** -2
            m[a] = (tau[a] * m[a] + r * TH[10] ** -2) / tau_new
            tau[a] = tau_new
    assert ds.n_missed[0] == 1
    np.testing.assert_allclose(float(ll[0, 0]), want, rtol=1e-4)


def test_bandit_parameter_recovery():
    """Soft-TS beta and BLASTS's ba_beta (true values uniform in [1, 15]) from 12 simulated
    subjects x 160 trials (4 fresh 4-armed Gaussian bandits x 40 trials), exact likelihoods,
    1 restart x 12 generations. Measured: Spearman r 0.84 (beta; bias -0.86: above ~8 the
    soft-TS choice is nearly the argmax and beta is weakly identified) and 0.94 (ba_beta; bias
    -1.0). Thresholds kept from that run: 0.65 and 0.8. (With 16 instead of 32 zeta nodes soft
    TS's beta is biased by -3.4: the node average underestimates small choice probabilities.)"""
    rng = np.random.default_rng(5)
    n = 12
    out = {}
    for name, col, n_zeta in (("ts_softmax", 1, 32), ("blasts", 7, 16)):
        cfg = spec.validate({"task": "bandits", "fit": {"n_actions": 4, "n_zeta": n_zeta,
                                                        "restarts": 1, "generations": 12,
                                                        "n_reps": 2},
                             "models": {"ts_softmax": {"free": ["beta"], "beta": 5.0},
                                        "blasts": {"free": ["ba_beta"], "ba_beta": 3.0}},
                             "bounds": {"beta": [0.5, 20.0], "ba_beta": [0.2, 20.0]}})
        true = rng.uniform(1.0, 15.0, n)
        th = np.tile(optimize.Transform(cfg["models"][name], cfg["bounds"]).base, (n, 1))
        th[:, col] = true
        st = optimize.static_for(cfg, name)
        df = simulate.synthetic_bandit_dataset(st, th, 11 + col, n_blocks=4, n_trials=40)
        fits = cli.fit(df, dict(cfg, models={name: cfg["models"][name]})).fits
        out[name] = stats.spearmanr(true, fits["beta" if col == 1 else "ba_beta"])[0]
    assert out["ts_softmax"] > 0.65 and out["blasts"] > 0.8, out


def test_search_uses_search_particles(monkeypatch):
    """With fit.search_particles every CMA-ES generation's call runs that many particles and
    the finalists and the winner's replicates fit.n_particles, each at its own width (not
    padded to the population); deterministic models one particle."""
    calls = []

    def spy(st, n_particles, ess, theta, trials, keys, n_devices=1, per_trial=False):
        calls.append((st.kind, n_particles, theta.shape[1]))  # records, computes nothing
        out = (-jnp.sum(theta ** 2, -1), jnp.zeros(theta.shape[:2], jnp.int32))
        return out + (jnp.zeros(theta.shape[:2] + trials.s.shape[1:]),) if per_trial else out

    monkeypatch.setattr(particle, "loglik", spy)
    cfg = spec.validate({"task": "bandits", "fit": {"n_actions": 3, "n_particles": 8,
                                                    "search_particles": 2, "restarts": 1,
                                                    "generations": 3, "n_reps": 2, "n_traj": 2,
                                                    "n_zeta": 8},
                         "models": {"dra": {"free": ["lam"]}, "ts_lapse": {"free": ["epsilon"],
                                                                          "epsilon": 0.1}}})
    df = pd.DataFrame({"subject": "x", "block": 0, "trial": np.arange(10), "state": 0,
                       "action": np.arange(10) % 3, "reward": np.linspace(-1.0, 1.0, 10)})
    cli.fit(df, cfg)
    # (particles, candidates): 3 generations of popsize 4, 2 finalists, 2 replicates
    assert [(p, c) for k, p, c in calls if k == "dra"] == [(2, 4)] * 3 + [(8, 2), (8, 2)]
    assert {p for k, p, _ in calls if k == "ts_lapse"} == {1}


def test_bandit_config_and_errors():
    cfg = spec.load("configs/fit_bandits.toml")
    assert cfg["fit"]["n_states"] == 1 and {"ts_softmax", "ts_lapse", "blasts", "dra"} <= set(cfg["models"])
    for m in cfg["models"].values():
        optimize.Transform(m, cfg["bounds"]).to_y([m["values"][p] for p in m["free"]])
    base = {"task": "bandits", "models": {"ts_lapse": {"free": ["epsilon"], "epsilon": 0.1}}}
    with pytest.raises(spec.ConfigError, match="models.ts_lapse.kind"):
        spec.validate(dict(base, task="stimulus_response"))
    with pytest.raises(spec.ConfigError, match="fit.n_states"):
        spec.validate(dict(base, fit={"n_states": 3}))
    with pytest.raises(spec.ConfigError, match="figures"):
        spec.validate(dict(base, figures=["ppc"]))
    with pytest.raises(spec.ConfigError, match="models.ts_lapse.free"):
        spec.validate(dict(base, models={"ts_lapse": {"free": ["beta"]}}))


def test_per_model_bounds_override_the_shared_box():
    """[models.NAME.bounds] replaces [bounds] for that model only (search box and start check)."""
    cfg = spec.validate({"task": "bandits", "bounds": {"beta": [0.5, 30.0]},
                         "models": {"a": {"kind": "ts_softmax", "free": ["beta"], "beta": 2.0,
                                          "bounds": {"beta": [1.0, 3.0]}},
                                    "b": {"kind": "ts_softmax", "free": ["beta"], "beta": 5.0}}})
    ta = optimize.Transform(cfg["models"]["a"], cfg["bounds"])
    tb = optimize.Transform(cfg["models"]["b"], cfg["bounds"])
    assert (ta.lo[0], ta.hi[0], tb.lo[0], tb.hi[0]) == (1.0, 3.0, 0.5, 30.0)
    with pytest.raises(spec.ConfigError, match=r"models.a.bounds.beta = \[1.0, 3.0\]"):
        spec.validate({"task": "bandits", "models": {"a": {
            "kind": "ts_softmax", "free": ["beta"], "beta": 5.0, "bounds": {"beta": [1.0, 3.0]}}}})
    with pytest.raises(spec.ConfigError, match="models.a.bounds.beta"):
        spec.validate({"task": "bandits", "models": {"a": {
            "kind": "ts_softmax", "free": ["beta"], "beta": 5.0, "bounds": {"beta": [3.0, 1.0]}}}})
