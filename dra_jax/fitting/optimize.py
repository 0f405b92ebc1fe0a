"""Maximum-likelihood fits: CMA-ES (``cma``) per subject on logit-transformed parameters.

Per model, every subject runs its own CMA-ES (Hansen 2016) in ``y = logit((x - lo) / (hi - lo))``
coordinates; a generation of all subjects' populations is ONE call of
:func:`dra_jax.fitting.particle.loglik` with common random numbers (all candidates of a subject
share that generation's particle noise). ``restarts`` runs per subject (the first from the
model's start values, the others from random points of the box). The finalists (each run's
best and mean) are re-evaluated with fresh particles, the best is the winner, and the winner is
evaluated once more with fresh particles in ``n_reps`` independent replicates: the reported
log-likelihood is ``log mean_r exp(ll_r)`` (the log of the unbiased likelihood estimate), its
Monte Carlo SD (``loglik_sd``) the standard deviation of ``ll_r`` (one estimate's noise), its SE
(``loglik_se``) that over sqrt(n_reps). With
``fit.search_particles`` the search's calls use that many particles (the search only ranks
candidates of one subject under common random numbers), the finalists and the replicates
``fit.n_particles``.

Each subject's random streams (CMA-ES and particle noise) derive from its label, so its fit does
not depend on which other subjects share its batch.
"""
from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from functools import partial

import cma
import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.config import ConfigError
from dra_jax.fitting import models, particle
from dra_jax.fitting.data import Dataset, subject_seed

# stream tags of fold_in(subject key, tag): search generations, finalists, the winner's replicates
_FINALISTS, _WINNER = 1_000_003, 1_000_033


def static_for(cfg: dict, model) -> models.Static:
    """The compiled program's configuration of ``model``: a validated model spec (its kind and
    the components it lists) or a bare kind (no components)."""
    m = _spec(model)
    kind, comps = m["kind"], m.get("components", ())
    f = {**cfg["fit"], **m.get("search", {})}
    return models.Static(kind, f["n_states"], f["n_actions"], f["n_traj"], f["psi"], f["optimizer"],
                         f["sigma_min"], f["sigma_max"], f["zeta"], f["n_zeta"],
                         lapse="epsilon" in comps, stick="stick" in comps,
                         forget="forget" in comps)


def seq_static_for(cfg: dict, model):
    """The sequential task's static configuration (task ``gridworld``)."""
    from dra_jax.fitting import sequential

    return sequential.SeqStatic(static_for(cfg, model), tuple(cfg["fit"]["maze"]),
                                cfg["fit"]["max_steps"])


def _spec(model) -> dict:
    """A validated model spec, or a bare kind as a spec without components or overrides."""
    return model if isinstance(model, dict) else {"kind": model}


def stochastic(cfg: dict, model) -> bool:
    """Whether the model's latent state is random given the data (then it needs particles)."""
    kind = _spec(model)["kind"]
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
        return self.theta_at(self.to_x(y))

    def theta_at(self, x) -> np.ndarray:
        """The full theta vectors at the free parameters' natural values ``x [..., d]``."""
        x = np.asarray(x, np.float64)
        th = np.broadcast_to(self.base, x.shape[:-1] + (len(models.PARAMS),)).copy()
        th[..., self.idx] = x
        return th


def _keys(subjects, tags: np.ndarray):
    """Particle-noise keys ``[N, C]``: ``fold_in(key(subject seed), tags[c])``."""
    base = jnp.stack([jax.random.key(subject_seed(s)) for s in subjects])
    tags = jnp.asarray(tags, jnp.uint32)
    return jax.vmap(lambda k: jax.vmap(lambda t: jax.random.fold_in(k, t))(tags))(base)


def _n_particles(cfg, model, search=False):
    """Particles of a likelihood call: 1 for a deterministic model (exact); during the CMA-ES
    search ``fit.search_particles`` when set, else ``fit.n_particles``."""
    if not stochastic(cfg, model):
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


