"""A plain-NumPy, one-run-at-a-time implementation of Algorithm 1 (slow; for tests and benchmarks).

Written straight from the paper, episode by episode, with no vectorization. It consumes
random numbers as the lane engine (:mod:`dra_jax.lane.agent`) does, so the two can be compared
number for number: it keeps the engine's clock (steps since the start of the run) and its
``W = sub_lanes`` sub-lanes; a step of sub-lane ``w`` at clock ``i`` takes sub-lane ``w``'s
``zeta (A), u, u_reset`` and the run's ``zeta' (A)`` from row ``i`` of the engine's noise. The acting episode runs on
sub-lane 0; gradient trajectory (evaluation rollout) ``j`` on sub-lane ``j % W``, each
sub-lane's one after another from the step after the acting episode (from the sync); after a
gradient phase or an evaluation the run waits for the end of the current block of ``block``
steps (where the engine's sync applies the sigma update or records the evaluation).
:class:`NoiseStream` with ``source="numpy"`` draws its own numbers instead (for timing the
reference without JAX).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _jit_block_noise():
    """The engine's :func:`dra_jax.lane.agent.block_noise`, compiled (the same bits; run eagerly it
    would be most of a reference run's time)."""
    import jax

    from dra_jax.lane.agent import block_noise

    return jax.jit(block_noise, static_argnums=(2, 3, 4))


