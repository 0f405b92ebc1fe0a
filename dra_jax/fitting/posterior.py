"""Posterior of one subject's parameters: particle marginal Metropolis-Hastings (PMMH; Andrieu,
Doucet & Holenstein 2010) with block-wise correlated likelihood estimates (block pseudo-marginal;
Tran, Kohn, Quiroz & Villani 2016).

Target. ``p(y | data) ∝ p(y) p(data | y)`` in the search's logit coordinates ``y``
(:class:`dra_jax.fitting.optimize.Transform`: ``x = lo + (hi - lo) sigmoid(y)`` for each free
parameter). The default prior is uniform on the fit's box in natural units, which in ``y`` is
the logistic density ``log p(y) = sum_j log sigmoid(y_j) + log(1 - sigmoid(y_j))``; ``prior =
(mu, cov)`` is a Gaussian in ``y`` instead (e.g. a group-level prior).

Likelihood estimate. The subject's blocks are separate lanes of one call of the particle filter
(:func:`dra_jax.fitting.particle._filter`; a block resets the agent, so the likelihood is the
product of the blocks' and each block's estimate is unbiased on its own), every block with its
own key ``u_b`` (by default short blocks are packed together into lanes no longer than the
longest block, :func:`block_lanes`; a "block" of the pseudo-marginal is then such a lane).
``exp(loglik)`` of the bootstrap filter is unbiased for the model's likelihood when the
per-trial choice probability is itself unbiased: a stochastic model (``dra``,
``dra_equal``) is therefore run with ``zeta = "rqmc"`` (a fresh random digital shift of the Sobol
nodes per lane and trial, :mod:`dra_jax.fitting.zeta`) whatever the config says, and the
result's ``zeta`` says so. A deterministic model (``qlearn``, ``lam0``, ``rlwm``) uses one
particle and the config's own zeta rule; its estimate is exact (for ``lam0`` under ``qmc``:
exact for the model with the fixed-node choice probability) and the sampler is plain MH.

Chain. The state is ``(y, u_1..u_B)`` with the current block estimates ``l_b = log p_hat_b(y,
u_b)``. Each iteration (Tran et al. 2016, Algorithm 1):

    G   <- ``refresh`` blocks chosen uniformly at random (without replacement)
    u'_b = a fresh key for b in G, u'_b = u_b otherwise
    y'  ~ N(y, Sigma)                                           (random walk)
    accept with probability min(1, p(y') prod_b p_hat_b(y', u'_b) / (p(y) prod_b p_hat_b(y, u_b)))
    (rejected: y, u and the l_b all stay as they were)

This is Metropolis-Hastings on the extended space of ``(y, u)`` whose ``u`` proposal is the
``u``-marginal of the extended target, so its ``y``-marginal is the exact posterior (each block
estimate is unbiased); keeping the other blocks' keys makes the estimates at ``y`` and ``y'``
correlated, so the log of their ratio is far less noisy than two independent estimates
(correlation ``1 - refresh / B`` at a fixed ``y``). A fresh key is a counter: block b of chain c
under counter k has the key ``fold_in(fold_in(fold_in(stream, c), b), k)`` with ``k`` = the
iteration that last refreshed it (0 at the start), so no key is ever used twice and every number
follows from ``(seed, subject, chain, block, k)``.

Proposal. ``Sigma`` is adapted during the burn-in only (Haario, Saksman & Tamminen 2001: the
chain's running covariance times ``2.38^2 / d``, plus a small ridge, after ``t0`` iterations;
before, ``init_sd^2 I``), and a global scale follows the acceptance probability towards
``target_accept`` by Robbins-Monro steps (Andrieu & Thoms 2008, Algorithm 4). Both are frozen at
the end of the burn-in, so the kept iterations are a time-homogeneous MH chain.

Layout. All chains are lanes of the same filter call (lanes = blocks x chains), and a chunk of
iterations is one jitted ``lax.scan``; Python runs only between chunks (progress). Diagnostics
(:func:`rhat`, :func:`ess_bulk`, :func:`ess_tail`) are the rank-normalized split-R-hat and the
bulk / tail effective sample sizes of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
written here (ArviZ is only a test dependency: the tests check these against it to 1e-9).
"""
from __future__ import annotations

