"""The fitter's Python entry point: :func:`fit` (every model of a config fitted to a dataset) and
what it returns, :class:`FitResults`; the command around it is :mod:`dra_jax.fitting.cli`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dra_jax.fitting import data as data_mod
from dra_jax.fitting import optimize, spec

_SEQ_COLS = ("next_state", "done", "truncated", "episode_end")
BASE_COLS = ["subject", "model", "loglik", "loglik_se", "n_trials", "n_missed", "aic", "bic"]


@dataclass
class FitResults:
    """What a fit returns: ``fits`` (DataFrame, one row per subject x model), per-model
    ``totals``, the validated ``config``, a ``data_summary`` and ``timing``."""

    fits: pd.DataFrame
    totals: dict
    config: dict
    data_summary: dict
    timing: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def best(self, criterion: str = "bic") -> pd.DataFrame:
        """Each subject's winning model by ``criterion`` (aic | bic)."""
        return self.fits.loc[self.fits.groupby("subject")[criterion].idxmin()]


def _order_cols(df: pd.DataFrame) -> pd.DataFrame:
    rest = [c for c in df.columns if c not in BASE_COLS]
    return df[BASE_COLS + rest]


def _data_summary(ds) -> dict:
    df = ds.df
    out = {"n_subjects": len(ds.subjects), "n_rows": int(len(df)),
           "n_trials": int(ds.n_trials.sum()), "n_missed": int(ds.n_missed.sum()),
           "n_blocks": int(df.groupby(["subject", "block"]).ngroups),
           "covariates": [c for c in df.columns if c not in data_mod.REQUIRED + _SEQ_COLS]}
    if "episode_end" in df:  # a sequential task
        out["n_episodes"] = int(df["episode_end"].sum())
    obs = df[df["action"] >= 0]
    out["mean_reward"] = float(obs["reward"].mean()) if len(obs) else float("nan")
    return out


def fit(data, config, progress=None, done: pd.DataFrame | None = None, on_batch=None,
        done_trials: pd.DataFrame | None = None, done_group: dict | None = None,
        on_group=None) -> FitResults:
    """Fit every model of ``config`` (a validated dict, a raw dict or a TOML path) to ``data``
    (a CSV path, a DataFrame or a :class:`~dra_jax.fitting.data.Dataset`). ``done`` (and
    ``done_trials``): rows of fits already made (``--resume``), not fitted again;
    ``on_batch(fits, trials)`` is called after every batch with everything so far. With
    ``group.method = "em"`` the maximum-likelihood fits start a hierarchical EM per model
    (:func:`dra_jax.fitting.group.fit_group`) and ``fits`` holds the MAP estimates;
    ``done_group`` / ``on_group(done)``: the models whose EM is finished (``--resume``)."""
    cfg = read_config(config)
    f = cfg["fit"]
    ds = data if isinstance(data, data_mod.Dataset) else data_mod.load_for(data, cfg)
    if cfg["group"]["method"] == "em":
        from dra_jax.fitting import group

        group.check(cfg, len(ds.subjects))
    rows = [] if done is None else done.to_dict("records")
    trial_tables = [] if done_trials is None else [done_trials]
    have = {(str(r["subject"]), r["model"]) for r in rows}
    batch = f["max_batch"] or len(ds.subjects)
    t0 = time.perf_counter()
    work = [(m, [s for s in ds.subjects if (s, m) not in have]) for m in cfg["models"]]
    total = sum(len(s) for _, s in work)
    n_done = 0
    for m, subs in work:
        for b0 in range(0, len(subs), batch):
            chunk = subs[b0:b0 + batch]
            sub = ds if len(chunk) == len(ds.subjects) else ds.subset(chunk)

            def prog(name, frac, _n=n_done, _k=len(chunk)):
                if progress is not None:
                    progress(_n + frac * _k, total, name)

            rows += optimize.fit_model(cfg, m, sub, prog, trials_out=trial_tables)
            n_done += len(chunk)
            if on_batch is not None:
                on_batch(_order_cols(pd.DataFrame(rows)),
                         pd.concat(trial_tables, ignore_index=True) if trial_tables else None)
    fits = _sorted(_order_cols(pd.DataFrame(rows)), ds, cfg)
    timing = {"fit_s": time.perf_counter() - t0, "subject_models_fitted": total}
    extra = {"dataset": ds}
    if trial_tables:
        extra["trials"] = pd.concat(trial_tables, ignore_index=True)
    totals = optimize.model_totals(fits.to_dict("records"))
    if cfg["group"]["method"] == "em":
        fits = _group_em(cfg, ds, fits, totals, extra, timing, progress, done_group, on_group)
    return FitResults(fits, totals, cfg, _data_summary(ds), timing, extra)


