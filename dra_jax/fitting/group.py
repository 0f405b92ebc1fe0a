"""Hierarchical EM: a Gaussian group prior over each model's free parameters, fitted by
expectation-maximization with Laplace E-steps (Huys et al. 2011, the scheme of emfit).

Coordinates: the search's own, ``y = logit((x - lo) / (hi - lo))`` for every free parameter
(:class:`dra_jax.fitting.optimize.Transform`), in which the prior is ``N(mu, Sigma)``
(``[group] covariance = "diag"`` or ``"full"``). Subject i's data ``D_i``:

* **E-step.** Each subject's MAP ``m_i = argmax_y log p(D_i | y) + log N(y; mu, Sigma)``, warm
  started from the last iteration, and the Laplace covariance ``S_i = (H_i + Sigma^-1)^-1``
  with ``H_i`` the Hessian of ``-log p(D_i | y)`` at ``m_i``.

  - A deterministic model (``qlearn``, ``lam0``, ``rlwm``: one particle is the exact
    likelihood) is refined by the batched BFGS of :func:`~dra_jax.fitting.optimize.minimize`
    with the prior's penalty, and its Hessian is exact (JAX).
  - A stochastic model (``dra``) runs ``group.generations`` CMA-ES generations per subject
    from the last MAP under common random numbers (one noise key per subject for all
    candidates and iterations: the penalized objective is one fixed function of y, and a
    candidate replaces the last MAP only if it is better on it). Its Hessian is taken by
    central finite differences under the same keys. At a lane's first Hessian the step of
    coordinate j starts at ``group.fd_step`` and is doubled (at most 4 times) while the second
    difference taken with a second, independent key set disagrees with the first by more than
    half their mean (the step is then below the Monte Carlo noise); the lane keeps these steps.
    Its Hessian is estimated again only when its MAP has moved by more than
    ``group.hessian_reuse`` times a step in some coordinate (under common random numbers the
    same point gives the same Hessian, and a move well inside the stencil changes the estimate
    by less than its own error); the final E-step re-estimates every lane that moved at all,
    so the reported Laplace quantities are those of the reported MAP. Only the lanes being
    estimated are evaluated (a call padded to a power of two of lanes).
  - ``H_i + Sigma^-1`` is made positive definite by flooring its eigenvalues at the prior
    precision's smallest one (a lane whose search stopped short of a local optimum; counted).
  - A free integer ``capacity`` (``rlwm``) is not in the Gaussian prior: it has a flat prior
    over its box, every value is its own lane (as in the maximum-likelihood profile), and the
    subject's posterior over capacity is ``w_K ∝ exp(Laplace evidence_K)``. ``m_i`` and ``S_i``
    are then the moments of that Gaussian mixture.

* **M-step.** ``mu = mean_i m_i`` and ``Sigma = mean_i (S_i + m_i m_i') - mu mu'`` (its diagonal
  with ``diag``; every SD floored at 0.01).

* **Convergence.** EM stops when no group mean or SD moves by more than ``group.tol`` in an
  iteration, or after ``group.max_iter`` iterations; both, and whether it converged, are
  reported (a fit that hit the cap is flagged ``converged = False``, never reported as
  converged).

Outputs per subject: its MAP (natural units), a Laplace SE per parameter (delta method
through the transform, ``se_x = |dx/dy| sqrt(S_ii)``), ``at_bound`` (a MAP within 0.1% of
the box's width of an edge), and the log model evidence, the Laplace approximation of the
prior-integrated likelihood,

    log p(D_i) ≈ log p(D_i | m_i) + log N(m_i; mu, Sigma) + d/2 log 2 pi - 1/2 log det(H_i + Sigma^-1)

(for ``capacity``: ``log mean_K exp(.)`` over its values). Per model, the integrated BIC
(Huys et al. 2011): ``iBIC = -2 sum_i log mean_k p(D_i | y_k) + n_hyper log(n_trials)`` with
``y_k ~ N(mu, Sigma)``, ``k = 1..group.n_ibic`` (the same draws for every subject) and
``n_hyper`` the group parameters (2d with ``diag``, d + d(d+1)/2 with ``full``); a stochastic
model's ``p(D_i | y_k)`` is estimated with ``fit.search_particles`` particles.

The stochastic models' log-likelihoods at the MAP are the ``fit.n_reps`` replicates' ``log
mean exp`` as in the maximum-likelihood fit, with their Monte Carlo SE (``loglik_se``), which
:func:`dra_jax.fitting.selection.bms_spread` propagates into the model selection.
"""
from __future__ import annotations

