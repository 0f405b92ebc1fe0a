"""Log-space bias of the zeta-node average of the soft Thompson choice probability, by node
count, for fixed Sobol nodes (``qmc``), per-trial randomized Sobol nodes (``rqmc``) and plain
Monte Carlo; then the bias per subject on the shipped tasks.

    PYTHONPATH=. nice -n 10 python benchmarks/bench_zeta_bias.py [--keys 256] [--quick]
        [--out benchmarks/results/zeta_bias.json]

Part A (synthetic rows). ``P(a | s) = E_{zeta ~ N(0, I_A)}[softmax(x + b * zeta)_a]`` with logits
``x = beta * q`` and ``b = beta * sigma`` (equal sigma across actions), for A = 3 and 4 actions,
``b`` in {1, 5, 10, 20, 40} and logit gaps (best minus worst) ``g`` in {1, 3, 10}, the actions'
logits evenly spaced (``g * (1, 1/2, 0)``, ``g * (1, 2/3, 1/3, 0)``). The estimate ``P_hat`` is
:func:`dra_jax.fitting.models.chosen_prob` (float32, the filter's arithmetic) on ``n_zeta`` nodes
(``qmc``: ``models.zeta_nodes``; ``rqmc``: ``zeta.trial_nodes`` under ``--keys`` keys; ``mc``:
``zeta.mc_nodes``), the reference ``P`` the mean of 8 independently scrambled 2^17-point Sobol
rules in float64 (its relative SE is reported). Per cell the statistics are over the agent's own
choices: q rows equally weighted, the chosen action ``a ~ P(. | s)``, keys equally weighted:
``bias`` = mean of ``log P_hat - log P`` a trial, ``sd`` its standard deviation (for ``qmc``
the spread over rows and actions of a deterministic error), ``bias_lik`` = ``log E_keys[P_hat]
- log P`` (the bias of the likelihood itself; 0 up to noise for rqmc and mc), and the same
by the chosen action's rank (best / middle / worst) in the JSON.

Part B (shipped tasks). The filters themselves with one particle (the path of a key is the same
whatever the nodes): stimulus-response (10 blocks of 2-6 stimuli x 14 presentations = 560
trials x 3 actions, the parameters of configs/fit_stimulus_response.toml) and the Fig. 1
grid-world (20 episodes x 4 actions, configs/fit_gridworld.toml's); per subject and key the
difference of the log-likelihood on ``n_zeta`` nodes from that of rqmc on 2^15 nodes (same key,
so the same latent path), averaged over keys and subjects; ``sd_key``: the SD over keys (the
Monte Carlo noise rqmc adds to a subject's log-likelihood).
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from dra_jax.fitting import data, models, particle, seqsim, sequential, simulate, zeta
from dra_jax.fitting.data import sequential as seqdata
from dra_jax.results import atomic_write_json

ACTIONS = (3, 4)
BS = (1.0, 5.0, 10.0, 20.0, 40.0)
GAPS = (1.0, 3.0, 10.0)
N_ZETA = (16, 32, 64, 128, 256, 512)
METHODS = ("qmc", "rqmc", "mc")
REF_POINTS, REF_SETS = 2**17, 8


def _reference(x: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``P [A]`` and its relative SE: 8 independently scrambled 2^17-point Sobol rules
    (float64), softmax of ``x + b * zeta``."""
    from scipy.stats import qmc

    a = x.size
    est = []
    for i in range(REF_SETS):
        z = ndtri(qmc.Sobol(a, scramble=True, seed=1000 + i).random(REF_POINTS))
        y = x[None] + b * z
        y = np.exp(y - y.max(1, keepdims=True))
        est.append((y / y.sum(1, keepdims=True)).mean(0))
    est = np.array(est)
    return est.mean(0), est.std(0, ddof=1) / np.sqrt(REF_SETS) / est.mean(0)


@functools.lru_cache(maxsize=None)
def _p_hat_fn(method: str, n_zeta: int, a: int):
    """jit of ``(x [A], b, keys [R]) -> P_hat [R, A]`` (qmc: R = 1) of every action on
    ``n_zeta`` nodes (beta = 10, so q = x / 10 and sigma = b / 10)."""
    beta = 10.0
    st = models.Static("lam0", 1, a, zeta="qmc" if method == "qmc" else "rqmc", n_zeta=n_zeta)
    acts = jnp.arange(a)
    make = {"rqmc": zeta.trial_nodes, "mc": zeta.mc_nodes}.get(method)

    def f(x, b, keys):
        th = jnp.stack([0.0, beta, 0.0, 0.0, 1.0, b / beta]).astype(jnp.float32)
        lat = models.Latent((x / beta)[None], jnp.full((1, a), b / beta), None,
                            jnp.zeros((0,)), jnp.zeros((a,)))
        if make is None:
            return jax.vmap(lambda i: models.chosen_prob(st, th, lat, 0, i))(acts)[None]

        def one(k):
            nodes = make(n_zeta, a, k, 0)
            return jax.vmap(lambda i: models.chosen_prob(st, th, lat, 0, i, nodes=nodes))(acts)

        return jax.vmap(one)(keys)

    return jax.jit(f)