def evaluate(cfg, model, ds: Dataset, theta: np.ndarray, tags, width: int | None = None,
             search: bool = False, per_trial: bool = False):
    """Log-likelihoods ``[N, C]`` of ``theta [N, C, P]`` (``model``: a model spec or a kind;
    ``per_trial``: also each trial's log predictive probability, ``[N, C, T]``, 0 where no
    answered trial) with candidate c's particle noise from
    ``tags[c]`` (one tag for all: common random numbers). Candidates are evaluated ``width`` at a
    time (padding the last call), so every search call of a fit has the same shape and compiles
    once. Without ``width``, the finalists' width (``2 * fit.restarts``) when ``C`` is a multiple
    of it, else ``C``: the finalists are one call, and the winner's replicates (``fit.n_reps``,
    8 = 2 x 4 with 2 restarts) reuse the finalists' compiled program instead of compiling one of
    their own (not padded to the population: at 256 particles a padded column costs as much as
    a real one). A lane's numbers do not depend on its batch-mates, so the split changes none."""
    if cfg["task"] == "gridworld":
        from dra_jax.fitting import sequential

        if per_trial:
            raise NotImplementedError("per-trial output of the sequential filter")
        st, like = seq_static_for(cfg, model), sequential.loglik
        tr = sequential.SeqTrials(*(jnp.asarray(x) for x in ds.trials))
    else:
        st, like = static_for(cfg, model), particle.loglik
        tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))
        if per_trial:
            like = partial(like, per_trial=True)
    n, c = theta.shape[:2]
    tags = np.broadcast_to(np.asarray(tags), (c,))
    if not width:
        fw = 2 * _spec(model).get("search", {}).get("restarts", cfg["fit"]["restarts"])
        width = fw if c % fw == 0 else c
    out, trial_out = [], []
    for c0 in range(0, c, width):
        th, tg = theta[:, c0:c0 + width], tags[c0:c0 + width]
        pad = width - th.shape[1]
        if pad:
            th = np.concatenate([th, np.repeat(th[:, -1:], pad, 1)], 1)
            tg = np.concatenate([tg, np.repeat(tg[-1:], pad)])
        res = like(st, _n_particles(cfg, model, search), cfg["fit"]["ess_threshold"],
                   jnp.asarray(th, jnp.float32), tr, _keys(ds.subjects, tg), n_devices(cfg))
        out.append(np.asarray(res[0], np.float64)[:, :width - pad])
        if per_trial:
            trial_out.append(np.asarray(res[2], np.float64)[:, :width - pad])
    if per_trial:
        return np.concatenate(out, 1), np.concatenate(trial_out, 1)
    return np.concatenate(out, 1)


@functools.lru_cache(maxsize=32)
def _derivatives(st: models.Static):
    """Jitted exact derivatives of a deterministic model's negative log-likelihood in the
    search's logit coordinates, every lane at once: ``value_grad(y, base, idx, lo, hi, trials,
    keys) -> (nll [L], grad [L, d])`` and ``hessians(...) -> [L, d, d]`` (reverse mode through
    the filter, then one forward-mode pass per free parameter: the lanes are independent, so a
    tangent on every lane at once gives each lane's Hessian column). Cached per static
    configuration, so the EM iterations and every polish call reuse one compiled program."""

    def nll(yy, base, idx, lo, hi, tr, keys):  # [L, d] -> [L]
        th = base.at[:, idx].set(lo + (hi - lo) * jax.nn.sigmoid(yy))
        ll, _ = particle._filter(st, 1, 1.0, False, th[:, None], tr, keys)
        return -ll[:, 0]

    def total(yy, *a):  # lanes independent: the gradient of the sum is every lane's gradient
        return jnp.sum(nll(yy, *a))

    @jax.jit
    def value_grad(yy, *a):
        return nll(yy, *a), jax.grad(total)(yy, *a)

    @jax.jit
    def hessians(yy, *a):
        n, d = yy.shape
        tangents = jnp.broadcast_to(jnp.eye(d, dtype=yy.dtype)[:, None, :], (d, n, d))
        _, lin = jax.linearize(lambda z: jax.grad(total)(z, *a), yy)
        return jax.vmap(lin, out_axes=-1)(tangents)

    return value_grad, hessians


