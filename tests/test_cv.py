"""Cross-validation over blocks (dra_jax.fitting.cv): folds, the block-independence identity,
batch independence, a generating-model check, bad input."""
import numpy as np
import pytest

from dra_jax.config import ConfigError
from dra_jax.fitting import cli, cv, data, models, optimize, simulate, spec

QL = {"task": "stimulus_response", "figures": [],
      "fit": {"restarts": 1, "generations": 12, "n_reps": 2},
      "models": {"qlearn": {"free": ["beta", "alpha_q"], "beta": 5.0, "alpha_q": 0.5}},
      "bounds": {"beta": [0.5, 30.0], "alpha_q": [0.02, 1.0]},
      "compare": {"cv": "blocks"}}


def _ds(cfg, n=3, seed=0, set_sizes=(2, 3, 4, 6), reps=6, beta=6.0, alpha=0.4):
    tf = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"])
    theta = tf.theta_at(np.tile([beta, alpha], (n, 1)))
    df = simulate.synthetic_dataset(models.Static("qlearn", 6, 3), theta, seed, set_sizes, reps)
    return data.load_for(df, cfg)


@pytest.mark.parametrize("k", [0, 2, 3])
def test_folds_hold_every_block_out_once_and_masks_are_complements(k):
    cfg = spec.validate({**QL, "compare": {"cv": "blocks", "folds": k}})
    ds = _ds(cfg)
    train, test, f, i = cv.split(ds, k)
    a = np.asarray(ds.trials.a)
    for lane in range(len(i)):
        tr_a, te_a, orig = train.trials.a[lane], test.trials.a[lane], a[i[lane]]
        # each answered trial is in exactly one of train / test
        assert np.all((tr_a >= 0) + (te_a >= 0) == (orig >= 0))
    # every block of every subject is held out in exactly one fold
    b = cv.block_index(ds)
    for s in range(len(ds.subjects)):
        held = np.zeros(b[s].max() + 1, int)
        for lane in np.flatnonzero(i == s):
            held[np.unique(b[s][test.trials.a[lane] >= 0])] += 1
        assert np.all(held == 1)
    assert len(np.unique(f)) == (4 if k == 0 else k)


def test_train_plus_test_likelihood_is_the_full_likelihood():
    """Blocks are independent given theta: a fold's training and test log-likelihoods at the
    same parameters add up to the subject's whole log-likelihood (exact model)."""
    cfg = spec.validate(QL)
    ds = _ds(cfg)
    train, test, f, i = cv.split(ds, 0)
    theta = optimize.Transform(cfg["models"]["qlearn"], cfg["bounds"]).theta_at(
        np.array([[4.0, 0.3]]))[None]
    full = optimize.evaluate(cfg, "qlearn", ds, np.repeat(theta, len(ds.subjects), 0), 0)[:, 0]
    tr = optimize.evaluate(cfg, "qlearn", train, np.repeat(theta, len(i), 0), 0)[:, 0]
    te = optimize.evaluate(cfg, "qlearn", test, np.repeat(theta, len(i), 0), 0)[:, 0]
    np.testing.assert_allclose(tr + te, full[i], rtol=1e-5)
    # the held-out parts over folds add up to the whole as well
    np.testing.assert_allclose(np.bincount(i, te), full, rtol=1e-5)


def test_batched_folds_equal_one_fold_alone():
    cfg = spec.validate(QL)
    ds = _ds(cfg, n=2)
    train, test, f, i = cv.split(ds, 0)
    together = optimize.fit_model(cfg, "qlearn", train)
    one = np.flatnonzero(f == 1)
    alone = optimize.fit_model(cfg, "qlearn", cv._take(train, one))
    for j, lane in enumerate(one):
        assert alone[j]["loglik"] == pytest.approx(together[lane]["loglik"], abs=1e-4)
        assert alone[j]["beta"] == pytest.approx(together[lane]["beta"], rel=1e-4)


def test_the_generating_model_predicts_held_out_blocks_better():
    """Data from a Q-learner (beta 8, alpha_q 0.5): the true model's held-out log-likelihood
    beats a mis-specified Q-learner whose learning rate is pinned at 0.03, in total and for
    most subjects; and held-out fits are worse per trial than in-sample ones."""
    raw = {**QL, "models": {"qlearn": QL["models"]["qlearn"],
                            "slow": {"kind": "qlearn", "free": ["beta"], "beta": 5.0,
                                     "alpha_q": 0.03}}}
    cfg = spec.validate(raw)
    ds = _ds(cfg, n=4, seed=2, beta=8.0, alpha=0.5)
    res = cv.run(cfg, ds)
    wide = res.pivot(index="subject", columns="model", values="cv_loglik")
    assert wide["qlearn"].sum() > wide["slow"].sum() + 20
    assert (wide["qlearn"] > wide["slow"]).mean() >= 0.75
    summ = cv.summarize(res)
    assert summ["best"] == "qlearn" and summ["models"]["slow"]["diff_to_best"] < 0
    fits = cli.fit(ds, cfg).fits
    q = res[res["model"] == "qlearn"]
    insample = fits[fits["model"] == "qlearn"]["loglik"].sum() / fits[fits["model"] == "qlearn"]["n_trials"].sum()
    assert q["cv_loglik"].sum() / q["n_heldout"].sum() < insample


def test_bad_cv_settings(tmp_path):
    cfg = spec.validate({**QL, "compare": {"cv": "blocks", "folds": 9}})
    with pytest.raises(ConfigError) as e:
        cv.check(cfg, _ds(cfg))
    assert e.value.key == "compare.folds"
    cfg = spec.validate(QL)
    with pytest.raises(ConfigError) as e:
        cv.check(cfg, _ds(cfg, set_sizes=(3,)))
    assert e.value.key == "compare.cv"
    with pytest.raises(ConfigError) as e:
        spec.validate({**QL, "compare": {"cv": "loo"}})
    assert e.value.key == "compare.cv"