import time
import warnings

import cma
import numpy as np
from scipy.special import logsumexp

from dra_jax.config import ConfigError
from dra_jax.fitting import models, optimize
from dra_jax.fitting.data import Dataset, subject_seed

# stream tags of the EM's particle noise (distinct from the maximum-likelihood fit's)
_SEARCH, _HESS_A, _HESS_B, _REPS, _IBIC = 2_000_003, 2_000_033, 2_000_063, 2_001_000, 2_100_000
_SD_FLOOR = 0.01  # logit units


def check(cfg: dict, n_subjects: int) -> None:
    """EM's preconditions, before any work: enough subjects."""
    g = cfg["group"]
    if g["method"] == "em" and n_subjects < g["min_subjects"]:
        raise ConfigError("group.method", f"em needs at least group.min_subjects = "
                                          f"{g['min_subjects']} subjects; the data have "
                                          f"{n_subjects}")


class _Model:
    """A model's lanes (subject x profiled capacity), transform and theta builder."""

    def __init__(self, cfg: dict, name: str, ds: Dataset):
        self.cfg, self.name, self.ds = cfg, name, ds
        self.mspec = cfg["models"][name]
        self.prof = optimize._profile(self.mspec, cfg["bounds"])
        free = [p for p in self.mspec["free"] if p != "capacity"]
        self.tf = optimize.Transform({**self.mspec, "free": free}, cfg["bounds"])
        self.n, self.d = len(ds.subjects), len(free)
        self.nk = max(len(self.prof), 1)
        self.lanes = optimize._tile(ds, self.nk)
        self.cap = np.repeat(np.asarray(self.prof, float), self.n) if self.prof else None
        self.stochastic = optimize.stochastic(cfg, self.mspec)

    def thetas(self, y, cap=None):
        """theta of ``y [L, ..., d]``; ``cap``: a capacity per lane/candidate, else the lanes'."""
        th = self.tf.theta(y)
        c = self.cap if cap is None else cap
        if c is not None:
            c = np.asarray(c, float)
            th[..., models.CAPACITY] = c.reshape(c.shape + (1,) * (th.ndim - 1 - c.ndim))
        return th


def _prior_terms(cov):
    prec = np.linalg.inv(cov)
    return prec, np.linalg.slogdet(cov)[1]


def _penalty(y, mu, prec):
    dy = y - mu
    return 0.5 * np.einsum("...i,ij,...j->...", dy, prec, dy)


def _floored_inverse(a: np.ndarray, floor: float):
    """The inverse of ``a [L, d, d]`` with its eigenvalues floored at ``floor``, the floored
    eigenvalues, and which lanes needed the floor."""
    w, v = np.linalg.eigh(a)
    low = (w < floor).any(1)
    w = np.maximum(w, floor)
    return np.einsum("lij,lj,lkj->lik", v, 1.0 / w, v), w, low


# -- E-steps ----------------------------------------------------------------------------------

def _estep_exact(mo: _Model, y, mu, prec, state: dict):
    """Deterministic model: MAP by penalized BFGS (started from the last iteration's point and
    exact Hessian), then the exact Hessian at the MAP. Returns (y, nll, H)."""
    if "dv" not in state:  # the lanes' trials, keys and fixed values: the same every iteration
        state["dv"] = optimize.Derivatives(mo.cfg, mo.mspec, mo.lanes, mo.tf, mo.thetas(y))
    dv = state["dv"]
    dv.prior = (mu, prec)
    h0 = state["h"] + prec[None] if "h" in state else None
    y, obj = optimize.minimize(dv, y, h0=h0)
    h = dv.hessian(y, penalty=False)
    # the exact Hessian can be NaN where the likelihood is finite (float32 second derivatives
    # through saturated choice probabilities: lam0 at beta near its bound on the RLWM data);
    # those lanes take the central-difference Hessian of the same exact likelihood, counted
    bad = ~np.isfinite(h).all((1, 2))
    if bad.any():
        idx = np.flatnonzero(bad)
        h[idx] = _fd_hessian(mo, y[idx], idx)[0]
    state["n_fd_hessian"] = int(bad.sum())
    state["h"] = h
    return y, obj - _penalty(y, mu, prec), h