import copy
import re
import time
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from dra_jax.config import ConfigError
from dra_jax.fitting import data as data_mod
from dra_jax.fitting import optimize, particle

# stream tags of fold_in(subject key, tag): block keys, the MH draws, the noise check
_STREAM, _FILTER, _MH, _CHECK = 0x504D4D48, 1, 2, 3


class Chain(NamedTuple):
    """The state of every chain ``[C, ...]``: the point, its log prior, the blocks' log-likelihood
    estimates and key counters, and the proposal's adaptation (running mean / scatter of the
    visited points, log global scale, the proposal's Cholesky factor)."""

    y: jax.Array  # [C, d] float32
    lp: jax.Array  # [C] log prior at y
    ll: jax.Array  # [C, B] block log-likelihood estimates at (y, u)
    u: jax.Array  # [C, B] int32 key counters
    n: jax.Array  # [C] float32 points seen by the adaptation
    mean: jax.Array  # [C, d]
    m2: jax.Array  # [C, d, d] scatter (Welford)
    log_s: jax.Array  # [C] log global scale
    chol: jax.Array  # [C, d, d] Cholesky factor of the proposal covariance


# --------------------------------------------------------------------------- the kernel


def lane_keys(stream: jax.Array, u: jax.Array) -> jax.Array:
    """The filter keys ``[B, C]`` of counters ``u [C, B]``: block b of chain c under counter k
    has ``fold_in(fold_in(fold_in(stream, c), b), k)``."""
    c_idx = jnp.arange(u.shape[0], dtype=jnp.uint32)
    b_idx = jnp.arange(u.shape[1], dtype=jnp.uint32)

    def one(c, b, k):
        return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(stream, c), b), k)

    keys = jax.vmap(lambda c, uc: jax.vmap(lambda b, k: one(c, b, k))(b_idx, uc))(
        c_idx, u.astype(jnp.uint32))  # [C, B]
    return keys.T


def log_prior_fn(prior) -> Callable:
    """``log p(y)`` of points ``[..., d]`` (up to a constant): uniform on the box (logistic in
    ``y``) when ``prior`` is None, else the Gaussian ``(mu [d], cov [d, d])`` in ``y``."""
    if prior is None:
        return lambda y: jnp.sum(jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y), -1)
    mu, cov = (np.asarray(p, np.float64) for p in prior)
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    mu = jnp.asarray(mu, jnp.float32)

    def lp(y):
        z = y - mu
        return -0.5 * jnp.einsum("...i,ij,...j->...", z, prec, z)

    return lp


class Settings(NamedTuple):
    """Static settings of a kernel (hashable)."""

    n_chains: int
    n_blocks: int
    d: int
    refresh: int
    t0: int  # iterations before the empirical covariance is used
    init_sd: float
    target_accept: float
    ridge: float  # added to the empirical covariance (y units^2)


def build_kernel(loglik_fn: Callable, log_prior: Callable, stream: jax.Array, mh_key: jax.Array,
                 s: Settings) -> Callable:
    """One iteration of every chain, ``step(chain, (it, adapt)) -> (chain, (y, ll, accepted))``
    (pure; the module docstring's algorithm). ``loglik_fn(y [C, d], keys [B, C]) -> [B, C]``:
    the block log-likelihood estimates; ``it`` (int32) numbers the iteration (its fresh keys
    get counter ``it + 1``); ``adapt`` (bool): adapt the proposal after the step."""
    c_n, b_n, d = s.n_chains, s.n_blocks, s.d
    r = min(s.refresh, b_n)
    sd2 = 2.38 ** 2 / d
    cov0 = jnp.eye(d, dtype=jnp.float32) * s.init_sd ** 2

    def draws(k):
        k1, k2, k3 = jax.random.split(k, 3)
        pick = jax.random.permutation(k1, b_n)[:r]
        mask = jnp.zeros(b_n, bool).at[pick].set(True)
        return mask, jax.random.normal(k2, (d,)), jnp.log(jax.random.uniform(k3))

    def step(ch: Chain, x):
        it, adapt = x
        k_it = jax.random.fold_in(mh_key, it)
        ks = jax.vmap(lambda c: jax.random.fold_in(k_it, c))(jnp.arange(c_n, dtype=jnp.uint32))
        mask, z, log_unif = jax.vmap(draws)(ks)
        u_p = jnp.where(mask, it + 1, ch.u)
        y_p = ch.y + jnp.einsum("cij,cj->ci", ch.chol, z)
        ll_p = loglik_fn(y_p, lane_keys(stream, u_p)).T  # [C, B]
        lp_p = log_prior(y_p)
        log_a = lp_p + jnp.sum(ll_p, 1) - ch.lp - jnp.sum(ch.ll, 1)
        log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
        acc = log_unif < log_a
        keep = lambda new, old: jnp.where(  # noqa: E731
            acc.reshape((c_n,) + (1,) * (new.ndim - 1)), new, old)
        ch = ch._replace(y=keep(y_p, ch.y), lp=keep(lp_p, ch.lp), ll=keep(ll_p, ch.ll),
                         u=keep(u_p, ch.u))
        ch = jax.lax.cond(adapt, partial(_adapt, s, sd2, cov0), lambda c, a, i: c, ch,
                          jnp.exp(jnp.minimum(log_a, 0.0)), it)
        return ch, (ch.y, jnp.sum(ch.ll, 1), acc)

    return step


