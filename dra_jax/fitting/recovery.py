"""Parameter and model recovery on simulated subjects (``[recovery]`` of a fit config).

For each generating model, ``n_subjects`` agents with parameters drawn uniformly from the middle
80% of each free parameter's box (``[bounds]``) act on fresh stimulus-response designs
(:func:`dra_jax.fitting.simulate.synthetic_dataset`) or fresh Gaussian bandits
(:func:`dra_jax.fitting.simulate.synthetic_bandit_dataset`); every model of the config is then fitted to
every simulated subject. Parameter recovery (the generating model fitted to its own data): per
parameter the Pearson and Spearman correlation of true vs recovered, the bias (mean of recovered
- true) and the RMSE. Model recovery: the confusion matrix ``P(best model by BIC | generating
model)``, and beside it random-effects BMS on each generating model's subjects: the PXP of
every fitted model (:func:`pxp_confusion`). With ``group.method = "em"`` every model is
fitted by hierarchical EM over all simulated subjects and the evidence is the Laplace one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from dra_jax.fitting import data as data_mod
from dra_jax.fitting import optimize, simulate


def true_parameters(cfg: dict, name: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    mspec = cfg["models"][name]
    cols = {}
    for p in mspec["free"]:
        lo, hi = {**cfg["bounds"], **mspec.get("bounds", {})}[p]
        w = hi - lo
        cols[p] = rng.integers(int(lo), int(hi) + 1, n).astype(float) if p == "capacity" else \
            rng.uniform(lo + 0.1 * w, hi - 0.1 * w, n)
    return pd.DataFrame(cols)


def parameter_recovery(truth: pd.DataFrame, fitted: pd.DataFrame) -> dict:
    out = {}
    for p in truth.columns:
        t, r = truth[p].to_numpy(float), fitted[p].to_numpy(float)
        ok = len(t) > 2 and np.std(t) > 0 and np.std(r) > 0
        out[p] = {"pearson_r": float(stats.pearsonr(t, r)[0]) if ok else float("nan"),
                  "spearman_r": float(stats.spearmanr(t, r)[0]) if ok else float("nan"),
                  "bias": float(np.mean(r - t)), "rmse": float(np.sqrt(np.mean((r - t) ** 2))),
                  "true": t.tolist(), "recovered": r.tolist()}
    return out


def pxp_confusion(res, truths: dict, generating: list, names: list) -> dict:
    """Model recovery by random-effects BMS: for each generating model, BMS over the fitted
    models on its simulated subjects alone (the Laplace evidence after hierarchical EM, else
    -BIC/2). Row g: the PXP of every fitted model (``confusion_pxp``), its expected
    frequencies, and the PXP winner (``pxp_winner``)."""
    from dra_jax.fitting import selection

    ev, _, kind = selection.evidence_matrix(res.fits, names)
    pxp, freq, win = [], [], []
    for g in generating:
        out = selection.bms(ev.loc[list(truths[g]["subject"])].to_numpy(float))
        pxp.append(np.asarray(out["pxp"]).tolist())
        freq.append(np.asarray(out["expected_frequencies"]).tolist())
        win.append(names[int(np.argmax(out["pxp"]))])
    return {"confusion_pxp": pxp, "frequencies_bms": freq, "pxp_winner": win,
            "bms_evidence": kind}


def run(cfg: dict, progress=None):
    """Simulate, fit, summarize; returns a FitResults whose ``extra`` holds ``recovery``."""
    from dra_jax.fitting.api import fit

    rec = cfg["recovery"]
    rng = np.random.default_rng(cfg["seed"])
    frames, truths = [], {}
    for gi, g in enumerate(rec["generating"]):
        mspec = cfg["models"][g]
        truth = true_parameters(cfg, g, rec["n_subjects"], rng)
        tf = optimize.Transform(mspec, cfg["bounds"])
        theta = np.stack([tf.theta_at(row) for row in truth[tf.free].to_numpy(float)]) \
            if tf.free else \
            np.tile(tf.base, (rec["n_subjects"], 1))
        subjects = [f"{g}_{i:03d}" for i in range(rec["n_subjects"])]
        st = optimize.static_for(cfg, mspec)
        seed = cfg["seed"] * 1000 + gi
        if cfg["task"] == "gridworld":
            from dra_jax.fitting import seqsim

            frames.append(seqsim.simulate(optimize.seq_static_for(cfg, mspec), theta,
                                          rec["n_blocks"], rec["n_episodes"], seed, subjects))
        elif cfg["task"] == "bandits":
            frames.append(simulate.synthetic_bandit_dataset(st, theta, seed, rec["n_blocks"],
                                                            rec["n_trials"], subjects))
        else:
            frames.append(simulate.synthetic_dataset(st, theta, seed, tuple(rec["set_sizes"]),
                                                     rec["reps"], subjects))
        truth.insert(0, "subject", subjects)
        truths[g] = truth
    df = pd.concat(frames, ignore_index=True)
    ds = data_mod.load_for(df, cfg)
    res = fit(ds, cfg, progress=progress)
    fits = res.fits
    best = res.best("bic").set_index("subject")["model"]
    names = list(cfg["models"])
    confusion = np.zeros((len(rec["generating"]), len(names)))
    params = {}
    for gi, g in enumerate(rec["generating"]):
        subs = truths[g]["subject"]
        for s in subs:
            confusion[gi, names.index(best[s])] += 1
        confusion[gi] /= max(len(subs), 1)
        own = fits[(fits["model"] == g)].set_index("subject").loc[subs].reset_index()
        free = cfg["models"][g]["free"]
        params[g] = parameter_recovery(truths[g][free], own[free]) if free else {}
    res.extra["recovery"] = {"generating": rec["generating"], "fitted": names,
                             "confusion_bic": confusion.tolist(), "parameters": params}
    if len(names) >= 2:
        res.extra["recovery"].update(pxp_confusion(res, truths, rec["generating"], names))
    res.extra["truth"] = {g: t.to_dict("list") for g, t in truths.items()}
    return res