class Derivatives:
    """The exact value, gradient and Hessian of a deterministic model's negative log-likelihood
    in logit coordinates for the lanes of ``ds`` (``base [L, P]``: each lane's theta, its fixed
    values), in float64 numpy. ``prior = (mean [d], precision [d, d])`` adds the Gaussian
    penalty ``0.5 (y - mean)' precision (y - mean)`` (a MAP objective; hierarchical EM)."""

    def __init__(self, cfg: dict, mspec: dict, ds: Dataset, tf: Transform, base: np.ndarray,
                 prior=None):
        self._vg, self._h = _derivatives(static_for(cfg, mspec))
        self._args = (jnp.asarray(base, jnp.float32), jnp.asarray(tf.idx),
                      jnp.asarray(tf.lo, jnp.float32), jnp.asarray(tf.hi, jnp.float32),
                      particle.Trials(*(jnp.asarray(x) for x in ds.trials)),
                      _keys(ds.subjects, np.array([_FINALISTS])))
        self.prior = None if prior is None else (np.asarray(prior[0], np.float64),
                                                 np.asarray(prior[1], np.float64))

    def _call(self, fn, y):
        with jax.threefry_partitionable(False):
            return fn(jnp.asarray(y, jnp.float32), *self._args)

    def value_grad(self, y):
        f, g = (np.asarray(x, np.float64) for x in self._call(self._vg, y))
        if self.prior is not None:
            dy = y - self.prior[0]
            pg = dy @ self.prior[1]
            f, g = f + 0.5 * np.einsum("li,li->l", dy, pg), g + pg
        return f, g

    def hessian(self, y, penalty: bool = True):
        h = np.asarray(self._call(self._h, y), np.float64)
        h = 0.5 * (h + np.swapaxes(h, 1, 2))
        if penalty and self.prior is not None:
            h = h + self.prior[1][None]
        return h


def polish(cfg: dict, mspec: dict, ds: Dataset, tf: Transform, base: np.ndarray, y: np.ndarray,
           iters: int = 40, tol: float = 1e-4) -> np.ndarray:
    """Quasi-Newton refinement in the search's logit coordinates from ``y [L, d]``, every lane
    at once, for a model whose likelihood is a deterministic, smooth function of its parameters
    (one particle is exact: ``qlearn``, ``lam0``, ``rlwm`` on the stimulus-response task): the
    role fmincon plays in the published fits (:func:`minimize` of the negative
    log-likelihood). ``base [L, P]``: each lane's theta (its fixed values). Returns the
    polished ``y``."""
    return minimize(Derivatives(cfg, mspec, ds, tf, base), y, iters, tol)[0]


def minimize(dv: Derivatives, y: np.ndarray, iters: int = 40, tol: float = 1e-4, h0=None):
    """BFGS on the objective of ``dv`` (:class:`Derivatives`, with its prior if it has one)
    from ``y [L, d]``, every lane at once. Each lane starts from its exact Hessian, or from
    ``h0 [L, d, d]`` (a warm start: the last EM iteration's), made positive definite, then
    takes BFGS steps (Nocedal & Wright 2006, Alg. 6.1) with one value-and-gradient call per
    iteration for all lanes. A step is kept only where it lowers the lane's objective (else it
    is halved), so the result is never worse than ``y``. A lane stops when a kept step gains
    less than ``tol`` nats, when its predicted gain ``g' H^-1 g / 2`` is below ``tol``, or
    after 8 halvings. A lane whose starting Hessian is not finite starts from the identity; one
    whose value or gradient is not finite keeps its point. Returns ``(y, objective [L])``."""
    n, d = y.shape
    y = np.clip(np.asarray(y, np.float64), -_Y_MAX, _Y_MAX)
    f, g = dv.value_grad(y)
    h = dv.hessian(y) if h0 is None else np.asarray(h0, np.float64)
    finite = np.isfinite(f) & np.isfinite(g).all(1)
    # a lane whose Hessian is not finite (float32 second derivatives can overflow where the
    # value and gradient do not) starts BFGS from the identity instead of standing still
    h = np.where((finite & np.isfinite(h).all((1, 2)))[:, None, None], h, np.eye(d))
    g = np.where(finite[:, None], g, 0.0)
    w, v = np.linalg.eigh(h)
    inv = np.einsum("lij,lj,lkj->lik", v, 1.0 / np.maximum(np.abs(w), 1e-2), v)  # [L, d, d]
    step = np.ones(n)
    active = finite.copy()  # a lane whose value or gradient is not finite keeps its point
    for _ in range(iters):
        dirn = -np.einsum("lij,lj->li", inv, g)
        # a lane whose predicted gain (half the squared Newton decrement) is below tol is done:
        # at its optimum to the float32 objective's precision every step would be rejected
        active &= -0.5 * np.einsum("li,li->l", g, dirn) >= tol
        if not active.any():
            break
        y_new = np.clip(y + step[:, None] * dirn, -_Y_MAX, _Y_MAX)
        f_new, g_new = dv.value_grad(y_new)
        ok = active & (f_new < f) & np.isfinite(g_new).all(1)
        # BFGS update of the inverse Hessian where a step was kept and curvature is positive
        sv, yv = y_new - y, g_new - g
        sy = np.einsum("li,li->l", sv, yv)
        upd = ok & (sy > 1e-10)
        rho = np.where(upd, 1.0 / np.where(upd, sy, 1.0), 0.0)
        eye = np.eye(d)[None]
        left = eye - rho[:, None, None] * np.einsum("li,lj->lij", sv, yv)
        new_inv = np.einsum("lij,ljk,lmk->lim", left, inv, left) + \
            rho[:, None, None] * np.einsum("li,lj->lij", sv, sv)
        inv = np.where(upd[:, None, None], new_inv, inv)
        active &= ~(ok & (f - f_new < tol))
        y, f, g = (np.where(ok[:, None], y_new, y), np.where(ok, f_new, f),
                   np.where(ok[:, None], g_new, g))
        step = np.where(ok, 1.0, step * 0.5)
        active &= step > 2.0 ** -8
        if not active.any():
            break
    return y, f


