"""A plain-NumPy, one-run-at-a-time implementation of Algorithm 1 (slow; for tests and benchmarks).

Written straight from the paper, episode by episode, with no vectorization. It consumes
random numbers in the same order as the lane engine (:mod:`dra_jax.agent`) so the two can be
compared number for number: steps draw rows of ``[zeta (A), zeta' (A), u, u_reset]`` from
blocks of ``block`` rows, and after a gradient phase or an evaluation the run waits for the
end of the current block (where the engine's sync applies the sigma update or records the
evaluation). :class:`NoiseStream` with ``source="numpy"`` draws its own numbers instead (for
timing the reference without JAX).
"""
from __future__ import annotations

import numpy as np


class NoiseStream:
    """Rows of step noise, block by block; ``skip_block`` jumps to the next block."""

    def __init__(self, seed: int, n_actions: int, block: int, source: str = "jax",
                 noise_blocks: int = 8):
        self.seed, self.A, self.block, self.source = seed, n_actions, block, source
        self.nb = noise_blocks
        self._super = None
        self.j = 0
        self.i = 0
        self._rng = np.random.default_rng(seed)
        self._cur = self._make(0)

    def _make(self, j):
        if self.source == "jax":
            import jax

            from dra_jax.agent import block_noise

            sj = j // self.nb
            if self._super is None or self._super[0] != sj:
                rows = self.block * self.nb
                self._super = (sj, np.asarray(block_noise(jax.random.key(np.uint32(self.seed)), sj,
                                                          self.A, rows)))
            i0 = (j % self.nb) * self.block
            return self._super[1][i0:i0 + self.block]
        normals = self._rng.standard_normal((self.block, 2 * self.A)).astype(np.float32)
        unif = self._rng.random((self.block, 2), dtype=np.float32)
        return np.concatenate([normals, unif], axis=1)

    def next(self) -> np.ndarray:
        if self.i == self.block:
            self.skip_block()
        row = self._cur[self.i]
        self.i += 1
        return row

    def skip_block(self):
        self.j += 1
        self.i = 0
        self._cur = self._make(self.j)


def _softmax(x):
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


def _sample(p, u):
    cdf = np.cumsum(p)
    return min(int(np.sum(cdf <= u * cdf[-1])), len(p) - 1)


def run_reference(task_tables: dict, dra: dict, episodes: int, n_traj: int, max_steps: int,
                  eval_every: int, n_rollouts: int, seed: int, learnable: np.ndarray,
                  block: int = 16, noise_source: str = "jax", dtype=np.float32,
                  noise_blocks: int = 8):
    """Algorithm 1 on a tabular task given as ``{"next": [S, A], "reward": [S, A],
    "terminal": [S], "start": int}``. Returns ``q, sigma, curves [n_evals, 3], env_steps``.

    Supports Psi in A, Q, R, flexible and equal allocation, SGD on sigma, q initialized to 0.
    """
    nxt, rew, term, start = (task_tables["next"], task_tables["reward"], task_tables["terminal"],
                             int(task_tables["start"]))
    S, A = nxt.shape
    f = lambda x: np.asarray(x, dtype)  # noqa: E731
    beta, gamma = f(dra["beta"]), f(dra["gamma"])
    aq, asg, lam = f(dra["alpha_q"]), f(dra["alpha_sigma"]), f(dra["lam"])
    sb, smin, smax = f(dra["sigma_base"]), f(dra["sigma_min"]), f(dra["sigma_max"])
    psi, equal = dra["psi"], dra["allocation"] == "equal"
    q = np.zeros((S, A), dtype)
    sigma = np.full((S, A), f(dra["sigma0"]), dtype)
    noise = NoiseStream(seed, A, block, noise_source, noise_blocks)
    eval_eps = list(range(0, episodes + 1, eval_every))
    if eval_eps[-1] != episodes:
        eval_eps.append(episodes)
    curves = []
    steps = 0

    def rollout(mode):
        """One rollout from the start state; mode 'act' learns q, 'grad' returns the score
        terms, 'eval' only returns the return."""
        nonlocal q, steps
        s, t, ret, disc = start, 0, dtype(0), dtype(1)
        terms = []  # (s, score, psi_QA, S_t, disc)
        while True:
            row = noise.next()
            zeta, zeta2, u = row[:A], row[A:2 * A], row[2 * A]
            p = _softmax(beta * (q[s] + zeta * sigma[s]))
            a = _sample(p, u)
            s2, r, done = int(nxt[s, a]), f(rew[s, a]), bool(term[nxt[s, a]])
            steps += 1
            t += 1
            trunc = (t >= max_steps) and not done
            if mode == "act" and dra["learn_q"]:
                p2 = _softmax(beta * (q[s2] + zeta2 * sigma[s2]))
                target = r + gamma * (0.0 if done else 1.0) * np.dot(p2, q[s2])
                q[s, a] += aq * (target - q[s, a])
            if mode == "grad":
                onehot = np.eye(A, dtype=dtype)[a]
                score = beta * zeta * (onehot - p)
                psi_t = q[s, a] if psi == "Q" else q[s, a] - q[s].mean()
                terms.append((s, score, psi_t, ret, disc))
            ret = ret + disc * r
            disc = disc * gamma
            if done or trunc:
                return ret, terms
            s = s2

    def evaluate(k):
        total = 0.0
        for _ in range(n_rollouts):
            total += rollout("eval")[0]
        noise.skip_block()  # the engine records at the end of the block
        mask = learnable
        kl = 0.5 * ((sigma / sb) ** 2 - 1.0) - np.log(sigma / sb)
        cost = float(lam * np.sum(np.where(mask, kl, 0.0)))
        curves.append((total / n_rollouts - cost, total / n_rollouts, cost))

    for k in range(episodes + 1):
        if k in eval_eps:
            evaluate(k)
        if k == episodes:
            break
        rollout("act")
        G = np.zeros((S, A), dtype)
        for _ in range(n_traj):
            R, terms = rollout("grad")
            for s, score, psi_t, s_before, disc in terms:
                if psi == "R":
                    w = (R - s_before) / disc  # reward-to-go from t (Eq. 4)
                else:
                    w = psi_t
                G[s] += w * score
        noise.skip_block()  # the engine updates sigma at the end of the block
        grad = G / n_traj - lam * (sigma / sb ** 2 - 1.0 / sigma)
        grad = np.where(learnable, grad, 0.0)
        if equal:
            grad = np.where(learnable, grad.sum(), 0.0)
        if dra["learn_sigma"]:
            sigma = np.clip(sigma + asg * grad, smin, smax).astype(dtype)
    return q, sigma, np.asarray(curves), steps
