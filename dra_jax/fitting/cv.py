"""Cross-validation over blocks (``[compare] cv = "blocks"``): held-out log-likelihoods.

Every model here resets its latent state at a block's start, so a subject's blocks are
independent given the parameters, and ``p(D | theta) = prod_b p(D_b | theta)``. Fold f holds
out a set of each subject's blocks (``compare.folds = 0``: one block, its f-th, leave one block
out; ``k >= 2``: the blocks dealt round-robin into k folds), fits the model by maximum
likelihood to the rest (:func:`dra_jax.fitting.optimize.fit_model`, the fit command's own
search), and scores the held-out blocks at the fitted parameters.

A fold's training data are the subject's trials with the held-out blocks' actions marked
missed (a missed trial adds nothing to the likelihood and changes nothing, and the next block
resets the state), its test data the complement. Every (fold, subject) pair is one lane of the
same batched fit, keeping its subject's label (its random streams), so ALL folds of a model are
one call of ``fit_model`` (chunked by ``fit.max_batch`` lanes when that is set): its cost is
that of a maximum-likelihood fit of ``n_folds x n_subjects`` subjects. The held-out
log-likelihood of a stochastic model is the ``log mean exp`` of ``fit.n_reps`` replicates, with
its Monte Carlo SE (added in quadrature over folds); a deterministic model's is exact.

:func:`summarize` reports per model the summed held-out log-likelihood and its mean per trial,
and, against the best model, the paired per-subject differences: their sum with SE
``sqrt(N) sd(d_i)`` and their mean with SE ``sd(d_i) / sqrt(N)``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from dra_jax.config import ConfigError
from dra_jax.fitting import optimize
from dra_jax.fitting.data import Dataset

_CV = 3_000_017  # stream tag of the held-out replicates


def block_index(ds: Dataset) -> np.ndarray:
    """Each padded trial's block number within its subject (0, 1, ...; -1 on padding)."""
    tr = ds.trials
    idx = np.cumsum(np.asarray(tr.new_block) & np.asarray(tr.valid), 1) - 1
    return np.where(np.asarray(tr.valid), idx, -1)


def n_blocks(ds: Dataset) -> np.ndarray:
    return block_index(ds).max(1) + 1


def folds_of(ds: Dataset, k: int) -> np.ndarray:
    """``fold[i, t]``: the fold in which subject i's trial t is held out (-1 on padding).
    ``k = 0``: the trial's block number (leave one block out); else block number mod k."""
    b = block_index(ds)
    return np.where(b >= 0, b if k == 0 else b % max(k, 1), -1)


def check(cfg: dict, ds: Dataset) -> None:
    """Cross-validation's preconditions: every subject has >= 2 blocks, folds <= blocks."""
    nb = n_blocks(ds)
    one = [s for s, n in zip(ds.subjects, nb) if n < 2]
    if one:
        raise ConfigError("compare.cv", f"blocks needs >= 2 blocks a subject; subject(s) "
                                        f"{', '.join(one[:5])} have 1")
    k = cfg["compare"]["folds"]
    if k == 1 or k > nb.max():
        raise ConfigError("compare.folds", f"{k}: must be 0 (leave one block out) or between 2 "
                                           f"and the most blocks a subject has ({nb.max()})")


def split(ds: Dataset, k: int):
    """The lanes of every (fold, subject) pair that holds out something: ``(train, test, fold,
    subject index)``, where train and test are Datasets (lane-aligned, subject labels kept)."""
    fold = folds_of(ds, k)
    n_folds = int(fold.max()) + 1
    pairs = [(f, i) for f in range(n_folds) for i in range(len(ds.subjects))
             if np.any(fold[i] == f)]
    f_arr = np.array([p[0] for p in pairs])
    i_arr = np.array([p[1] for p in pairs])
    held = fold[i_arr] == f_arr[:, None]  # [L, T]
    a = np.asarray(ds.trials.a)[i_arr]
    train = _take(ds, i_arr, np.where(held, -1, a).astype(a.dtype))
    test = _take(ds, i_arr, np.where(held, a, -1).astype(a.dtype))
    return train, test, f_arr, i_arr