def _bucket(k: int, n: int) -> int:
    """Lanes a call on ``k`` of ``n`` lanes is padded to: the next power of two from 8, at most
    ``n`` (a handful of compiled shapes instead of one per count)."""
    b = 8
    while b < k:
        b *= 2
    return min(b, n)


def _nll_crn(mo: _Model, y, tag, particles_cfg, lanes=None):
    """-log-likelihood estimates ``[L, C]`` of ``y [L, C, d]``, every candidate of a lane under
    its subject's noise of ``tag`` (common random numbers). ``lanes``: ``y`` holds only these
    lanes (indices into ``mo.lanes``), evaluated as a call padded to :func:`_bucket`."""
    n_all = len(mo.lanes.subjects)
    if lanes is None or len(lanes) == n_all:
        ds, th = mo.lanes, mo.thetas(y)
    else:
        lanes = np.asarray(lanes)
        k = len(lanes)
        idx = np.concatenate([lanes, np.repeat(lanes[-1:], _bucket(k, n_all) - k)])
        yp = np.concatenate([y, np.repeat(y[-1:], len(idx) - k, 0)])
        ds = optimize._take(mo.lanes, idx)
        th = mo.thetas(yp, None if mo.cap is None else mo.cap[idx])
    out = -optimize.evaluate(particles_cfg, mo.mspec, ds, th, tag, width=y.shape[1])
    return out[:len(y)]


def _estep_cma(mo: _Model, y, mu, prec, it: int, state: dict, final: bool = False):
    """Stochastic model: warm CMA-ES on the penalized objective under common random numbers,
    then the best of (last MAP, CMA-ES's best, its mean) on the n_particles estimate."""
    cfg, g = mo.cfg, mo.cfg["group"]
    f = {**cfg["fit"], **mo.mspec.get("search", {})}
    d = mo.d
    popsize = f["popsize"] or 4 + int(3 * np.log(max(d, 1)))
    search_cfg = {**cfg, "fit": {**cfg["fit"], "n_particles": f["search_particles"]
                                 or f["n_particles"]}}
    sd0 = state.get("sd", np.full(len(y), 0.3))
    es = []
    for i, s in enumerate(mo.lanes.subjects):
        rng = np.random.default_rng([subject_seed(s), it, cfg["seed"], 7])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es.append(cma.CMAEvolutionStrategy(
                y[i], float(np.clip(sd0[i], 0.05, 1.0)),
                {"popsize": popsize, "seed": int(rng.integers(1, 2**30)), "verbose": -9,
                 "maxiter": g["generations"], "bounds": [-optimize._Y_MAX, optimize._Y_MAX]}))
    npst = np.random.get_state()
    np.random.seed(int(np.random.default_rng([cfg["seed"], it, 11]).integers(1, 2**31)))
    for _ in range(g["generations"]):
        ys = np.stack([np.asarray(e.ask()) if not e.stop() else np.repeat(e.mean[None], popsize, 0)
                       for e in es])
        obj = _nll_crn(mo, ys, _SEARCH, search_cfg) + _penalty(ys, mu, prec)
        for i, e in enumerate(es):
            if not e.stop():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e.tell(list(ys[i]), list(obj[i]))
    np.random.set_state(npst)
    cand = np.stack([y, np.stack([np.asarray(e.result.xbest, float) for e in es]),
                     np.stack([np.asarray(e.mean, float) for e in es])], 1)  # [L, 3, d]
    obj = _nll_crn(mo, cand, _HESS_A, cfg) + _penalty(cand, mu, prec)
    rows = np.arange(len(y))
    best = np.argmin(obj, 1)
    y = cand[rows, best]
    nll = obj[rows, best] - _penalty(y, mu, prec)  # the n_particles estimate under key set A
    if "hess" not in state:  # a lane's first Hessian: its steps are found (noise check)
        h, _, steps, n_grown = _fd_hessian(mo, y)
        state.update(hess=h, hess_y=y.copy(), fd_steps=steps, fd_grown=n_grown)
        refresh = rows
    else:  # re-estimated where the MAP moved by more than hessian_reuse x the lane's steps
        tol = 0.0 if final else g["hessian_reuse"]
        refresh = np.flatnonzero((np.abs(y - state["hess_y"]) > tol * state["fd_steps"]).any(1))
        if len(refresh):
            state["hess"][refresh] = _fd_hessian(mo, y[refresh], refresh,
                                                 state["fd_steps"][refresh], check=False)[0]
            state["hess_y"][refresh] = y[refresh]
    state["n_hessian_refreshed"] = int(len(refresh))
    return y, nll, state["hess"].copy()


