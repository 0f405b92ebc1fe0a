"""The yardstick: Algorithm 1 on the grid-world as a numba-compiled scalar loop (one run, one core).

    python benchmarks/numba_ref.py [--episodes 5000] [--seeds 5] [--sigma0s 1,3,4,5] [--q-init zero]

This is "the practical limit of one core" the lane engine is measured against (the design targets,
"Performance: what is known": ~3.6-3.9 M env steps/s, 7.4 s for the 20-run Fig. 1b sweep on
the 2-core dev CPU). It is the same work as :mod:`dra_jax.lane.agent` and :mod:`dra_jax.lane.reference`,
written as the tightest scalar code:

* per episode: an acting episode from the start state with the expected-SARSA update of the
  means (``q[s,a] += alpha_q (r + gamma (1 - done) <p', q[s']> - q[s,a])``, a truncation at
  ``max_steps`` bootstraps), then ``n_traj`` gradient rollouts accumulating
  ``Psi_t * beta * zeta * (onehot(a) - pi)`` (Eq. 5) with ``Psi = A`` (``q[s,a] - mean_a q[s,a]``,
  or ``Q``), then ``sigma += alpha_sigma (G / n_traj - lam dKL/dsigma)`` on the learned memories
  (or one shared sigma for ``allocation = "equal"``), clipped to ``[sigma_min, sigma_max]``;
* every ``eval_every`` episodes (and after the last) ``n_rollouts`` rollouts of the policy:
  objective = mean return - ``lam * KL(Q || P)`` (curves columns: objective, expected reward,
  cost, truncated fraction — the engine's layout);
* its own random numbers: ``np.random`` inside ``@njit`` (seeded per run), drawn one at a time and
  only where used (zeta' only on the acting episode). So it does not reproduce the engine's
  numbers, only their distribution; float64 throughout.

Compilation is timed apart (:func:`compile_seconds`, first call on a 1-episode run).
:func:`run` does one run; :func:`sweep` a list of runs one after another and returns env steps
and seconds.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from numba import njit

ACT, GRAD, EVAL = 0, 1, 2

DRA_FIG1B = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
                 sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
                 learn_q=True, learn_sigma=True)


@njit(cache=False, fastmath=False)
def _rollout(mode, nxt, rew, term_next, start, q, sigma, G, p, zeta, beta, gamma, alpha_q,
             learn_q, psi_code, max_steps, full_noise):
    """One rollout from ``start``; returns (discounted return, truncated, env steps)."""
    A = nxt.shape[1]
    s = start
    t = 0
    ret = 0.0
    disc = 1.0
    while True:
        # soft Thompson policy: p = softmax(beta (q[s] + zeta sigma[s]))
        m = -np.inf
        for b in range(A):
            z = np.random.standard_normal()
            zeta[b] = z
            x = beta * (q[s, b] + z * sigma[s, b])
            p[b] = x
            if x > m:
                m = x
        tot = 0.0
        for b in range(A):
            e = np.exp(p[b] - m)
            p[b] = e
            tot += e
        u = np.random.random() * tot
        a = A - 1
        c = 0.0
        for b in range(A):
            c += p[b]
            if u < c:
                a = b
                break
        if full_noise and not (mode == ACT and learn_q):
            # draw what the lane engine draws every step (zeta', reset uniform), unused here
            for b in range(A):
                np.random.standard_normal()
            np.random.random()
        elif full_noise:
            np.random.random()
        s2 = nxt[s, a]
        r = rew[s, a]
        done = term_next[s, a]
        t += 1
        trunc = (t >= max_steps) and not done
        if mode == ACT:
            if learn_q:
                # expected SARSA with a fresh zeta' at s'
                m2 = -np.inf
                for b in range(A):
                    x = beta * (q[s2, b] + np.random.standard_normal() * sigma[s2, b])
                    zeta[b] = x  # zeta is free again: reuse it for the logits at s'
                    if x > m2:
                        m2 = x
                num = 0.0
                den = 0.0
                for b in range(A):
                    e = np.exp(zeta[b] - m2)
                    num += e * q[s2, b]
                    den += e
                boot = 0.0 if done else gamma * num / den
                q[s, a] += alpha_q * (r + boot - q[s, a])
        elif mode == GRAD:
            if psi_code == 0:  # A: q[s,a] - mean_a q[s,a]
                mean = 0.0
                for b in range(A):
                    mean += q[s, b]
                w = q[s, a] - mean / A
            else:  # Q
                w = q[s, a]
            wb = w * beta
            for b in range(A):
                oh = 1.0 if b == a else 0.0
                G[s, b] += wb * zeta[b] * (oh - p[b] / tot)
        ret += disc * r
        disc *= gamma
        if done or trunc:
            return ret, trunc, t
        s = s2


@njit(cache=False)
def _kl_cost(sigma, sigma_base, learnable, lam):
    S, A = sigma.shape
    tot = 0.0
    for s in range(S):
        for a in range(A):
            if learnable[s, a]:
                x = sigma[s, a] / sigma_base
                tot += 0.5 * (x * x - 1.0) - np.log(x)
    return lam * tot


@njit(cache=False)
def _train(nxt, rew, term_next, start, learnable, q0, alpha_q, alpha_sigma, beta, gamma, lam,
           sigma_base, sigma0, sigma_min, sigma_max, psi_code, equal, learn_q, learn_sigma,
           episodes, n_traj, max_steps, eval_every, n_rollouts, seed, full_noise):
    np.random.seed(seed)
    S, A = nxt.shape
    q = q0.copy()
    sigma = np.full((S, A), sigma0)
    G = np.zeros((S, A))
    p = np.empty(A)
    zeta = np.empty(A)
    n_evals = episodes // eval_every + 1
    if episodes % eval_every != 0:
        n_evals += 1
    curves = np.full((n_evals, 4), np.nan)
    steps = 0
    truncs = 0
    ie = 0
    for k in range(episodes + 1):
        if k % eval_every == 0 or k == episodes:
            total = 0.0
            ntr = 0
            for _ in range(n_rollouts):
                ret, tr, n = _rollout(EVAL, nxt, rew, term_next, start, q, sigma, G, p, zeta,
                                      beta, gamma, alpha_q, learn_q, psi_code, max_steps, full_noise)
                total += ret
                ntr += tr
                steps += n
            expected = total / n_rollouts
            cost = _kl_cost(sigma, sigma_base, learnable, lam)
            curves[ie, 0] = expected - cost
            curves[ie, 1] = expected
            curves[ie, 2] = cost
            curves[ie, 3] = ntr / n_rollouts
            ie += 1
        if k == episodes:
            break
        ret, tr, n = _rollout(ACT, nxt, rew, term_next, start, q, sigma, G, p, zeta, beta, gamma,
                              alpha_q, learn_q, psi_code, max_steps, full_noise)
        steps += n
        truncs += tr
        G[:, :] = 0.0
        for _ in range(n_traj):
            ret, tr, n = _rollout(GRAD, nxt, rew, term_next, start, q, sigma, G, p, zeta, beta,
                                  gamma, alpha_q, learn_q, psi_code, max_steps, full_noise)
            steps += n
            truncs += tr
        if learn_sigma:
            # ascent direction: mean trajectory score - lam dKL/dsigma, on learned memories
            shared = 0.0
            for s in range(S):
                for a in range(A):
                    if learnable[s, a]:
                        sg = sigma[s, a]
                        g = G[s, a] / n_traj - lam * (sg / (sigma_base * sigma_base) - 1.0 / sg)
                        G[s, a] = g
                        shared += g
            for s in range(S):
                for a in range(A):
                    if learnable[s, a]:
                        g = shared if equal else G[s, a]
                        x = sigma[s, a] + alpha_sigma * g
                        sigma[s, a] = min(max(x, sigma_min), sigma_max)
    return q, sigma, curves, steps, truncs


# ------------------------------------------------------------------ Python-side API


def gridworld_tables(layout=None) -> dict:
    """The grid-world's tables (``dra_jax.envs.gridworld.build_tables``) as the loop wants them:
    ``next [S, A]`` int64, ``reward [S, A]`` float64, ``term_next [S, A]`` (the next state is the
    goal), ``start``, ``learnable [S, A]``, ``q_star [S, A]``."""
    from dra_jax.envs.gridworld import GridTask, Layout

    task = GridTask(layout or Layout())
    t = task.tables
    nxt = t.next_state[0].astype(np.int64)
    return {"next": nxt, "reward": t.reward[0].astype(np.float64),
            "term_next": t.terminal[0][nxt].astype(np.bool_), "start": int(t.start),
            "learnable": np.asarray(task.learnable, np.bool_),
            "q_star": np.asarray(task.q_star(), np.float64)}


def run(dra: dict | None = None, episodes: int = 5000, seed: int = 0, n_traj: int = 10,
        max_steps: int = 500, eval_every: int = 100, n_rollouts: int = 100,
        q_init: str = "zero", tables: dict | None = None, full_noise: bool = False) -> dict:
    """One run of Algorithm 1 (``dra``: the ``[dra]`` keys, default Fig. 1b's). Returns
    ``q, sigma, curves [n_evals, 4], env_steps, truncations, seconds`` (the call's wall time,
    including compilation if it is the first call: see :func:`compile_seconds`).
    ``full_noise``: also draw (and discard) what the lane engine draws every step but this loop
    does not need (zeta' off the acting episode, the reset uniform): 2A + 2 numbers a step."""
    d = dict(DRA_FIG1B, **(dra or {}))
    if d["psi"] not in ("A", "Q"):
        raise ValueError("the numba yardstick implements Psi = A and Q")
    tb = tables or gridworld_tables()
    S, A = tb["next"].shape
    if q_init == "zero":
        q0 = np.zeros((S, A))
    elif q_init == "optimal":
        q0 = tb["q_star"].copy()
    else:
        raise ValueError(f"unknown q_init {q_init!r}")
    t0 = time.perf_counter()
    q, sigma, curves, steps, truncs = _train(
        tb["next"], tb["reward"], tb["term_next"], tb["start"], tb["learnable"], q0,
        float(d["alpha_q"]), float(d["alpha_sigma"]), float(d["beta"]), float(d["gamma"]),
        float(d["lam"]), float(d["sigma_base"]), float(d["sigma0"]), float(d["sigma_min"]),
        float(d["sigma_max"]), 0 if d["psi"] == "A" else 1, d["allocation"] == "equal",
        bool(d["learn_q"]), bool(d["learn_sigma"]), int(episodes), int(n_traj), int(max_steps),
        int(eval_every), int(n_rollouts), int(seed), bool(full_noise))
    secs = time.perf_counter() - t0
    return {"q": q, "sigma": sigma, "curves": curves, "env_steps": int(steps),
            "truncations": int(truncs), "seconds": secs}


_COMPILE_S: list[float] = []


def compile_seconds() -> float:
    """Compile the loop (once per process) and return how long that took."""
    if not _COMPILE_S:
        t0 = time.perf_counter()
        run(episodes=1, n_rollouts=1, eval_every=1, n_traj=1, max_steps=5)
        _COMPILE_S.append(time.perf_counter() - t0)
    return _COMPILE_S[0]


def sweep(runs: list[tuple[float, int]] | None = None, episodes: int = 5000, q_init: str = "zero",
          dra: dict | None = None, tables: dict | None = None, **kw) -> dict:
    """Runs ``(sigma0, seed)`` one after another on this core (default: Fig. 1b, sigma0 in
    1, 3, 4, 5 x seeds 0-4). Returns ``env_steps, seconds, env_steps_per_s, compile_s`` and the
    final objectives (last evaluation, and mean of the last 5) per run."""
    runs = runs if runs is not None else [(s0, sd) for s0 in (1.0, 3.0, 4.0, 5.0) for sd in range(5)]
    compile_s = compile_seconds()
    tables = tables or gridworld_tables()
    steps, secs, finals, last5 = 0, 0.0, [], []
    for s0, sd in runs:
        r = run(dict(dra or {}, sigma0=s0), episodes=episodes, seed=sd, q_init=q_init,
                tables=tables, **kw)
        steps += r["env_steps"]
        secs += r["seconds"]
        finals.append(float(r["curves"][-1, 0]))
        last5.append(float(np.mean(r["curves"][-5:, 0])))
    return {"runs": [list(x) for x in runs], "episodes": episodes, "q_init": q_init,
            "env_steps": steps, "seconds": secs, "env_steps_per_s": steps / secs,
            "compile_s": compile_s, "final_objective": finals, "final_objective_last5": last5}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sigma0s", default="1,3,4,5")
    ap.add_argument("--q-init", default="zero", choices=("zero", "optimal"))
    ap.add_argument("--full-noise", action="store_true", help="draw 2A + 2 numbers every step, as the engine")
    a = ap.parse_args(argv)
    s0s = [float(x) for x in a.sigma0s.split(",")]
    r = sweep([(s0, sd) for s0 in s0s for sd in range(a.seeds)], a.episodes, a.q_init,
              full_noise=a.full_noise)
    print(f"numba: compile {r['compile_s']:.2f} s; {len(r['runs'])} runs x {a.episodes} episodes: "
          f"{r['seconds']:.2f} s, {r['env_steps'] / 1e6:.1f} M env steps, "
          f"{r['env_steps_per_s'] / 1e6:.2f} M steps/s (one core)")
    fo = np.asarray(r["final_objective_last5"]).reshape(len(s0s), a.seeds)
    for s0, row in zip(s0s, fo):
        print(f"  sigma0 {s0:g}: final objective (mean of last 5 evals) {row.mean():.2f} "
              f"(runs {', '.join(f'{x:.1f}' for x in row)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
