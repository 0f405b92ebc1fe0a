"""Your own task in about 30 lines: a chain walk, trained by DRA through ``dra_jax.train``.

    python examples/custom_task.py [--episodes 300]

A corridor of N cells: start in the middle, +1 for reaching the right end, -1 for the left end
(both end the episode), 0 otherwise. Any object with the members of ``dra_jax.Task`` works.
"""
import argparse
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import dra_jax


@dataclass(frozen=True, eq=False)  # hashable: the task is a static argument of the program
class Corridor:
    n_states: int = 7
    n_actions: int = 2  # 0 = left, 1 = right

    @property
    def learnable(self):  # the end cells are never acted in: no memory cost there
        inner = np.arange(self.n_states)[:, None] % (self.n_states - 1) != 0
        return np.broadcast_to(inner, (self.n_states, self.n_actions)).copy()

    def reset(self, u, tparams, episode):
        return jnp.int32(self.n_states // 2)

    def step(self, state, action, tparams, episode):
        nxt = jnp.clip(state + 2 * action - 1, 0, self.n_states - 1).astype(jnp.int32)
        reward = jnp.where(nxt == self.n_states - 1, 1.0, jnp.where(nxt == 0, -1.0, 0.0))
        return nxt, reward.astype(jnp.float32), (nxt == 0) | (nxt == self.n_states - 1)

    def row(self, state, tparams):
        return state


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=300)
    args = ap.parse_args()
    task = Corridor()
    dra_jax.check_task(task)  # one jitted reset + step; a clear error if something is off
    static = dra_jax.AgentStatic(episodes=args.episodes, n_traj=5, max_steps=100, eval_every=50,
                                 n_rollouts=50)
    dra = dict(alpha_q=0.1, alpha_sigma=0.1, beta=5.0, gamma=0.95, lam=0.05, sigma_base=2.0,
               sigma0=1.0, sigma_min=0.01, sigma_max=10.0, psi="A", allocation="flexible",
               learn_q=True, learn_sigma=True)
    params = dra_jax.stack_params([dra_jax.make_run_params(dra, seed) for seed in range(4)])
    out = dra_jax.train(task, static, params)  # 4 seeds in one compiled, vmapped call
    print("expected reward at the evaluations (mean over seeds):",
          np.round(np.asarray(out.curves)[:, :, 1].mean(0), 3))
    print("final sigma, seed 0 (rows = cells, columns = left/right):")
    print(np.round(np.asarray(out.sigma)[0], 2))