def _fd_hessian(mo: _Model, y, lanes=None, steps=None, check: bool = True):
    """Central finite-difference Hessian of the -log-likelihood estimate at ``y [K, d]`` (the
    lanes ``lanes`` of ``mo.lanes``, all by default) under common random numbers (key set A),
    from the steps ``steps [K, d]`` (default ``group.fd_step``). With ``check`` (a stochastic
    model's first Hessian of a lane), each coordinate's step is doubled (at most 4 times) while
    the diagonal second difference under an independent key set B disagrees with A's by more
    than half their mean magnitude; only the lanes with a coordinate still too noisy are
    evaluated again. Returns (H [K, d, d], nll at y [K], the steps [K, d], how many lanes x
    coordinates had their step grown)."""
    cfg, d, n = mo.cfg, mo.d, len(y)
    lanes = np.arange(len(mo.lanes.subjects)) if lanes is None else np.asarray(lanes)
    h = np.full((n, d), cfg["group"]["fd_step"]) if steps is None else np.array(steps, float)
    eye = np.eye(d)

    def stencil(r):  # [k, 1 + 2d, d]: the point, +h_j, -h_j
        return np.concatenate([y[r, None], y[r, None] + h[r, :, None] * eye[None],
                               y[r, None] - h[r, :, None] * eye[None]], 1)

    def second(f, r):
        return (f[r, 1:d + 1] + f[r, d + 1:] - 2 * f[r, :1]) / h[r] ** 2

    every = np.arange(n)
    fa = _nll_crn(mo, stencil(every), _HESS_A, cfg, lanes)
    grown = np.zeros((n, d), bool)
    if check and mo.stochastic:  # a deterministic model is exact under any key: no noise
        fb = _nll_crn(mo, stencil(every), _HESS_B, cfg, lanes)
        for _ in range(4):
            da, db = second(fa, every), second(fb, every)
            noisy = np.abs(da - db) > 0.5 * np.abs(0.5 * (da + db))
            r = np.flatnonzero(noisy.any(1))
            if not len(r):
                break
            h[r] = np.where(noisy[r], 2 * h[r], h[r])
            grown[r] |= noisy[r]
            fa[r] = _nll_crn(mo, stencil(r), _HESS_A, cfg, lanes[r])
            fb[r] = _nll_crn(mo, stencil(r), _HESS_B, cfg, lanes[r])
    hess = np.zeros((n, d, d))
    hess[:, np.arange(d), np.arange(d)] = second(fa, every)
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    if pairs:
        pp = []
        for i, j in pairs:
            step = h[:, i, None] * eye[i] + h[:, j, None] * eye[j]
            pp += [y + step, y - step]
        fp = _nll_crn(mo, np.stack(pp, 1), _HESS_A, cfg, lanes)
        f0, fplus, fminus = fa[:, 0], fa[:, 1:d + 1], fa[:, d + 1:]
        for k, (i, j) in enumerate(pairs):
            # f(+i+j) + f(-i-j) - f(+i) - f(-i) - f(+j) - f(-j) + 2 f(0) = 2 h_i h_j H_ij + O(h^4)
            v = (fp[:, 2 * k] + fp[:, 2 * k + 1] - fplus[:, i] - fminus[:, i] - fplus[:, j]
                 - fminus[:, j] + 2 * f0) / (2 * h[:, i] * h[:, j])
            hess[:, i, j] = hess[:, j, i] = v
    return hess, fa[:, 0], h, int(grown.sum())


# -- the EM -----------------------------------------------------------------------------------

def _floor_sd(cov):
    """``cov`` with every SD floored at ``_SD_FLOOR`` (the off-diagonal entries kept)."""
    sd = np.sqrt(np.maximum(np.diag(cov), _SD_FLOOR ** 2))
    return cov + np.diag(sd ** 2 - np.diag(cov))


def _mstep(m, s, covariance: str):
    """The group prior from the subjects' posterior means ``m [n, d]`` and covariances
    ``s [n, d, d]``: ``mu = mean m``, ``Sigma = mean (S + m m') - mu mu'`` (its diagonal with
    ``diag``), every SD floored at ``_SD_FLOOR``."""
    mu = m.mean(0)
    cov = (s + np.einsum("ni,nj->nij", m, m)).mean(0) - np.outer(mu, mu)
    if covariance == "diag":
        cov = np.diag(np.diag(cov))
    return mu, _floor_sd(cov)