class NoiseStream:
    """Rows of step noise by (clock, sub-lane), drawn a superblock at a time."""

    def __init__(self, seed: int, n_actions: int, block: int, source: str = "jax",
                 noise_blocks: int = 8, sub_lanes: int = 1):
        self.seed, self.A, self.block, self.source = seed, n_actions, block, source
        self.nb, self.W = noise_blocks, sub_lanes
        self._super = None

    def _make(self, sj):
        rows = self.block * self.nb
        if self.source == "jax":
            import jax

            return np.asarray(_jit_block_noise()(jax.random.key(np.uint32(self.seed)), sj,
                                                 self.A, rows, self.W))
        rng = np.random.default_rng([self.seed, sj])
        normals = rng.standard_normal((rows, (self.W + 1) * self.A)).astype(np.float32)
        unif = rng.random((rows, 2 * self.W), dtype=np.float32)
        return np.concatenate([normals, unif], axis=1)

    def row(self, clock: int, w: int) -> np.ndarray:
        """``[zeta (A), zeta' (A), u, u_reset]`` of sub-lane ``w`` at step ``clock``."""
        rows = self.block * self.nb
        sj = clock // rows
        if self._super is None or self._super[0] != sj:
            self._super = (sj, self._make(sj))
        r, A, W = self._super[1][clock % rows], self.A, self.W
        return np.concatenate([r[w * A:(w + 1) * A], r[W * A:(W + 1) * A],
                               r[(W + 1) * A + 2 * w:(W + 1) * A + 2 * w + 2]])

    def sync_after(self, clock: int) -> int:
        """The clock of the first step after the sync that ends the block of step ``clock - 1``."""
        return -(-clock // self.block) * self.block


def _softmax(x):
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


def _sample(p, u):
    cdf = np.cumsum(p)
    return min(int(np.sum(cdf <= u * cdf[-1])), len(p) - 1)


def _kl(sigma, sb):
    """KL(N(q, sigma^2) || N(q, sb^2)) per memory (Eq. 1's cost)."""
    return 0.5 * ((sigma / sb) ** 2 - 1.0) - np.log(sigma / sb)


def _entropy_and_grad(p, zeta, beta):
    """``H = -sum_a p_a log p_a`` of ``p = softmax(beta (q + zeta sigma))`` and its sigma
    gradient by the chain rule: ``dH/dx_a = -p_a (log p_a + H)``, ``dx_a/dsigma_a = beta zeta_a``."""
    logp = np.log(np.maximum(p, np.finfo(p.dtype).tiny))
    h = -np.sum(p * logp)
    return h, -beta * zeta * p * (logp + h)


class _Adam:
    """Adam (Kingma & Ba 2015) ascent on sigma: ``m, v`` moment estimates with bias correction,
    step ``lr * m_hat / (sqrt(v_hat) + eps)`` (b1 0.9, b2 0.999, eps 1e-8, as optax's defaults)."""

    def __init__(self, shape, dtype, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.m, self.v = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0

    def step(self, grad):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def run_reference(task_tables: dict, dra: dict, episodes: int, n_traj: int, max_steps: int,
                  eval_every: int, n_rollouts: int, seed: int, learnable: np.ndarray,
                  block: int = 16, noise_source: str = "jax", dtype=np.float32,
                  noise_blocks: int = 8, optimizer: str = "sgd", sub_lanes: int = 1,
                  eval_from: int = 0, pinned: bool = False):
    """Algorithm 1 on a tabular task given as ``{"next": [S, A], "reward": [S, A],
    "terminal": [S], "start": int}``. Returns ``q, sigma, curves [n_evals, 6], env_steps``;
    the curve columns are those of the engine: objective, expected reward, cost, truncated
    fraction, entropy term.

    Supports Psi in A, Q, R, flexible and equal allocation, q initialized to 0, optimizer
    ``sgd`` or ``adam`` on sigma, and the objectives (``dra["objective"]``) of Acerbi et al.
    (2022): ``dra`` (Eq. 1), ``elbo_step`` (Eq. 8: the KL of the visited state's memories and
    the action entropy at every step; Psi = R sees them in the reward,
    ``r~ = r + lam (H_t - KL_t)``, and each step adds their pathwise gradient
    ``lam (dH_t/dsigma - dKL_t/dsigma)``) and ``elbo`` (Eq. 10: Eq. 1 plus
    ``(lam / T) sum_t H_t``, its pathwise gradient per trajectory). ``sub_lanes``: the
    engine's ``AgentStatic.sub_lanes`` (whose timeline and noise rows this run follows).
    ``pinned`` (the engine's ``AgentStatic.pinned``, which the sweep sets for every run with
    ``learn_sigma = false``): sigma is never learned and there are no gradient rollouts, the
    acting episode goes straight to the sync. ``eval_from``: the
    evaluations of the schedule before this episode are skipped (``AgentStatic.eval_from``).
    """
    nxt, rew, term, start = (task_tables["next"], task_tables["reward"], task_tables["terminal"],
                             int(task_tables["start"]))
    S, A = nxt.shape
    f = lambda x: np.asarray(x, dtype)  # noqa: E731
    beta, gamma = f(dra["beta"]), f(dra["gamma"])
    aq, asg, lam = f(dra["alpha_q"]), f(dra["alpha_sigma"]), f(dra["lam"])
    sb, smin, smax = f(dra["sigma_base"]), f(dra["sigma_min"]), f(dra["sigma_max"])
    psi, equal = dra["psi"], dra["allocation"] == "equal_sgd"
    if dra["allocation"] == "equal" and dra["learn_sigma"]:
        raise ValueError("allocation 'equal' is searched before training; pin sigma or use "
                         "'equal_sgd'")
    objective = dra.get("objective", "dra")
    if objective not in ("dra", "elbo_step", "elbo"):
        raise ValueError(f"unknown objective {objective!r}")
    q = np.zeros((S, A), dtype)
    sigma = np.full((S, A), f(dra["sigma0"]), dtype)
    if optimizer == "adam":
        adam = _Adam((S, A), dtype, asg)
    elif optimizer != "sgd":
        raise ValueError(f"unknown optimizer {optimizer!r}")
    W = sub_lanes
    noise = NoiseStream(seed, A, block, noise_source, noise_blocks, W)
    clock = 0  # the engine's step counter of this run
    eval_eps = list(range(0, episodes + 1, eval_every))
    if eval_eps[-1] != episodes:
        eval_eps.append(episodes)
    eval_eps = [e for e in eval_eps if e >= eval_from]
    curves = []
    steps = 0

    def rollout(mode, w, i):
        """One rollout from the start state on sub-lane ``w``, its first step at clock ``i``; mode
        'act' learns q, 'grad' returns the score terms, 'eval' only the sums. Returns (return of the
        rewards Psi = R sees, task return, sum_t KL_t, sum_t H_t, T, truncated, score terms,
        pathwise ELBO gradient, undiscounted sum of the task's rewards)."""
        nonlocal q, steps
        s, t, ret, ret_task, disc = start, 0, dtype(0), dtype(0), dtype(1)
        kl_sum, h_sum, und = dtype(0), dtype(0), dtype(0)
        terms = []  # (s, score, psi_QA, S_t, disc)
        path = np.zeros((S, A), dtype)  # sum_t of dH_t/dsigma (elbo) or the Eq. 8 step terms
        while True:
            row = noise.row(i + t, w)
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
            if objective == "dra":  # (skipped: keeps the plain reference's speed for benchmarks)
                h = kl_t = dtype(0)
            else:
                h, dh = _entropy_and_grad(p, zeta, beta)
                kl_t = np.sum(_kl(sigma[s], sb))
            r_eff = r + lam * (h - kl_t) if objective == "elbo_step" else r
            if mode == "grad":
                onehot = np.eye(A, dtype=dtype)[a]
                score = beta * zeta * (onehot - p)
                psi_t = q[s, a] if psi == "Q" else q[s, a] - q[s].mean()
                terms.append((s, score, psi_t, ret, disc))
                if objective == "elbo_step":
                    path[s] += lam * (dh - (sigma[s] / sb ** 2 - 1.0 / sigma[s]))
                elif objective == "elbo":
                    path[s] += dh
            ret = ret + disc * (r_eff if psi == "R" else r)
            ret_task = ret_task + disc * r
            und = und + r
            kl_sum, h_sum = kl_sum + kl_t, h_sum + h
            disc = disc * gamma
            if done or trunc:
                return ret, ret_task, kl_sum, h_sum, t, trunc, terms, path, und
            s = s2

    def evaluate(k):
        nonlocal clock
        total = n_trunc = total_und = 0.0
        kl_tot = h_tot = ht_tot = 0.0
        ends = [clock] * W  # each sub-lane's clock
        for j in range(n_rollouts):  # rollout j on sub-lane j % W, after the sub-lane's last one
            _, ret_task, kl_sum, h_sum, t, trunc, _, _, und = rollout("eval", j % W, ends[j % W])
            ends[j % W] += t
            total += ret_task
            total_und += und
            n_trunc += trunc
            kl_tot, h_tot, ht_tot = kl_tot + kl_sum, h_tot + h_sum, ht_tot + h_sum / t
        clock = noise.sync_after(max(ends))  # the engine records at the end of the block
        if objective == "elbo_step":
            cost, ent = lam * kl_tot / n_rollouts, lam * h_tot / n_rollouts
        else:
            cost = float(lam * np.sum(np.where(learnable, _kl(sigma, sb), 0.0)))
            ent = lam * ht_tot / n_rollouts if objective == "elbo" else 0.0
        expected = total / n_rollouts
        curves.append((expected - cost + ent, expected, cost, n_trunc / n_rollouts, ent,
                       total_und / n_rollouts))

    for k in range(episodes + 1):
        if k in eval_eps:
            evaluate(k)
        if k == episodes:
            break
        clock += rollout("act", 0, clock)[4]  # on sub-lane 0
        if pinned:  # no gradient rollouts: the engine syncs at the end of the acting block
            clock = noise.sync_after(clock)
            continue
        G = np.zeros((S, A), dtype)
        ends = [clock] * W  # the trajectories start at the step after the acting episode
        for j in range(n_traj):  # trajectory j on sub-lane j % W
            R, _, _, _, T, _, terms, path, _ = rollout("grad", j % W, ends[j % W])
            ends[j % W] += T
            for s, score, psi_t, s_before, disc in terms:
                if psi == "R":
                    w = (R - s_before) / disc  # reward-to-go from t (Eq. 4)
                else:
                    w = psi_t
                G[s] += w * score
            G += path * (lam / T if objective == "elbo" else 1.0)
        clock = noise.sync_after(max(ends))  # the engine updates sigma at the end of the block
        kl_once = 0.0 if objective == "elbo_step" else lam  # Eq. 8 pays it per access (above)
        grad = G / n_traj - kl_once * (sigma / sb ** 2 - 1.0 / sigma)
        grad = np.where(learnable, grad, 0.0)
        if equal:
            # the mean of the learned memories' directions (see agent.sigma_gradient)
            grad = np.where(learnable, grad.sum() / f(max(int(learnable.sum()), 1)), 0.0)
        if dra["learn_sigma"] and not pinned:
            step = adam.step(grad) if optimizer == "adam" else asg * grad
            sigma = np.clip(sigma + step, smin, smax).astype(dtype)
    return q, sigma, np.asarray(curves), steps