def _adapt(s: Settings, sd2: float, cov0, ch: Chain, alpha, it) -> Chain:
    """Haario et al. (2001) covariance and a Robbins-Monro global scale (Andrieu & Thoms 2008,
    Alg. 4) after one iteration of every chain; ``alpha [C]`` the acceptance probabilities."""
    d = s.d
    n1 = ch.n + 1.0
    delta = ch.y - ch.mean
    mean = ch.mean + delta / n1[:, None]
    m2 = ch.m2 + jnp.einsum("ci,cj->cij", delta, ch.y - mean)
    gamma = (it.astype(jnp.float32) + 1.0) ** -0.6
    log_s = jnp.clip(ch.log_s + gamma * (alpha - s.target_accept), np.log(0.05), np.log(3.0))
    emp = sd2 * (m2 / jnp.maximum(n1 - 1.0, 1.0)[:, None, None]
                 + s.ridge * jnp.eye(d, dtype=jnp.float32))
    base = jnp.where((n1 > s.t0)[:, None, None], emp, cov0)
    chol = jnp.linalg.cholesky(jnp.exp(2.0 * log_s)[:, None, None] * base)
    ok = jnp.all(jnp.isfinite(chol), (1, 2))
    chol = jnp.where(ok[:, None, None], chol, ch.chol)
    return ch._replace(n=n1, mean=mean, m2=m2, log_s=log_s, chol=chol)


def init_chain(loglik_fn: Callable, log_prior: Callable, stream, y0: np.ndarray,
               s: Settings) -> Chain:
    """Chains at ``y0 [C, d]`` with every block's counter at 0 (their likelihoods estimated)."""
    y0 = jnp.asarray(y0, jnp.float32)
    u = jnp.zeros((s.n_chains, s.n_blocks), jnp.int32)
    ll = loglik_fn(y0, lane_keys(stream, u)).T
    d = s.d
    chol = jnp.broadcast_to(jnp.eye(d, dtype=jnp.float32) * s.init_sd, (s.n_chains, d, d))
    return Chain(y0, log_prior(y0), ll, u, jnp.zeros(s.n_chains), y0 * 0.0,
                 jnp.zeros((s.n_chains, d, d)), jnp.zeros(s.n_chains), chol)


