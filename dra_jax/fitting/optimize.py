"""Maximum-likelihood fits: CMA-ES (``cma``) per subject on logit-transformed parameters.

Per model, every subject runs its own CMA-ES (Hansen 2016) in ``y = logit((x - lo) / (hi - lo))``
coordinates; a generation of all subjects' populations is ONE call of
:func:`dra_jax.fitting.particle.loglik` with common random numbers (all candidates of a subject
share that generation's particle noise). ``restarts`` runs per subject (the first from the
model's start values, the others from random points of the box). The finalists (each run's
best and mean) are re-evaluated with fresh particles, the best is the winner, and the winner is
evaluated once more with fresh particles in ``n_reps`` independent replicates: the reported
log-likelihood is ``log mean_r exp(ll_r)`` (the log of the unbiased likelihood estimate), its
Monte Carlo SE the standard deviation of ``ll_r`` over sqrt(n_reps). With
``fit.search_particles`` the search's calls use that many particles (the search only ranks
candidates of one subject under common random numbers), the finalists and the replicates
``fit.n_particles``.

Each subject's random streams (CMA-ES and particle noise) derive from its label, so its fit does
not depend on which other subjects share its batch.
"""
from __future__ import annotations

import time
import warnings

import cma
import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.config import ConfigError
from dra_jax.fitting import models, particle
from dra_jax.fitting.data import Dataset, subject_seed

# stream tags of fold_in(subject key, tag): search generations, finalists, the winner's replicates
_FINALISTS, _WINNER = 1_000_003, 1_000_033


def static_for(cfg: dict, kind: str) -> models.Static:
    f = cfg["fit"]
    return models.Static(kind, f["n_states"], f["n_actions"], f["n_traj"], f["psi"], f["optimizer"],
                         f["sigma_min"], f["sigma_max"], f["zeta"], f["n_zeta"])


def seq_static_for(cfg: dict, kind: str):
    """The sequential task's static configuration (task ``gridworld``)."""
    from dra_jax.fitting import sequential

    return sequential.SeqStatic(static_for(cfg, kind), tuple(cfg["fit"]["maze"]),
                                cfg["fit"]["max_steps"])


def stochastic(cfg: dict, kind: str) -> bool:
    """Whether the model's latent state is random given the data (then it needs particles)."""
    if cfg["task"] == "gridworld":
        from dra_jax.fitting import sequential

        return sequential.stochastic(kind)
    return models.STOCHASTIC[kind]


class Transform:
    """Free parameters <-> unbounded coordinates, and the full theta vector (PARAMS order)."""

    def __init__(self, mspec: dict, bounds: dict):
        self.free = list(mspec["free"])
        self.idx = np.array([models.PARAMS.index(p) for p in self.free], int)
        bounds = {**bounds, **mspec.get("bounds", {})}  # a model's own box first
        self.lo = np.array([bounds[p][0] for p in self.free])
        self.hi = np.array([bounds[p][1] for p in self.free])
        self.base = np.array([mspec["values"][p] for p in models.PARAMS], np.float64)

    def to_x(self, y):
        return self.lo + (self.hi - self.lo) / (1.0 + np.exp(-np.asarray(y)))

    def to_y(self, x):
        u = (np.asarray(x) - self.lo) / (self.hi - self.lo)
        return np.log(u / (1.0 - u))

    def theta(self, y) -> np.ndarray:
        y = np.asarray(y)
        th = np.broadcast_to(self.base, y.shape[:-1] + (len(models.PARAMS),)).copy()
        th[..., self.idx] = self.to_x(y)
        return th


def _keys(subjects, tags: np.ndarray):
    """Particle-noise keys ``[N, C]``: ``fold_in(key(subject seed), tags[c])``."""
    base = jnp.stack([jax.random.key(subject_seed(s)) for s in subjects])
    tags = jnp.asarray(tags, jnp.uint32)
    return jax.vmap(lambda k: jax.vmap(lambda t: jax.random.fold_in(k, t))(tags))(base)


def _n_particles(cfg, kind, search=False):
    """Particles of a likelihood call: 1 for a deterministic model (exact); during the CMA-ES
    search ``fit.search_particles`` when set, else ``fit.n_particles``."""
    if not stochastic(cfg, kind):
        return 1
    f = cfg["fit"]
    return f["search_particles"] if search and f["search_particles"] else f["n_particles"]


def n_devices(cfg) -> int:
    """Devices a likelihood call is split over: ``fit.devices``, 0 = all of this process's."""
    n = len(jax.local_devices())
    want = cfg["fit"]["devices"] or n
    if want > n:
        raise ConfigError("fit.devices", f"{want} devices asked for, this process has {n} "
                          f"({jax.local_devices()[0].platform}; on CPU: --cpu-devices)")
    return want