def run(cfg: dict, ds: Dataset, models: list[str] | None = None, progress=None) -> pd.DataFrame:
    """Held-out log-likelihoods, one row per subject x model: ``subject, model, cv_loglik,
    cv_loglik_se, n_heldout, n_folds``."""
    check(cfg, ds)
    k = cfg["compare"]["folds"]
    train, test, f_arr, i_arr = split(ds, k)
    n_lanes = len(i_arr)
    chunk = cfg["fit"]["max_batch"] or n_lanes
    rows = []
    for name in models or list(cfg["models"]):
        mspec = cfg["models"][name]
        tf = optimize.Transform(mspec, cfg["bounds"])
        recs = []
        for c0 in range(0, n_lanes, chunk):
            sl = np.arange(c0, min(c0 + chunk, n_lanes))
            part = train if len(sl) == n_lanes else _take(train, sl)

            def prog(m, frac, _c0=c0, _n=len(sl)):
                if progress is not None:
                    progress(_c0 + frac * _n, n_lanes, f"{m} cross-validation",
                             unit="fold x subject lanes")

            recs += optimize.fit_model(cfg, name, part, prog)
        x = np.array([[r[p] for p in tf.free] for r in recs], float).reshape(n_lanes, -1)
        theta = tf.theta_at(x)  # [L, P]
        r = cfg["fit"]["n_reps"] if optimize.stochastic(cfg, mspec) else 1
        reps = optimize.evaluate(cfg, mspec, test, np.repeat(theta[:, None], r, 1),
                                 _CV + np.arange(r), width=r)
        ll = logsumexp(reps, 1) - np.log(r)
        se = reps.std(1, ddof=1) / np.sqrt(r) if r > 1 else np.zeros(n_lanes)
        for i, s in enumerate(ds.subjects):
            mine = i_arr == i
            rows.append({"subject": s, "model": name, "cv_loglik": float(ll[mine].sum()),
                         "cv_loglik_se": float(np.sqrt(np.sum(se[mine] ** 2))),
                         "n_heldout": int(test.n_trials[mine].sum()),
                         "n_folds": int(mine.sum()),
                         "train_loglik": float(np.sum([recs[j]["loglik"]
                                                       for j in np.flatnonzero(mine)]))})
    return pd.DataFrame(rows)


def _take(ds: Dataset, idx: np.ndarray, actions: np.ndarray | None = None) -> Dataset:
    """The lanes ``idx`` of ``ds`` (labels kept); ``actions [len(idx), T]``: their actions
    instead (-1 = missed), with the answered and missed counts recomputed."""
    trials = type(ds.trials)(*(np.asarray(x)[idx] for x in ds.trials))
    n_trials, n_missed = ds.n_trials[idx], ds.n_missed[idx]
    if actions is not None:
        trials = trials._replace(a=actions)
        n_trials = ((actions >= 0) & trials.valid).sum(1)
        n_missed = ((actions < 0) & trials.valid).sum(1)
    return dataclasses.replace(ds, subjects=[ds.subjects[i] for i in idx], trials=trials,
                               n_trials=n_trials, n_missed=n_missed)


def summarize(cv_df: pd.DataFrame, fits: pd.DataFrame | None = None) -> dict:
    """Per model: the summed held-out log-likelihood (with its Monte Carlo SE), its mean per
    held-out trial, and the paired per-subject difference to the best model (sum, its SE, mean
    per subject, its SE); with ``fits``, the model's AIC and BIC totals beside it."""
    wide = cv_df.pivot(index="subject", columns="model", values="cv_loglik")
    names = list(dict.fromkeys(cv_df["model"]))
    tot = {m: float(wide[m].sum()) for m in names}
    best = max(tot, key=tot.get)
    n = len(wide)
    out = {"best": best, "n_subjects": n, "models": {}}
    for m in names:
        g = cv_df[cv_df["model"] == m]
        d = (wide[m] - wide[best]).to_numpy(float)
        sd = float(np.std(d, ddof=1)) if n > 1 else float("nan")
        rec = {"cv_loglik": tot[m], "cv_loglik_mc_se": float(np.sqrt((g["cv_loglik_se"] ** 2).sum())),
               "per_trial": tot[m] / float(g["n_heldout"].sum()),
               "diff_to_best": float(d.sum()), "diff_to_best_se": sd * np.sqrt(n),
               "mean_diff_to_best": float(d.mean()), "mean_diff_to_best_se": sd / np.sqrt(n)}
        if fits is not None and m in set(fits["model"]):
            f = fits[fits["model"] == m]
            rec.update({"aic": float(f["aic"].sum()), "bic": float(f["bic"].sum())})
        out["models"][m] = rec
    return out