_Y_MAX = 12.0  # |logit| cap of a polished parameter (within 6e-6 of its box's edge)


def _profile(mspec: dict, bounds: dict) -> list[int]:
    """The integer capacities a model's fit profiles (one search each; the best is kept):
    ``bounds.capacity`` when ``capacity`` is free, else none."""
    if "capacity" not in mspec["free"]:
        return []
    lo, hi = {**bounds, **mspec.get("bounds", {})}["capacity"]
    return list(range(int(lo), int(hi) + 1))


def _tile(ds: Dataset, k: int) -> Dataset:
    """``ds`` with its subjects repeated ``k`` times (one lane per subject x profiled value;
    a lane keeps its subject's label, so its random streams are the subject's own)."""
    if k == 1:
        return ds
    return _take(ds, np.tile(np.arange(len(ds.subjects)), k))


def _take(ds: Dataset, idx: np.ndarray) -> Dataset:
    """The lanes ``idx`` of ``ds``, in that order, repeats allowed (a lane keeps its subject's
    label, so its random streams are its own whatever its batch-mates)."""
    return dataclasses.replace(ds, subjects=[ds.subjects[i] for i in idx],
                               trials=type(ds.trials)(*(x[idx] for x in ds.trials)),
                               n_trials=ds.n_trials[idx], n_missed=ds.n_missed[idx])


