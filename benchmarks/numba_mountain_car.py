"""The mountain-car yardstick: Algorithm 1 on MountainCar-v0 as a numba-compiled scalar loop
(one run, one core), beside the grid-world one (``benchmarks/numba_ref.py``).

    python benchmarks/numba_mountain_car.py [--episodes 5000] [--seeds 5] [--psis R,Q,A]

The same work as ``configs/mountain_car.toml`` (Table B.1, mountain-car column) in the lane
engine and in the plain-NumPy loop of ``benchmarks/bench_mountain_car.py``:

* the MountainCar-v0 equations of gymnax's ``step_env`` (force 0.001, gravity 0.0025, speed
  clipped to 0.07, position to [-1.2, 0.6], the speed zeroed at the left wall, the goal at
  x >= 0.5 with v >= 0, reward -1 a step, 200-step limit: a truncation, which bootstraps), start
  x = -0.5, v = 0; observation cell ``round((obs - low) * [10, 100])`` clipped into 19 x 15;
* per episode an acting episode (expected SARSA of the means), ``n_traj`` gradient rollouts
  accumulating ``Psi_t * beta * zeta * (onehot(a) - pi)`` (Eq. 5, Psi in A | Q | R, R the
  reward-to-go of Eq. 4), the sigma step ``alpha_sigma (G / n_traj - lam dKL/dsigma)`` clipped;
  every ``eval_every`` episodes ``n_rollouts`` evaluation rollouts;
* its own random numbers (``np.random`` in ``@njit``, seeded per run), float64: the same
  distribution of numbers as the engine, not the same numbers.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from numba import njit

MIN_X, MAX_X, MAX_V, GOAL_X, FORCE, GRAVITY = -1.2, 0.6, 0.07, 0.5, 0.001, 0.0025
NX, NV, A = 19, 15, 3
PSI = {"A": 0, "Q": 1, "R": 2}


@njit(cache=False)
def _row(x, v):
    i = min(max(int(np.round((x - MIN_X) * 10.0)), 0), NX - 1)
    j = min(max(int(np.round((v + MAX_V) * 100.0)), 0), NV - 1)
    return i * NV + j


@njit(cache=False)
def _probs(q, sigma, s, z, beta, out):
    m = -1e300
    for a in range(A):
        out[a] = beta * (q[s, a] + z[a] * sigma[s, a])
        m = max(m, out[a])
    tot = 0.0
    for a in range(A):
        out[a] = np.exp(out[a] - m)
        tot += out[a]
    for a in range(A):
        out[a] /= tot


@njit(cache=False)
def _rollout(mode, q, sigma, G, beta, gamma, alpha_q, psi, max_steps, ss, aa, sc, ww, before, dd):
    """One rollout; mode 0 act (learns q), 1 grad (adds to G), 2 eval. Returns (return, steps)."""
    x, v = -0.5, 0.0
    s = _row(x, v)
    p, p2, z, z2 = np.empty(A), np.empty(A), np.empty(A), np.empty(A)
    ret, disc, T = 0.0, 1.0, 0
    for t in range(max_steps):
        for a in range(A):
            z[a] = np.random.standard_normal()
        _probs(q, sigma, s, z, beta, p)
        u, c, act = np.random.random(), 0.0, A - 1
        for a in range(A):
            c += p[a]
            if u < c:
                act = a
                break
        v = min(max(v + (act - 1) * FORCE - np.cos(3.0 * x) * GRAVITY, -MAX_V), MAX_V)
        x = min(max(x + v, MIN_X), MAX_X)
        if x == MIN_X and v < 0.0:
            v = 0.0
        term = x >= GOAL_X and v >= 0.0
        r = -1.0
        s2 = _row(x, v)
        if mode == 0:
            for a in range(A):
                z2[a] = np.random.standard_normal()
            _probs(q, sigma, s2, z2, beta, p2)
            nxt = 0.0
            if not term:
                for a in range(A):
                    nxt += p2[a] * q[s2, a]
            q[s, act] += alpha_q * (r + gamma * nxt - q[s, act])
        elif mode == 1:
            w = q[s, act]
            if psi == 0:
                w -= (q[s, 0] + q[s, 1] + q[s, 2]) / A
            ss[t], aa[t], ww[t], before[t], dd[t] = s, act, w, ret, disc
            for a in range(A):
                sc[t, a] = beta * z[a] * ((1.0 if a == act else 0.0) - p[a])
        ret += disc * r
        disc *= gamma
        T = t + 1
        if term:
            break
        s = s2
    if mode == 1:
        for t in range(T):
            w = (ret - before[t]) / dd[t] if psi == 2 else ww[t]
            for a in range(A):
                G[ss[t], a] += w * sc[t, a]
    return ret, T


@njit(cache=False)
def _train(seed, episodes, n_traj, max_steps, eval_every, n_rollouts, alpha_q, alpha_sigma,
           beta, gamma, lam, sigma_base, sigma0, sigma_min, sigma_max, psi):
    np.random.seed(seed)
    S = NX * NV
    q, sigma, G = np.zeros((S, A)), np.full((S, A), sigma0), np.zeros((S, A))
    ss, aa = np.zeros(max_steps, np.int64), np.zeros(max_steps, np.int64)
    sc, ww = np.zeros((max_steps, A)), np.zeros(max_steps)
    before, dd = np.zeros(max_steps), np.zeros(max_steps)
    steps, curve = 0, []
    for k in range(episodes + 1):
        if k % eval_every == 0 or k == episodes:
            tot = 0.0
            for _ in range(n_rollouts):
                R, T = _rollout(2, q, sigma, G, beta, gamma, alpha_q, psi, max_steps, ss, aa, sc,
                                ww, before, dd)
                tot += R
                steps += T
            kl = np.sum(0.5 * ((sigma / sigma_base) ** 2 - 1.0) - np.log(sigma / sigma_base))
            curve.append(tot / n_rollouts - lam * kl)
        if k == episodes:
            break
        steps += _rollout(0, q, sigma, G, beta, gamma, alpha_q, psi, max_steps, ss, aa, sc, ww,
                          before, dd)[1]
        G[:] = 0.0
        for _ in range(n_traj):
            steps += _rollout(1, q, sigma, G, beta, gamma, alpha_q, psi, max_steps, ss, aa, sc,
                              ww, before, dd)[1]
        g = G / n_traj - lam * (sigma / sigma_base ** 2 - 1.0 / sigma)
        sigma = np.minimum(np.maximum(sigma + alpha_sigma * g, sigma_min), sigma_max)
    return steps, np.asarray(curve)


DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.1, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0)


def run(psi: str = "A", seed: int = 0, episodes: int = 5000, n_traj: int = 10,
        max_steps: int = 200, eval_every: int = 100, n_rollouts: int = 100) -> dict:
    d = DRA
    t0 = time.perf_counter()
    steps, curve = _train(seed, episodes, n_traj, max_steps, eval_every, n_rollouts,
                          d["alpha_q"], d["alpha_sigma"], d["beta"], d["gamma"], d["lam"],
                          d["sigma_base"], d["sigma0"], d["sigma_min"], d["sigma_max"], PSI[psi])
    return {"env_steps": int(steps), "seconds": time.perf_counter() - t0, "curve": curve}


def sweep(psis=("R", "Q", "A"), seeds: int = 5, episodes: int = 5000) -> dict:
    """Compile (timed apart), then the config's runs one after another on this core."""
    t0 = time.perf_counter()
    run(episodes=1, n_rollouts=1, eval_every=1, n_traj=1, max_steps=5)
    compile_s = time.perf_counter() - t0
    steps, secs, finals = 0, 0.0, []
    for psi in psis:
        for sd in range(seeds):
            r = run(psi, sd, episodes)
            steps += r["env_steps"]
            secs += r["seconds"]
            finals.append(float(r["curve"][-1]))
    return {"runs": len(psis) * seeds, "episodes": episodes, "compile_s": compile_s,
            "seconds": secs, "env_steps": steps, "env_steps_per_s": steps / secs,
            "final_objective": finals}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--psis", default="R,Q,A")
    a = ap.parse_args(argv)
    r = sweep(tuple(a.psis.split(",")), a.seeds, a.episodes)
    print(f"numba mountain car: compile {r['compile_s']:.2f} s; {r['runs']} runs x {a.episodes} "
          f"episodes: {r['seconds']:.2f} s, {r['env_steps'] / 1e6:.1f} M env steps, "
          f"{r['env_steps_per_s'] / 1e6:.2f} M steps/s (one core); final objectives "
          f"{np.round(r['final_objective'], 1).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