def evaluate(cfg, kind, ds: Dataset, theta: np.ndarray, tags, width: int | None = None,
             search: bool = False):
    """Log-likelihoods ``[N, C]`` of ``theta [N, C, 6]`` with candidate c's particle noise from
    ``tags[c]`` (one tag for all: common random numbers). Candidates are evaluated ``width`` at a
    time (padding the last call), so every search call of a fit has the same shape and compiles
    once. Without ``width``, the finalists' width (``2 * fit.restarts``) when ``C`` is a multiple
    of it, else ``C``: the finalists are one call, and the winner's replicates (``fit.n_reps``,
    8 = 2 x 4 with 2 restarts) reuse the finalists' compiled program instead of compiling one of
    their own (not padded to the population: at 256 particles a padded column costs as much as
    a real one). A lane's numbers do not depend on its batch-mates, so the split changes none."""
    if cfg["task"] == "gridworld":
        from dra_jax.fitting import sequential

        st, like = seq_static_for(cfg, kind), sequential.loglik
        tr = sequential.SeqTrials(*(jnp.asarray(x) for x in ds.trials))
    else:
        st, like = static_for(cfg, kind), particle.loglik
        tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
    n, c = theta.shape[:2]
    tags = np.broadcast_to(np.asarray(tags), (c,))
    if not width:
        fw = 2 * cfg["fit"]["restarts"]
        width = fw if c % fw == 0 else c
    out = []
    for c0 in range(0, c, width):
        th, tg = theta[:, c0:c0 + width], tags[c0:c0 + width]
        pad = width - th.shape[1]
        if pad:
            th = np.concatenate([th, np.repeat(th[:, -1:], pad, 1)], 1)
            tg = np.concatenate([tg, np.repeat(tg[-1:], pad)])
        ll, _ = like(st, _n_particles(cfg, kind, search), cfg["fit"]["ess_threshold"],
                     jnp.asarray(th, jnp.float32), tr, _keys(ds.subjects, tg), n_devices(cfg))
        out.append(np.asarray(ll, np.float64)[:, :width - pad])
    return np.concatenate(out, 1)


def fit_model(cfg: dict, name: str, ds: Dataset, progress=None) -> list[dict]:
    """Fit model ``name`` to every subject of ``ds``; one record per subject."""
    mspec = cfg["models"][name]
    kind, f = mspec["kind"], cfg["fit"]
    tf = Transform(mspec, cfg["bounds"])
    n, d = len(ds.subjects), len(tf.free)
    t0 = time.perf_counter()
    finalists = [[] for _ in range(n)]
    popsize = f["popsize"] or 4 + int(3 * np.log(max(d, 1)))
    if d > 0:
        for run in range(f["restarts"]):
            es, states = [], []
            for i, s in enumerate(ds.subjects):
                rng = np.random.default_rng([subject_seed(s), run, cfg["seed"]])
                y0 = tf.to_y(tf.base[tf.idx]) if run == 0 else tf.to_y(
                    tf.lo + (tf.hi - tf.lo) * rng.uniform(0.05, 0.95, d))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    es.append(cma.CMAEvolutionStrategy(
                        y0, f["step"], {"popsize": popsize, "seed": int(rng.integers(1, 2**30)),
                                        "verbose": -9, "maxiter": f["generations"]}))
                states.append(np.random.get_state())  # cma draws from numpy's global stream
            for gen in range(f["generations"]):
                ys = []
                for i, e in enumerate(es):
                    np.random.set_state(states[i])
                    ys.append(np.asarray(e.ask()) if not e.stop() else np.repeat(
                        e.mean[None], popsize, 0))
                    states[i] = np.random.get_state()
                ys = np.stack(ys)  # [N, popsize, d]
                ll = evaluate(cfg, kind, ds, tf.theta(ys), run * 10_000 + gen, popsize, search=True)
                for i, e in enumerate(es):
                    if not e.stop():
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            e.tell(list(ys[i]), list(-ll[i]))
                if progress is not None:
                    progress(name, (run * f["generations"] + gen + 1) / (f["restarts"] * f["generations"]))
            for i, e in enumerate(es):
                finalists[i] += [np.asarray(e.result.xbest, float), np.asarray(e.mean, float)]
        cand = np.stack([np.stack(c) for c in finalists])  # [N, 2 * restarts, d]
        ll = evaluate(cfg, kind, ds, tf.theta(cand), _FINALISTS)  # width 2 x restarts
        best_y = cand[np.arange(n), np.argmax(ll, axis=1)]
    else:
        best_y = np.zeros((n, 0))
    reps = evaluate(cfg, kind, ds, tf.theta(np.repeat(best_y[:, None, :], f["n_reps"], 1)),
                    _WINNER + np.arange(f["n_reps"]))  # [N, R] independent replicates
    elapsed = time.perf_counter() - t0
    out = []
    for i, s in enumerate(ds.subjects):
        r = reps[i]
        m = r.max()
        ll_hat = float(m + np.log(np.mean(np.exp(r - m))))
        se = float(np.std(r, ddof=1) / np.sqrt(len(r)))
        k, nt = d, int(ds.n_trials[i])
        rec = {"subject": s, "model": name, "kind": kind, "loglik": ll_hat, "loglik_se": se,
               "n_trials": nt, "n_missed": int(ds.n_missed[i]), "n_free": k,
               "aic": 2 * k - 2 * ll_hat, "bic": k * np.log(max(nt, 1)) - 2 * ll_hat,
               "fit_s": elapsed / n}
        rec.update({p: float(v) for p, v in zip(tf.free, tf.to_x(best_y[i]))})
        out.append(rec)
    return out


def model_totals(fits) -> dict:
    """Per model: summed log-likelihood (SE added in quadrature), AIC, BIC, and how many
    subjects each model wins by AIC and by BIC."""
    import pandas as pd

    df = pd.DataFrame(fits)
    out = {}
    win_aic = df.loc[df.groupby("subject")["aic"].idxmin(), "model"].value_counts()
    win_bic = df.loc[df.groupby("subject")["bic"].idxmin(), "model"].value_counts()
    for m, g in df.groupby("model", sort=False):
        out[m] = {"loglik": float(g["loglik"].sum()),
                  "loglik_se": float(np.sqrt((g["loglik_se"] ** 2).sum())),
                  "aic": float(g["aic"].sum()), "bic": float(g["bic"].sum()),
                  "n_subjects": int(len(g)), "wins_aic": int(win_aic.get(m, 0)),
                  "wins_bic": int(win_bic.get(m, 0))}
    return out