def _plain_em(em_map, mu, cov, g):
    """EM iterations until the change is below ``group.tol`` or ``group.max_iter`` of them.
    Returns (mu, cov, converged)."""
    for _ in range(g["max_iter"]):
        mu, cov, _, change = em_map(mu, cov, "em")
        if change < g["tol"]:
            return mu, cov, True
    return mu, cov, False


def _vec(mu, cov, covariance: str):
    """The prior as one vector: ``(mu, log sd)`` with ``diag``, ``(mu, upper triangle of
    Sigma)`` with ``full``."""
    if covariance == "diag":
        return np.concatenate([mu, 0.5 * np.log(np.diag(cov))])
    return np.concatenate([mu, cov[np.triu_indices(len(mu))]])


def _unvec(t, d: int, covariance: str):
    """The inverse of :func:`_vec`, SDs floored at ``_SD_FLOOR``; None if a full covariance is
    not positive definite."""
    mu = t[:d]
    if covariance == "diag":
        return mu, np.diag(np.maximum(np.exp(2 * t[d:]), _SD_FLOOR ** 2))
    cov = np.zeros((d, d))
    cov[np.triu_indices(d)] = t[d:]
    cov = cov + np.triu(cov, 1).T
    if np.linalg.eigvalsh(cov).min() <= 0:
        return None
    return mu, _floor_sd(cov)


def _squarem(em_map, mu, cov, g):
    """SQUAREM (Varadhan & Roland 2008, scheme S3 with the stabilizing EM step and the adaptive
    step bound of their software) on the EM map ``F`` of the group prior, in the coordinates of
    :func:`_vec`. A cycle from ``t0``: ``t1 = F(t0)``, ``t2 = F(t1)``, ``r = t1 - t0``,
    ``v = t2 - 2 t1 + t0``, ``a = -|r| / |v|`` clipped to ``[-step_max, -1]`` (``a = -1`` is
    ``t2`` itself), ``t' = t0 - 2 a r + a^2 v``; then ``F(t')`` is the next ``t0`` if the EM
    residual at ``t'`` (the change ``F`` makes there) is at most the one at ``t1``, else ``t2``
    is (the plain EM path, and ``step_max`` shrinks 4-fold). ``step_max`` starts at 1 and grows
    4-fold after a cycle whose step was at the bound and not rejected.

    The safeguard is the residual, not the summed Laplace evidence: the Laplace EM's fixed point
    (what plain EM converges to, and what is reported) is not the maximum of that evidence,
    which ignores how each subject's Hessian moves with its MAP, and on the real data the
    evidence falls along plain EM's own path. Convergence is the plain EM's rule at whichever
    point an E-step was taken (the EM map moves the prior by less than ``group.tol`` there), and
    every E-step counts towards ``group.max_iter``. Returns (mu, cov, converged)."""
    d, kind, tol = len(mu), g["covariance"], g["tol"]
    step_max, left = 1.0, g["max_iter"]
    while left > 0:
        t0 = _vec(mu, cov, kind)
        m1, c1, _, change = em_map(mu, cov, "em")
        left -= 1
        if change < tol or left == 0:
            return m1, c1, change < tol
        m2, c2, _, change = em_map(m1, c1, "em")
        r1 = change  # the EM residual at t1
        left -= 1
        if change < tol or left == 0:
            return m2, c2, change < tol
        t1, t2 = _vec(m1, c1, kind), _vec(m2, c2, kind)
        r, v = t1 - t0, t2 - 2 * t1 + t0
        nv = np.linalg.norm(v)
        a = -np.linalg.norm(r) / nv if nv > 0 else -1.0
        a = float(np.clip(a, -step_max, -1.0))
        at_bound = a == -step_max
        prior = _unvec(t0 - 2 * a * r + a * a * v, d, kind) if a < -1.0 else None
        if prior is None:  # no step beyond the plain path
            step_max *= 4.0 if at_bound else 1.0
            mu, cov = m2, c2
            continue
        m3, c3, _, change = em_map(*prior, "extrapolated")
        left -= 1
        if change <= r1:
            step_max *= 4.0 if at_bound else 1.0
            if change < tol:
                return m3, c3, True
            mu, cov = m3, c3
        else:
            step_max = max(1.0, step_max / 4.0)
            mu, cov = m2, c2
    return mu, cov, False