def sample(step: Callable, ch: Chain, n_iter: int, n_burn: int, chunk: int, progress=None):
    """``n_iter`` iterations of ``step`` from ``ch``, ``chunk`` at a time (one compiled scan,
    compiled ahead of the first chunk); returns ``(chain, y [C, n_iter, d], ll [C, n_iter],
    accepted [C, n_iter], compile_s, run_s)``. The last chunk's iterations past ``n_iter`` are
    run but not returned (they follow the kept ones, so they change nothing returned)."""
    def scan(c, xs):
        return jax.lax.scan(step, c, xs)

    n_chunks = -(-n_iter // chunk)
    xs0 = (jnp.zeros(chunk, jnp.int32), jnp.zeros(chunk, bool))
    t0 = time.perf_counter()
    with jax.threefry_partitionable(False):
        fn = jax.jit(scan).lower(ch, xs0).compile()
    compile_s = time.perf_counter() - t0
    ys, lls, accs = [], [], []
    t0 = time.perf_counter()
    for i in range(n_chunks):
        it = np.arange(i * chunk, (i + 1) * chunk, dtype=np.int32)
        with jax.threefry_partitionable(False):
            ch, (y, ll, acc) = fn(ch, (jnp.asarray(it), jnp.asarray(it < n_burn)))
        ys.append(np.asarray(y))
        lls.append(np.asarray(ll))
        accs.append(np.asarray(acc))
        if progress is not None:
            progress(min((i + 1) * chunk, n_iter) / n_iter)
    run_s = time.perf_counter() - t0
    cat = lambda xs: np.swapaxes(np.concatenate(xs, 0)[:n_iter], 0, 1)  # noqa: E731
    return ch, cat(ys), cat(lls), cat(accs), compile_s, run_s


# --------------------------------------------------------------------------- diagnostics


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain ``[M, N]`` cut into its first and last halves ``[2M, N // 2]`` (the middle
    draw dropped when N is odd)."""
    h = x.shape[1] // 2
    return np.concatenate([x[:, :h], x[:, x.shape[1] - h:]], 0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank normalization: ``Phi^-1((r - 3/8) / (S + 1/4))`` of the pooled ranks (ties: average
    rank), Vehtari et al. (2021) Eq. 14."""
    r = rankdata(x, method="average").reshape(x.shape)
    return ndtri((r - 0.375) / (x.size + 0.25))


def _rhat_basic(x: np.ndarray) -> float:
    """Gelman-Rubin R-hat of chains ``[M, N]`` (no splitting): ``sqrt(var_plus / W)``."""
    m, n = x.shape
    w = np.mean(np.var(x, axis=1, ddof=1))
    b = n * np.var(np.mean(x, axis=1), ddof=1)
    if not np.isfinite(w) or w <= 0:
        return float("nan")
    return float(np.sqrt(((n - 1) / n * w + b / n) / w))


def rhat(x) -> float:
    """Rank-normalized split-R-hat of chains ``x [M, N]`` (Vehtari et al. 2021, Sec. 4.2): the
    larger of the bulk R-hat (of the rank-normalized split chains) and the tail R-hat (of the
    rank-normalized ``|x - median|``)."""
    x = np.asarray(x, np.float64)
    if np.ptp(x) == 0:
        return float("nan")
    bulk = _rhat_basic(_z_scale(_split(x)))
    tail = _rhat_basic(_z_scale(_split(np.abs(x - np.median(x)))))
    return max(bulk, tail)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariances ``[M, N]`` of each chain at lags 0..N-1 (FFT; biased, divided by N)."""
    m, n = x.shape
    z = x - x.mean(1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(z, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def ess(x) -> float:
    """Effective sample size of chains ``x [M, N]`` (Vehtari et al. 2021, Sec. 3.2): the
    combined autocorrelations ``rho_t = 1 - (W - mean_m acov_m(t)) / var_plus``, summed in pairs
    ``P_k = rho_2k + rho_2k+1`` while positive (Geyer's initial positive sequence) and made
    monotone (initial monotone sequence); ``ESS = M N / (-1 + 2 sum_k P_k)`` (plus Stan's
    truncation term). The chains are taken as given (:func:`ess_bulk` splits them); it equals
    ArviZ 0.23's ``_ess`` to rounding (checked on AR(1), antithetic, sticky and shifted
    chains)."""
    x = np.asarray(x, np.float64)
    m, n = x.shape
    if np.ptp(x) < np.finfo(float).resolution:
        return float(m * n)
    if n < 4:
        return float("nan")
    acov = _autocov(x)
    w = np.mean(acov[:, 0]) * n / (n - 1.0)  # within-chain variance (ddof 1)
    var_plus = w * (n - 1.0) / n + (np.var(x.mean(1), ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (w - np.mean(acov, 0)) / var_plus  # [N]; rho[0] = 1
    # Geyer's initial positive sequence of pairs P_k = rho_2k + rho_2k+1 (P_0 = 1 + rho_1),
    # truncated at the first negative pair, whose even term enters once when positive (Stan's
    # rule); a sequence still positive at the end of the chain drops its last pair the same way
    pairs, last = [1.0 + rho[1]], None
    for k in range(1, (n - 3) // 2 + 1):
        p = rho[2 * k] + rho[2 * k + 1]
        if p < 0:
            last = max(rho[2 * k], 0.0)
            break
        pairs.append(p)
        if p == 0:
            break
    if last is None:
        last = max(rho[2 * (len(pairs) - 1)], 0.0) if len(pairs) > 1 else 0.0
        pairs = pairs[:-1] if len(pairs) > 1 else pairs
    pairs = np.minimum.accumulate(np.asarray(pairs))  # initial monotone sequence
    tau = -1.0 + 2.0 * np.sum(pairs) + last
    tau = max(tau, 1.0 / np.log10(m * n))  # the cap of Stan / ArviZ (antithetic chains)
    return float(m * n / tau)


def ess_bulk(x) -> float:
    """Bulk ESS: :func:`ess` of the rank-normalized split chains."""
    x = np.asarray(x, np.float64)
    return ess(_z_scale(_split(x)))


def ess_tail(x) -> float:
    """Tail ESS: the smaller ESS of the indicators ``x <= q_5%`` and ``x <= q_95%`` (split
    chains)."""
    x = np.asarray(x, np.float64)
    out = []
    for q in (0.05, 0.95):
        out.append(ess(_split((x <= np.quantile(x, q)).astype(np.float64))))
    return float(min(out))


def summarize(draws: np.ndarray, names: list[str]) -> dict:
    """Per parameter of ``draws [C, K, d]``: mean, sd, median, 2.5% and 97.5% quantiles, R-hat,
    bulk and tail ESS and the Monte Carlo SE of the mean (``sd / sqrt(ESS_bulk)``)."""
    out = {}
    for j, p in enumerate(names):
        x = draws[..., j]
        flat = x.ravel()
        eb = ess_bulk(x)
        sd = float(np.std(flat, ddof=1))
        out[p] = {"mean": float(flat.mean()), "sd": sd, "median": float(np.median(flat)),
                  "q2.5": float(np.quantile(flat, 0.025)),
                  "q97.5": float(np.quantile(flat, 0.975)), "rhat": rhat(x), "ess_bulk": eb,
                  "ess_tail": ess_tail(x),
                  "mcse_mean": float(sd / np.sqrt(eb)) if eb > 0 else float("nan")}
    return out


# --------------------------------------------------------------------------- the subject's data


def block_lanes(ds: data_mod.Dataset, subject: str, pack: bool = False):
    """The subject's trials as lanes of the filter, one block a lane (``pack``: blocks grouped,
    first-fit decreasing, into lanes no longer than the longest block; each group then shares a
    key, a coarser block pseudo-marginal). Returns ``(Trials [B, T], groups)``, ``groups`` the
    data blocks of each lane."""
    df = ds.df[ds.df["subject"] == subject].copy()
    blocks = list(dict.fromkeys(df["block"]))
    sizes = df.groupby("block", sort=False).size()
    if pack:
        cap = int(sizes.max())
        groups: list[list] = []
        load: list[int] = []
        for b in sorted(blocks, key=lambda b: -sizes[b]):
            j = next((i for i, v in enumerate(load) if v + sizes[b] <= cap), None)
            if j is None:
                groups.append([b])
                load.append(int(sizes[b]))
            else:
                groups[j].append(b)
                load[j] += int(sizes[b])
        groups = [sorted(g, key=blocks.index) for g in groups]
    else:
        groups = [[b] for b in blocks]
    lane = {b: i for i, g in enumerate(groups) for b in g}
    df["subject"] = [f"lane{lane[b]}" for b in df["block"]]
    df = df.iloc[np.argsort(df["subject"].map(lambda s: int(s[4:])).to_numpy(), kind="stable")]
    lds = data_mod.to_dataset(df, ds.n_states, ds.n_actions,
                              [f"lane{i}" for i in range(len(groups))])
    return particle.Trials(*(jnp.asarray(x) for x in lds.trials)), [
        [int(b) if isinstance(b, (np.integer, int)) else b for b in g] for g in groups]


def _model(cfg: dict, model_name: str | None) -> str:
    name = model_name or cfg["posterior"]["model"]
    if name:
        if name not in cfg["models"]:
            raise ConfigError("posterior.model", f"{name!r} is not a model of [models] "
                              f"({', '.join(cfg['models'])})")
        return name
    stoch = [n for n, m in cfg["models"].items() if optimize.stochastic(cfg, m)]
    return (stoch or list(cfg["models"]))[0]


def find_subject(ds: data_mod.Dataset, subject) -> str:
    """The data's label of ``subject`` (compared as text); ConfigError naming ``--posterior``."""
    key = str(subject).strip()
    if key not in ds.subjects:
        eg = ", ".join(ds.subjects[:5]) + (", ..." if len(ds.subjects) > 5 else "")
        raise ConfigError("--posterior", f"subject {key!r} is not in the data; "
                          f"{len(ds.subjects)} subjects, e.g. {eg}")
    return key


