"""Shared by the engine-against-reference tests (test_agent.py, test_sub_lanes.py): the
grid-world, DRA's grid-world parameters (Table B.1), a batch trained by the lane engine, and the
plain-NumPy reference of one run with the engine's static settings (float64)."""
import jax
import numpy as np

from dra_jax.envs.gridworld import GridTask
from dra_jax.lane import agent, batching
from dra_jax.lane.reference import run_reference

TASK = GridTask()
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


def train(st, dras, seeds, **kw):
    """The engine on runs ``dras`` x ``seeds`` in one batch (``kw``: train_batch's options)."""
    params = agent.stack_params([agent.make_run_params(d, s) for d, s in zip(dras, seeds)])
    return jax.tree.map(np.asarray, batching.train_batch(TASK, st, params, **kw))


def reference(st, dra, seed, **kw):
    """``run_reference`` of one run with ``st``'s episodes, rollouts, evaluation, block and noise
    blocks, pinning and evaluation start, in float64 (``kw``: optimizer, sub_lanes):
    ``(q, sigma, curves, env_steps)``."""
    t = TASK.tables
    kw.setdefault("sub_lanes", st.sub_lanes)
    tables = {"next": t.next_state[0], "reward": t.reward[0], "terminal": t.terminal[0],
              "start": t.start}
    return run_reference(tables, dra, st.episodes, st.n_traj, st.max_steps, st.eval_every,
                         st.n_rollouts, seed=seed, learnable=TASK.learnable, block=st.block,
                         noise_blocks=st.noise_blocks, dtype=np.float64,
                         eval_from=st.eval_from, pinned=st.pinned, **kw)