def _y_of(mo: _Model, ml: list[dict]) -> np.ndarray:
    """Each lane's start: its subject's maximum-likelihood point in logit coordinates."""
    by = {r["subject"]: r for r in ml}
    x = np.array([[by[s][p] for p in mo.tf.free] for s in mo.ds.subjects], float)
    u = np.clip((x - mo.tf.lo) / (mo.tf.hi - mo.tf.lo), 1e-9, 1 - 1e-9)
    y = np.clip(np.log(u / (1 - u)), -optimize._Y_MAX, optimize._Y_MAX)
    return np.tile(y, (mo.nk, 1))


def _moments(mo: _Model, y, cov_lane, logev_lane):
    """Per subject: log evidence (flat over capacity), capacity weights, mixture moments."""
    n, nk, d = mo.n, mo.nk, mo.d
    le = logev_lane.reshape(nk, n)
    logev = logsumexp(le, 0) - np.log(nk)
    w = np.exp(le - logsumexp(le, 0))  # [nk, n]
    yk = y.reshape(nk, n, d)
    ck = cov_lane.reshape(nk, n, d, d)
    m = np.einsum("kn,kni->ni", w, yk)
    second = np.einsum("kn,knij->nij", w, ck + np.einsum("kni,knj->knij", yk, yk))
    s = second - np.einsum("ni,nj->nij", m, m)
    return logev, w, m, s


def _estep(mo: _Model, y, mu, cov, it: int, state: dict, final: bool = False):
    """One E-step under the prior ``N(mu, cov)``: each lane's MAP, its -log-likelihood there,
    its Laplace covariance, the rest of its Laplace log evidence (prior density at the MAP and
    the log-determinant terms; add the log-likelihood), and how many lanes' curvature needed
    the positive-definite floor."""
    prec, logdet_cov = _prior_terms(cov)
    if mo.stochastic:
        y, nll, h = _estep_cma(mo, y, mu, prec, it, state, final)
    else:
        y, nll, h = _estep_exact(mo, y, mu, prec, state)
    cov_lane, w_a, low = _floored_inverse(h + prec[None], float(np.linalg.eigvalsh(prec).min()))
    rest = -_penalty(y, mu, prec) - 0.5 * logdet_cov - 0.5 * np.log(w_a).sum(1)
    return y, nll, cov_lane, rest, int(low.sum())


def fit_group(cfg: dict, name: str, ds: Dataset, ml: list[dict], progress=None) -> dict:
    """Hierarchical EM of model ``name`` over the subjects of ``ds``, started from their
    maximum-likelihood fits ``ml`` (records of :func:`~dra_jax.fitting.optimize.fit_model`).
    Returns ``{"fits": records (MAP), "group": rows of group.csv, "em": diagnostics}``."""
    g = cfg["group"]
    check(cfg, len(ds.subjects))
    t0 = time.perf_counter()
    mo = _Model(cfg, name, ds)
    d = mo.d
    if d == 0:
        raise ConfigError(f"models.{name}", "hierarchical EM needs at least one continuous "
                                            "free parameter")
    y = _y_of(mo, ml)
    y_sub = y[:mo.n]
    mu = y_sub.mean(0)
    var = np.maximum(y_sub.var(0), 1.0)  # broad start: at least unit variance
    cov = np.diag(var)
    history, state, box = [], {}, {"y": y}

    def em_map(mu, cov, kind):
        """One EM iteration from the prior (mu, cov): E-step, M-step. Returns the new prior,
        the summed Laplace log evidence under (mu, cov) and the change."""
        it = len(history)
        y, nll, cov_lane, rest, n_floor = _estep(mo, box["y"], mu, cov, it, state)
        box["y"] = y
        logev, wk, m, s = _moments(mo, y, cov_lane, rest - nll)
        state["sd"] = np.tile(np.sqrt(np.clip(np.einsum("nii->n", s) / d, 1e-6, None)), mo.nk)
        mu_new, cov_new = _mstep(m, s, g["covariance"])
        sd_new = np.sqrt(np.diag(cov_new))
        change = float(max(np.abs(mu_new - mu).max(), np.abs(sd_new - np.sqrt(np.diag(cov))).max()))
        history.append({"iter": it + 1, "kind": kind, "sum_log_evidence": float(logev.sum()),
                        "change": change, "mu": mu_new.tolist(), "sd": sd_new.tolist(),
                        "n_pd_floored": n_floor, "n_fd_hessian": state.get("n_fd_hessian", 0),
                        "fd_steps_grown": state.get("fd_grown"),
                        "n_hessian_refreshed": state.get("n_hessian_refreshed")})
        if progress is not None:
            progress(name, it + 1, g["max_iter"], change)
        return mu_new, cov_new, float(logev.sum()), change

    run = _squarem if g["accelerate"] == "squarem" else _plain_em
    mu, cov, converged = run(em_map, mu, cov, g)
    y = box["y"]
    it = len(history) - 1
    # the final E-step quantities are those under the last prior but one; one more E-step
    # under the converged prior gives the reported MAPs and evidences
    y, nll, cov_lane, rest, n_floor = _estep(mo, y, mu, cov, it + 1, state, final=True)
    ll_lane, se_lane, sd_lane = _loglik_at(mo, y, nll)
    logev, wk, m, s = _moments(mo, y, cov_lane, rest + ll_lane)
    em_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ibic, ibic_se = _ibic(mo, mu, cov)
    records = _records(mo, y, cov_lane, ll_lane, se_lane, sd_lane, logev, wk, em_s)
    rows = _group_rows(mo, mu, cov, records)
    em = {"model": name, "converged": converged, "iterations": len(history),
          "max_iter": g["max_iter"], "tol": g["tol"], "covariance": g["covariance"],
          "accelerate": g["accelerate"],
          "n_extrapolated": sum(h["kind"] == "extrapolated" for h in history),
          "final_change": history[-1]["change"], "mu": mu.tolist(),
          "cov": cov.tolist(), "parameters": mo.tf.free, "n_pd_floored": n_floor,
          "sum_log_evidence": float(logev.sum()), "ibic": ibic, "ibic_log_lik_se": ibic_se,
          "n_ibic": g["n_ibic"], "ibic_particles": _ibic_cfg(mo)["fit"]["n_particles"],
          "em_s": em_s, "ibic_s": time.perf_counter() - t1,
          "history": history}
    return {"fits": records, "group": rows, "em": em}