def check(cfg: dict, ds: data_mod.Dataset, subject, model_name: str | None = None):
    """Validate a posterior request before any work: the task, the subject (its label in the
    data) and the model (a name of [models] with free parameters, none of them the integer
    capacity). Returns ``(subject, model name)``; ConfigError naming the key otherwise."""
    if cfg["task"] != "stimulus_response":
        raise ConfigError("task", f"the posterior sampler is for task = \"stimulus_response\", "
                          f"not {cfg['task']!r}")
    subject = find_subject(ds, subject)
    name = _model(cfg, model_name)
    mspec = cfg["models"][name]
    if "capacity" in mspec["free"]:
        raise ConfigError(f"models.{name}.free", "the integer capacity is profiled by the fit, "
                          "not sampled: fix capacity = K for the posterior")
    if not mspec["free"]:
        raise ConfigError(f"models.{name}.free", "no free parameters to sample")
    return subject, name


# --------------------------------------------------------------------------- run


def run(cfg: dict, ds: data_mod.Dataset, subject, model_name: str | None = None, progress=None,
        *, init=None, prior=None, pack: bool = True, chunk: int = 25, n_check: int = 16,
        target_accept: float | None = None, init_sd: float = 0.2) -> dict:
    """PMMH draws from the posterior of ``subject``'s free parameters under ``model_name`` (else
    ``posterior.model``, else the config's first stochastic model, else its first), with
    ``cfg["posterior"]``'s chains, iterations, burn-in, particles and refresh.

    ``init``: starting points ``[C, d]`` in natural units (default: uniform on the central 90% of
    each parameter's box, drawn from the subject's seed). ``prior``: None (uniform on the box) or
    ``(mu [d], cov [d, d])`` in logit coordinates. ``pack``: group short blocks into lanes no
    longer than the longest block (:func:`block_lanes`; each lane is then one key's block of the
    pseudo-marginal): with blocks of unequal length, the padding of short blocks is most of
    one-block lanes' work, which packing saves; ``pack=False``: one block a lane. ``chunk``:
    iterations per compiled call (progress between calls).
    ``n_check``: likelihood replicates at the posterior mean (the estimate's noise).
    ``progress(model, fraction)``: called after every chunk.

    Returns a dict: ``draws [C, K, d]`` (natural units, the kept iterations), ``draws_y``,
    ``loglik [C, K]`` (the chain's current estimate), ``trace`` / ``trace_loglik`` (every
    iteration, burn-in included), ``accept`` (per chain, kept iterations), ``summary`` (per
    parameter: :func:`summarize`), ``corr`` and ``corr_y`` (posterior correlation matrices in
    natural and logit units), ``noise`` (the log-likelihood estimate at the posterior mean: SD of
    one estimate, per-block SDs, the SD of the log ratio of two estimates that differ in
    ``refresh`` blocks' keys and the correlation ``1 - refresh / B``), ``timing`` and the
    settings."""
    subject, name = check(cfg, ds, subject, model_name)
    mspec = copy.deepcopy(cfg["models"][name])
    pcfg = cfg["posterior"]
    stoch = optimize.stochastic(cfg, mspec)
    cfg2 = copy.deepcopy(cfg)
    if stoch:  # an unbiased choice probability, so an unbiased likelihood (module docstring)
        cfg2["fit"]["zeta"] = "rqmc"
        mspec["search"]["zeta"] = "rqmc"
    st = optimize.static_for(cfg2, mspec)
    n_p = pcfg["n_particles"] if stoch else 1
    tf = optimize.Transform(mspec, cfg["bounds"])
    d, c_n = len(tf.free), pcfg["n_chains"]
    tr, groups = block_lanes(ds, subject, pack)
    b_n = int(tr.s.shape[0])
    n_iter = pcfg["n_iter"]
    n_burn = int(round(pcfg["burn"] * n_iter))
    # t0: enough accepted moves (~20% of iterations) for a full-rank covariance; ridge: SD
    # 0.01 in logit units, so a direction the early chain missed is never closed for good
    s = Settings(c_n, b_n, d, pcfg["refresh"], t0=max(100, 20 * d), init_sd=init_sd,
                 target_accept=target_accept or (0.15 if stoch else 0.234), ridge=1e-4)

    base = jax.random.fold_in(jax.random.fold_in(
        jax.random.key(data_mod.subject_seed(subject)), cfg["seed"]), _STREAM)
    stream, mh_key = jax.random.fold_in(base, _FILTER), jax.random.fold_in(base, _MH)
    idx = jnp.asarray(tf.idx)
    lo, hi = jnp.asarray(tf.lo, jnp.float32), jnp.asarray(tf.hi, jnp.float32)
    th0 = jnp.asarray(tf.base, jnp.float32)
    ess_thr = float(cfg["fit"]["ess_threshold"])

    def loglik_fn(y, keys):  # y [C, d], keys [B, C] -> [B, C]
        th = jnp.broadcast_to(th0, (y.shape[0], th0.shape[0])).at[:, idx].set(
            lo + (hi - lo) * jax.nn.sigmoid(y))
        theta = jnp.broadcast_to(th[None], (keys.shape[0],) + th.shape)
        return particle._filter(st, n_p, ess_thr, False, theta, tr, keys)[0]

    log_prior = log_prior_fn(prior)
    if init is None:
        rng = np.random.default_rng([data_mod.subject_seed(subject), cfg["seed"], _STREAM])
        x0 = tf.lo + (tf.hi - tf.lo) * rng.uniform(0.05, 0.95, (c_n, d))
    else:
        x0 = np.broadcast_to(np.asarray(init, np.float64), (c_n, d))
    y0 = tf.to_y(x0)

    t0 = time.perf_counter()
    ll_jit = jax.jit(loglik_fn)
    with jax.threefry_partitionable(False):
        ch = init_chain(ll_jit, log_prior, stream, y0, s)
        jax.block_until_ready(ch)
    init_s = time.perf_counter() - t0
    if not np.all(np.isfinite(np.asarray(ch.ll))):
        raise ValueError(f"non-finite log-likelihood at a starting point of subject {subject}")
    step = build_kernel(loglik_fn, log_prior, stream, mh_key, s)
    prog = None if progress is None else (lambda f: progress(name, f))
    ch, ys, lls, accs, compile_s, run_s = sample(step, ch, n_iter, n_burn, min(chunk, n_iter),
                                                 prog)
    xs = tf.to_x(ys.astype(np.float64))
    kept = slice(n_burn, n_iter)
    draws, draws_y = xs[:, kept], ys[:, kept].astype(np.float64)
    flat, flat_y = draws.reshape(-1, d), draws_y.reshape(-1, d)
    corr = np.corrcoef(flat.T) if d > 1 else np.ones((1, 1))
    corr_y = np.corrcoef(flat_y.T) if d > 1 else np.ones((1, 1))

    # the estimate's noise at the posterior mean: n_check independent replicates of every block
    t1 = time.perf_counter()
    y_bar = tf.to_y(np.clip(flat.mean(0), tf.lo + 1e-9 * (tf.hi - tf.lo),
                            tf.hi - 1e-9 * (tf.hi - tf.lo)))
    check_key = jax.random.fold_in(base, _CHECK)
    reps = []
    for i in range(-(-n_check // c_n)):
        u = jnp.full((c_n, b_n), i, jnp.int32)
        with jax.threefry_partitionable(False):
            reps.append(np.asarray(ll_jit(jnp.asarray(np.tile(y_bar, (c_n, 1)), jnp.float32),
                                          lane_keys(check_key, u)), np.float64).T)  # [C, B]
    reps = np.concatenate(reps, 0)[:max(n_check, 2)]  # [R, B]
    check_s = time.perf_counter() - t1
    var_b = np.var(reps, axis=0, ddof=1)
    r_eff = min(s.refresh, b_n)
    noise = {"at": dict(zip(tf.free, tf.to_x(y_bar).tolist())), "n_reps": int(len(reps)),
             "loglik_mean": float(reps.sum(1).mean()),
             "sd_loglik": float(np.std(reps.sum(1), ddof=1)),
             "sd_block": np.sqrt(var_b).tolist(),
             "sd_log_ratio": float(np.sqrt(2.0 * r_eff / b_n * var_b.sum())),
             "corr_consecutive": 1.0 - r_eff / b_n}
    acc_kept = accs[:, kept].mean(1) if n_iter > n_burn else np.full(c_n, np.nan)
    return {
        "subject": subject, "model": name, "kind": mspec["kind"], "free": list(tf.free),
        "bounds": {p: [float(a), float(b)] for p, a, b in zip(tf.free, tf.lo, tf.hi)},
        "zeta": st.zeta, "n_zeta": st.n_zeta, "n_particles": n_p, "stochastic": bool(stoch),
        "n_chains": c_n, "n_iter": n_iter, "n_burn": n_burn, "refresh": r_eff,
        "n_blocks": b_n, "lanes": groups, "prior": "uniform on the box" if prior is None else
        {"mu": np.asarray(prior[0]).tolist(), "cov": np.asarray(prior[1]).tolist()},
        "init": x0.tolist(), "seed": cfg["seed"],
        "draws": draws, "draws_y": draws_y, "loglik": lls[:, kept].astype(np.float64),
        "trace": xs, "trace_loglik": lls.astype(np.float64), "accepted": accs,
        "accept": acc_kept.tolist(), "accept_burn": accs[:, :n_burn].mean(1).tolist(),
        "proposal_scale": np.exp(np.asarray(ch.log_s)).tolist(),
        "proposal_cov_y": np.einsum("cij,ckj->cik", np.asarray(ch.chol, np.float64),
                                    np.asarray(ch.chol, np.float64)).tolist(),
        "summary": summarize(draws, tf.free) if n_iter - n_burn >= 4 else {},
        "corr": corr.tolist(), "corr_y": corr_y.tolist(), "noise": noise,
        "timing": {"init_s": init_s, "compile_s": compile_s, "run_s": run_s,
                   "s_per_iter": run_s / n_iter, "check_s": check_s},
    }


# --------------------------------------------------------------------------- output

_ARRAYS = ("draws", "draws_y", "loglik", "trace", "trace_loglik", "accepted")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(s))


def write(result: dict, out_dir, figure: bool = True) -> dict:
    """Write ``posterior_<subject>_<model>.csv`` (the kept draws: ``chain, iter``, one column
    per free parameter in natural units, ``loglik``), ``posterior_<subject>_<model>.json`` (the
    rest: settings, summary, correlations, noise, timing) and, with ``figure``,
    ``figures/posterior_<subject>_<model>.png``. Returns the paths written."""
    import pandas as pd

    from dra_jax.results import atomic_write_bytes, atomic_write_json

    out = Path(out_dir)
    stem = f"posterior_{_safe(result['subject'])}_{_safe(result['model'])}"
    draws, ll = result["draws"], result["loglik"]
    c_n, k = draws.shape[:2]
    df = pd.DataFrame({"chain": np.repeat(np.arange(c_n), k),
                       "iter": np.tile(np.arange(result["n_burn"], result["n_burn"] + k), c_n)})
    for j, p in enumerate(result["free"]):
        df[p] = draws[..., j].ravel()
    df["loglik"] = ll.ravel()
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    atomic_write_bytes(paths["csv"], df.to_csv(index=False).encode())
    atomic_write_json(paths["json"], {k_: v for k_, v in result.items() if k_ not in _ARRAYS})
    if figure:
        from dra_jax.fitting import figures as fig

        paths["figure"] = fig.posterior(result, out / "figures" / f"{stem}.png")
    return paths