def _sorted(fits: pd.DataFrame, ds, cfg) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(ds.subjects)}
    morder = {m: i for i, m in enumerate(cfg["models"])}
    fits = fits.assign(_s=fits["subject"].map(order), _m=fits["model"].map(morder))
    return fits.sort_values(["_m", "_s"]).drop(columns=["_s", "_m"]).reset_index(drop=True)


def _group_em(cfg, ds, fits_ml, totals, extra, timing, progress, done_group, on_group):
    """Hierarchical EM of every model (:mod:`dra_jax.fitting.group`) from its maximum-likelihood
    fits; ``done_group``: models already done (``--resume``), ``on_group(done)`` after each.
    Returns the MAP fits; the ML ones go to ``extra["fits_ml"]``, the group table to
    ``extra["group"]``, the EM diagnostics to ``extra["em"]``; each model's totals gain its
    summed Laplace log evidence and iBIC."""
    from dra_jax.fitting import group

    done = dict(done_group or {})
    t0 = time.perf_counter()
    for m in cfg["models"]:
        if m in done:
            continue
        ml = fits_ml[fits_ml["model"] == m].to_dict("records")

        def prog(name, it, cap, change):
            if progress is not None:
                progress(it, cap, f"{name} EM, change {change:.2g}", unit="EM iterations")

        done[m] = group.fit_group(cfg, m, ds, ml, prog)
        if on_group is not None:
            on_group(done)
    rows = [r for m in cfg["models"] for r in done[m]["fits"]]
    fits = _sorted(_order_cols(pd.DataFrame(rows)), ds, cfg)
    extra["fits_ml"] = fits_ml
    extra["group"] = pd.DataFrame([r for m in cfg["models"] for r in done[m]["group"]])
    extra["em"] = {m: done[m]["em"] for m in cfg["models"]}
    for m in cfg["models"]:
        em = done[m]["em"]
        totals[m].update({"log_evidence": em["sum_log_evidence"], "ibic": em["ibic"],
                          "em_converged": em["converged"], "em_iterations": em["iterations"]})
    timing["em_s"] = time.perf_counter() - t0
    extra["em_converged"] = all(done[m]["em"]["converged"] for m in cfg["models"])
    return fits


def read_config(config) -> dict:
    """A fit config from a TOML path, a raw dict, or an already validated config."""
    if isinstance(config, (str, Path)):
        return spec.load(config)
    if isinstance(config, dict) and "fit" in config and isinstance(config.get("models"), dict) \
            and all("values" in m for m in config["models"].values()):
        return config
    return spec.validate(dict(config))


def bms_block(res: FitResults) -> dict | None:
    """Random-effects BMS over the fitted models (:func:`dra_jax.fitting.selection.summary_block`):
    the evidence is each subject's Laplace log evidence after hierarchical EM, else -BIC/2 of
    the maximum-likelihood fit; each log-likelihood's Monte Carlo SE is propagated (the PXP's
    spread over draws of the evidences). None with fewer than 2 models."""
    from dra_jax.fitting import selection

    names = list(res.config["models"])
    if len(names) < 2:
        return None
    ev, se, kind = selection.evidence_matrix(res.fits, names)
    return selection.summary_block(names, ev.to_numpy(float), se.to_numpy(float), kind,
                                   seed=res.config["seed"])