def _loglik_at(mo: _Model, y, nll):
    """The log-likelihood at each lane's MAP: exact for a deterministic model; for a stochastic
    one ``log mean exp`` of ``fit.n_reps`` fresh replicates, with its SE and one estimate's SD."""
    if not mo.stochastic:
        return -nll, np.zeros(len(y)), np.zeros(len(y))
    r = mo.cfg["fit"]["n_reps"]
    reps = optimize.evaluate(mo.cfg, mo.mspec, mo.lanes,
                             mo.thetas(np.repeat(y[:, None], r, 1)), _REPS + np.arange(r))
    ll = logsumexp(reps, 1) - np.log(r)
    sd = reps.std(1, ddof=1)
    return ll, sd / np.sqrt(r), sd


def _ibic_cfg(mo: _Model) -> dict:
    """The config the iBIC's likelihoods are evaluated with: a stochastic model at
    ``fit.search_particles`` particles (0: ``fit.n_particles``)."""
    f = {**mo.cfg["fit"], **mo.mspec.get("search", {})}
    if not mo.stochastic or not f["search_particles"]:
        return mo.cfg
    return {**mo.cfg, "fit": {**mo.cfg["fit"], "n_particles": f["search_particles"]}}


def _ibic(mo: _Model, mu, cov):
    """Integrated BIC: ``-2 sum_i log mean_k p(D_i | y_k) + n_hyper log(n_trials)`` over
    ``group.n_ibic`` draws ``y_k ~ N(mu, cov)`` (the same for every subject; for a profiled
    capacity a uniform draw of its value with each). Returns (iBIC, the Monte Carlo SE of its
    summed log-likelihood, by the delta method over the draws)."""
    cfg, n, d = mo.cfg, mo.n, mo.d
    k = cfg["group"]["n_ibic"]
    rng = np.random.default_rng([cfg["seed"], 31])
    ys = np.clip(rng.multivariate_normal(mu, cov, size=k), -optimize._Y_MAX, optimize._Y_MAX)
    caps = rng.choice(np.asarray(mo.prof, float), size=k) if mo.prof else None
    ds = mo.ds
    th = mo.tf.theta(np.broadcast_to(ys[None], (n, k, d)))
    if caps is not None:
        th[..., models.CAPACITY] = caps[None, :]
    width = min(k, 100)
    # a stochastic model's likelihood at each draw: the search's particle count (the mean over
    # the draws averages its noise; its spread is in the SE below)
    ll = optimize.evaluate(_ibic_cfg(mo), mo.mspec, ds, th, _IBIC + np.arange(k),
                           width=width)  # [n, k]
    lme = logsumexp(ll, 1) - np.log(k)
    # SE of log mean exp over draws: sd(w) / (sqrt(k) mean(w)), w = exp(ll - max)
    w = np.exp(ll - ll.max(1, keepdims=True))
    se = w.std(1, ddof=1) / (np.sqrt(k) * w.mean(1))
    n_hyper = 2 * d if cfg["group"]["covariance"] == "diag" else d + d * (d + 1) // 2
    total_trials = float(ds.n_trials.sum())
    ibic = float(-2 * lme.sum() + n_hyper * np.log(total_trials))
    return ibic, float(np.sqrt(np.sum(np.square(se))))