def _p_hat(method: str, n_zeta: int, x, b, keys) -> np.ndarray:
    f = _p_hat_fn(method, n_zeta, x.size)
    return np.asarray(f(jnp.asarray(x, jnp.float32), jnp.float32(b), keys), np.float64)


def part_a(n_keys: int, n_zeta_list) -> list[dict]:
    keys = jax.random.split(jax.random.key(12345), n_keys)
    cells = []
    for a in ACTIONS:
        profile = np.linspace(1.0, 0.0, a)
        for b in BS:
            refs = {g: _reference(g * profile, b) for g in GAPS}
            for n in n_zeta_list:
                for method in METHODS:
                    d_all, w_all, rank_stats, lik = [], [], {}, []
                    for g in GAPS:
                        p, rse = refs[g]
                        ph = _p_hat(method, n, g * profile, b, keys)  # [R, A]
                        d = np.log(np.maximum(ph, 1e-30)) - np.log(p)[None]  # [R, A]
                        d_all.append(d)
                        w_all.append(np.broadcast_to(p[None] / ph.shape[0], d.shape))
                        lik.append(np.sum(p * (np.log(ph.mean(0)) - np.log(p))))
                        for rank, i in (("best", 0), ("middle", a // 2), ("worst", a - 1)):
                            rank_stats.setdefault(rank, []).append(
                                {"gap": g, "p": float(p[i]), "ref_rel_se": float(rse[i]),
                                 "bias": float(d[:, i].mean()), "sd": float(d[:, i].std()),
                                 "bias_lik": float(np.log(ph[:, i].mean() / p[i]))})
                    d = np.concatenate([x.ravel() for x in d_all])
                    w = np.concatenate([x.ravel() for x in w_all]) / len(GAPS)
                    m = float(np.sum(w * d))
                    cells.append({"actions": a, "beta_sigma": b, "n_zeta": n, "method": method,
                                  "bias": m, "sd": float(np.sqrt(np.sum(w * (d - m) ** 2))),
                                  "bias_lik": float(np.mean(lik)), "by_rank": rank_stats})
            print(f"A={a} b={b} done", flush=True)
    return cells


def _sr_setup(kind, n_subj):
    theta = {"dra": [0.1, 20.0, 0.5, 0.05, 1.0, 0.3],
             "lam0": [0.1, 20.0, 0.5, 0.05, 1.0, 0.3]}[kind]
    theta = np.array(theta + [0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    sizes = (2, 3, 4, 5, 6, 2, 3, 4, 5, 6)
    df = simulate.synthetic_dataset(models.Static(kind, 6, 3), np.tile(theta[:6], (n_subj, 1)),
                                    0, sizes, 14)
    ds = data.load(df, 6, 3)
    tr = particle.Trials(*(jnp.asarray(x) for x in ds.trials))

    def ll(z, n, keys):
        st = models.Static(kind, 6, 3, zeta=z, n_zeta=n)
        th = jnp.asarray(np.broadcast_to(theta[:6], keys.shape + (6,)), jnp.float32)
        return np.asarray(particle.loglik(st, 1, 0.5, th, tr, keys)[0], np.float64)

    return ll, float(ds.n_trials.mean())


def _gw_setup(kind, n_subj):
    from dra_jax.envs.gridworld import Layout
    from dra_jax.fitting.spec import DEFAULTS

    vals = {"lam0": {"beta": 3.0, "alpha_q": 0.3, "sigma0": 1.0},
            "dra": {"lam": 0.2, "beta": 5.0, "alpha_q": 0.3, "alpha_sigma": 0.1,
                    "sigma_base": 5.0, "sigma0": 3.0}}[kind]
    theta = np.array([{**DEFAULTS, **vals}[p] for p in models.PARAMS])
    maze = tuple(Layout().to_maze())
    sst = sequential.SeqStatic(models.Static(kind, 54, 4), maze, 200)
    df = seqsim.simulate(sst, np.tile(theta, (n_subj, 1)), 1, 20, 0)
    ds = seqdata.load(df, 54, 4)
    tr = sequential.SeqTrials(*(jnp.asarray(x) for x in ds.trials))

    def ll(z, n, keys):
        s2 = sst._replace(base=models.Static(kind, 54, 4, zeta=z, n_zeta=n))
        th = jnp.asarray(np.broadcast_to(theta, keys.shape + (theta.size,)), jnp.float32)
        return np.asarray(sequential.loglik(s2, 1, 0.5, th, tr, keys)[0], np.float64)

    return ll, float(ds.n_trials.mean())


def part_b(n_subj: int, n_keys: int, n_zeta_list, ref_n: int) -> list[dict]:
    keys = jax.vmap(lambda i: jax.vmap(lambda r: jax.random.fold_in(jax.random.key(i), r))(
        jnp.arange(n_keys)))(jnp.arange(n_subj))
    out = []
    for task, setup, kind in (("stimulus_response", _sr_setup, "lam0"),
                              ("stimulus_response", _sr_setup, "dra"),
                              ("gridworld", _gw_setup, "lam0"),
                              ("gridworld", _gw_setup, "dra")):
        t0 = time.perf_counter()
        ll, n_obs = setup(kind, n_subj)
        ref = ll("rqmc", ref_n, keys)
        ref2 = ll("rqmc", ref_n, jax.vmap(jax.vmap(lambda k: jax.random.fold_in(k, 99)))(keys))
        for method in ("qmc", "rqmc"):
            for n in n_zeta_list:
                d = ll(method, n, keys) - ref  # [N, R]
                out.append({"task": task, "kind": kind, "method": method, "n_zeta": n,
                            "observed_trials": n_obs, "bias_per_subject": float(d.mean()),
                            "se": float(d.std(ddof=1) / np.sqrt(d.size)),
                            "sd_key": float(d.std(1, ddof=1).mean()),
                            "bias_lik_per_subject": float(np.mean(
                                np.log(np.mean(np.exp(d - d.max(1, keepdims=True)), 1))
                                + d.max(1)))})
        out.append({"task": task, "kind": kind, "method": f"rqmc{ref_n} vs itself (new keys)",
                    "n_zeta": ref_n, "observed_trials": n_obs,
                    "bias_per_subject": float((ref2 - ref).mean()),
                    "sd_key": float((ref2 - ref).std(ddof=1) / np.sqrt(2))})
        print(f"{task} {kind}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def markdown(cells, part_b_rows) -> str:
    lines = []
    ns = sorted({c["n_zeta"] for c in cells})
    for method in METHODS:
        lines += [f"\n**{method}**: mean (SD) of log P_hat - log P a trial, x1e-4 nats; "
                  "[log E P_hat - log P]", "",
                  "| A | beta*sigma | " + " | ".join(f"n={n}" for n in ns) + " |",
                  "|---|---|" + "---|" * len(ns)]
        for a in ACTIONS:
            for b in BS:
                row = [c for c in cells if c["method"] == method and c["actions"] == a
                       and c["beta_sigma"] == b]
                row = sorted(row, key=lambda c: c["n_zeta"])
                lines.append(f"| {a} | {b:g} | " + " | ".join(
                    f"{1e4 * c['bias']:.2f} ({1e4 * c['sd']:.1f}) [{1e4 * c['bias_lik']:.2f}]"
                    for c in row) + " |")
    lines += ["\n**Per subject on the shipped tasks** (nats; filter with 1 particle, vs rqmc "
              "2^15 at the same keys)", "",
              "| task | kind | trials | method | n_zeta | bias (SE) | log-lik bias | SD over keys |",
              "|---|---|---|---|---|---|---|---|"]
    for r in part_b_rows:
        lines.append(f"| {r['task']} | {r['kind']} | {r['observed_trials']:.0f} | {r['method']} "
                     f"| {r['n_zeta']} | {r['bias_per_subject']:.4f} ({r.get('se', 0):.4f}) | "
                     f"{r.get('bias_lik_per_subject', float('nan')):.4f} | {r['sd_key']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=256)
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--subject-keys", type=int, default=4)
    ap.add_argument("--ref-n", type=int, default=2**15)
    ap.add_argument("--quick", action="store_true", help="part A only")
    ap.add_argument("--out", default="benchmarks/results/zeta_bias.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = {"machine": {"cpu_count": os.cpu_count(), "jax": jax.__version__,
                       "load_avg_at_start": os.getloadavg()},
           "args": vars(args), "part_a": part_a(args.keys, N_ZETA)}
    out["part_b"] = [] if args.quick else part_b(args.subjects, args.subject_keys,
                                                 (64, 128, 256, 512, 1024), args.ref_n)
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    out["seconds"] = time.perf_counter() - t0
    md = markdown(out["part_a"], out["part_b"])
    out["markdown"] = md
    atomic_write_json(args.out, out)
    print(md)


if __name__ == "__main__":
    main()