def fit_model(cfg: dict, name: str, ds: Dataset, progress=None, trials_out: list | None = None
              ) -> list[dict]:
    """Fit model ``name`` to every subject of ``ds``; one record per subject. A free integer
    ``capacity`` is profiled: one continuous search per value of its box, all values' searches
    batched as lanes of the same calls, and each subject's best value kept. ``trials_out``:
    a list that receives the winning fit's per-trial table (:func:`_trial_table`)."""
    mspec = cfg["models"][name]
    kind, f = mspec["kind"], {**cfg["fit"], **mspec.get("search", {})}
    prof = _profile(mspec, cfg["bounds"])
    free = [p for p in mspec["free"] if p != "capacity"]
    tf = Transform({**mspec, "free": free}, cfg["bounds"])
    n, d = len(ds.subjects), len(tf.free)
    lanes = _tile(ds, max(len(prof), 1))
    cap = np.repeat(np.asarray(prof, float), n) if prof else None  # [L] per lane

    def thetas(y):
        th = tf.theta(y)
        if cap is not None:
            th[..., models.CAPACITY] = cap.reshape((-1,) + (1,) * (th.ndim - 2))
        return th

    t0 = time.perf_counter()
    nl = len(lanes.subjects)
    finalists = [[] for _ in range(nl)]
    popsize = f["popsize"] or 4 + int(3 * np.log(max(d, 1)))
    if d > 0:
        for run in range(f["restarts"]):
            es, states = [], []
            for s in lanes.subjects:
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
                ys = np.stack(ys)  # [L, popsize, d]
                ll = evaluate(cfg, mspec, lanes, thetas(ys), run * 10_000 + gen, popsize,
                              search=True)
                for i, e in enumerate(es):
                    if not e.stop():
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            e.tell(list(ys[i]), list(-ll[i]))
                if progress is not None:
                    progress(name, (run * f["generations"] + gen + 1) / (f["restarts"] * f["generations"]))
            for i, e in enumerate(es):
                finalists[i] += [np.asarray(e.result.xbest, float), np.asarray(e.mean, float)]
        cand = np.stack([np.stack(c) for c in finalists])  # [L, 2 * restarts, d]
        ll = evaluate(cfg, mspec, lanes, thetas(cand), _FINALISTS)  # width 2 x restarts
        best_y = cand[np.arange(nl), np.argmax(ll, axis=1)]
        if f["polish"] and cfg["task"] == "stimulus_response" and not stochastic(cfg, mspec):
            best_y = polish(cfg, mspec, lanes, tf, thetas(best_y), best_y)
            if prof:  # each capacity lane again from its subject's best lane (continuation)
                ll = evaluate(cfg, mspec, lanes, thetas(best_y[:, None]), _FINALISTS)[:, 0]
                top = np.argmax(ll.reshape(-1, n), 0) * n + np.arange(n)
                seed = best_y[np.tile(top, len(prof))]
                alt = polish(cfg, mspec, lanes, tf, thetas(seed), seed)
                ll2 = evaluate(cfg, mspec, lanes, thetas(alt[:, None]), _FINALISTS)[:, 0]
                best_y = np.where((ll2 > ll)[:, None], alt, best_y)
    else:
        best_y = np.zeros((nl, 0))
    pt = cfg["task"] != "gridworld"  # the stimulus-response filter reports per-trial terms
    res = evaluate(cfg, mspec, lanes, thetas(np.repeat(best_y[:, None, :], f["n_reps"], 1)),
                   _WINNER + np.arange(f["n_reps"]), per_trial=pt)  # [L, R] replicates
    reps, per_trial = res if pt else (res, None)
    m = reps.max(1, keepdims=True)
    ll_hat = (m + np.log(np.mean(np.exp(reps - m), 1, keepdims=True)))[:, 0]  # [L]
    win = np.argmax(ll_hat.reshape(-1, n), 0) * n + np.arange(n)  # each subject's best lane
    elapsed = time.perf_counter() - t0
    out = []
    k = d + (1 if prof else 0)
    for i, s in enumerate(ds.subjects):
        j = win[i]
        r = reps[j]
        se = float(np.std(r, ddof=1) / np.sqrt(len(r)))
        nt = int(ds.n_trials[i])
        rec = {"subject": s, "model": name, "kind": kind, "loglik": float(ll_hat[j]),
               "loglik_se": se, "loglik_sd": float(np.std(r, ddof=1)),
               "n_trials": nt, "n_missed": int(ds.n_missed[i]), "n_free": k,
               "aic": 2 * k - 2 * ll_hat[j], "bic": k * np.log(max(nt, 1)) - 2 * ll_hat[j],
               "fit_s": elapsed / n}
        rec.update({p: float(v) for p, v in zip(tf.free, tf.to_x(best_y[j]))})
        if prof:
            rec["capacity"] = int(cap[j])
        out.append(rec)
    if trials_out is not None and per_trial is not None:
        trials_out.append(_trial_table(ds, name, per_trial[win]))
    return out


def _trial_table(ds: Dataset, name: str, per_trial: np.ndarray):
    """The winning fit's trials (``subject, model, block, trial, p_chosen, loglik``): each
    answered trial's log predictive probability, averaged over the winner's replicates
    (``per_trial [N, R, T]``; a deterministic model's replicates are equal, and its
    ``p_chosen`` is exact), and ``p_chosen = exp(loglik)``."""
    import pandas as pd

    lt = per_trial.mean(1)  # [N, T]
    groups = dict(tuple(ds.df.groupby("subject", sort=False)))
    rows = []
    for i, sid in enumerate(ds.subjects):
        g = groups[sid]
        ans = g["action"].to_numpy() >= 0
        ll = lt[i, :len(g)][ans]
        rows.append(pd.DataFrame({"subject": sid, "model": name, "block": g["block"].to_numpy()[ans],
                                  "trial": g["trial"].to_numpy()[ans], "p_chosen": np.exp(ll),
                                  "loglik": ll}))
    return pd.concat(rows, ignore_index=True)


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