def _records(mo: _Model, y, cov_lane, ll_lane, se_lane, sd_lane, logev, wk, em_s):
    """One record per subject: the MAP at its most probable capacity, Laplace SEs, at_bound,
    the log evidence."""
    n, d, tf = mo.n, mo.d, mo.tf
    best_k = np.argmax(wk, 0)  # [n]
    lane = best_k * n + np.arange(n)
    out = []
    width = tf.hi - tf.lo
    for i, s in enumerate(mo.ds.subjects):
        j = lane[i]
        x = tf.to_x(y[j])
        u = (x - tf.lo) / width
        dxdy = width * u * (1 - u)
        se = dxdy * np.sqrt(np.diag(cov_lane[j]))
        k = d + (1 if mo.prof else 0)
        nt = int(mo.ds.n_trials[i])
        rec = {"subject": s, "model": mo.name, "kind": mo.mspec["kind"],
               "loglik": float(ll_lane[j]), "loglik_se": float(se_lane[j]),
               "loglik_sd": float(sd_lane[j]), "n_trials": nt,
               "n_missed": int(mo.ds.n_missed[i]), "n_free": k,
               "aic": 2 * k - 2 * float(ll_lane[j]),
               "bic": k * np.log(max(nt, 1)) - 2 * float(ll_lane[j]),
               "log_evidence": float(logev[i]), "fit_s": em_s / n}
        rec.update({p: float(v) for p, v in zip(tf.free, x)})
        if mo.prof:
            rec["capacity"] = int(mo.prof[best_k[i]])
            rec["capacity_p"] = float(wk[best_k[i], i])
        rec.update({f"{p}_se": float(v) for p, v in zip(tf.free, se)})
        rec["at_bound"] = bool(np.any((u < 1e-3) | (u > 1 - 1e-3)))
        out.append(rec)
    return out


def _group_rows(mo: _Model, mu, cov, records) -> list[dict]:
    """group.csv rows: per parameter the group mean and SD in logit units, the median in
    natural units (the inverse transform of the mean), the population's 95% interval
    (``mean_t +- 1.96 sd_t`` mapped back) and the 95% interval of the median (``mean_t +-
    1.96 sd_t / sqrt(n)``)."""
    tf, n = mo.tf, mo.n
    sd = np.sqrt(np.diag(cov))
    rows = []
    for j, p in enumerate(tf.free):
        lo, hi = tf.lo[j], tf.hi[j]
        inv = lambda v: lo + (hi - lo) / (1 + np.exp(-v))  # noqa: E731
        half = 1.959964 * sd[j]
        rows.append({"model": mo.name, "parameter": p, "transform": f"logit[{lo:g},{hi:g}]",
                     "mean_t": float(mu[j]), "sd_t": float(sd[j]), "median": float(inv(mu[j])),
                     "lo95": float(inv(mu[j] - half)), "hi95": float(inv(mu[j] + half)),
                     "median_lo95": float(inv(mu[j] - half / np.sqrt(n))),
                     "median_hi95": float(inv(mu[j] + half / np.sqrt(n))), "n_subjects": n})
    if mo.prof:
        caps = np.array([r["capacity"] for r in records], float)
        q = np.percentile(caps, [2.5, 50, 97.5])
        rows.append({"model": mo.name, "parameter": "capacity",
                     "transform": f"discrete[{mo.prof[0]},{mo.prof[-1]}], flat prior",
                     "mean_t": float(caps.mean()), "sd_t": float(caps.std(ddof=1)),
                     "median": float(q[1]), "lo95": float(q[0]), "hi95": float(q[2]),
                     "median_lo95": float("nan"), "median_hi95": float("nan"), "n_subjects": n})
    return rows
