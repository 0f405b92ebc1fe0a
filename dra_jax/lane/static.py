"""What shapes a lane program and what each run traces: :class:`AgentStatic` (static, hashable)
and the per-run parameters (:func:`make_run_params`, :func:`stack_params`)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

PSI_CODES = {"A": 0, "Q": 1, "R": 2}
# the objective (Acerbi et al. 2022): 0 the paper's F, 1 Eq. 8 (per-access KL and action
# entropy per step), 2 Eq. 10 (F plus (lam / T) * sum_t H_t)
OBJECTIVE_CODES = {"dra": 0, "elbo_step": 1, "elbo": 2}


class AgentStatic(NamedTuple):
    """Everything that shapes the compiled program (hashable). All else is traced per run."""

    episodes: int
    n_traj: int = 10
    grad: str = "analytic"
    max_steps: int = 500
    eval_every: int = 100
    n_rollouts: int = 100
    snapshots: tuple[int, ...] = ()
    q_init: str = "zero"
    optimizer: str = "sgd"
    need_R: bool = False  # compile the reward-to-go (Psi = R) accumulators
    need_entropy: bool = False  # compile the ELBO terms (objective elbo_step | elbo)
    block: int = 16  # env steps between syncs
    noise_blocks: int = 8  # blocks per random-number draw (a superblock)
    unroll: int = 1  # unroll of the step loop within a block
    sub_lanes: int = 1  # W: lanes per run (gradient and evaluation rollouts side by side)
    # sigma is never learned (every run of the program has learn_sigma = false): the acting
    # episode goes straight to the sync, with no gradient rollouts (they would only feed a
    # discarded gradient)
    pinned: bool = False
    eval_from: int = 0  # evaluations only at the episodes >= this of the every-`eval_every` schedule

    @property
    def eval_episodes(self) -> np.ndarray:
        eps = list(range(0, self.episodes + 1, self.eval_every))
        if eps[-1] != self.episodes:
            eps.append(self.episodes)
        eps = [e for e in eps if e >= self.eval_from]
        if not eps:
            raise ValueError(f"eval_from = {self.eval_from} leaves no evaluation (episodes = "
                             f"{self.episodes})")
        return np.asarray(eps, np.int32)


RUN_PARAM_KEYS = ("alpha_q", "alpha_sigma", "beta", "gamma", "lam", "sigma_base", "sigma0",
                  "sigma_min", "sigma_max")


def make_run_params(dra: dict, seed: int, task_params: dict | None = None) -> dict:
    """The traced per-run parameters of one run from its ``[dra]`` values (numpy scalars)."""
    if dra["allocation"] == "equal" and dra["learn_sigma"]:
        raise ValueError("allocation 'equal' is a shared sigma found by a search before "
                         "training (the sweep command runs it: dra_jax.lane.equal_search); to "
                         "train one run, pin sigma (learn_sigma = false, sigma0 = the shared "
                         "sigma) or learn it by gradient (allocation = 'equal_sgd')")
    p = {k: np.float32(dra[k]) for k in RUN_PARAM_KEYS}
    p["psi"] = np.int32(PSI_CODES[dra["psi"]])
    p["equal"] = np.bool_(dra["allocation"] == "equal_sgd")
    p["learn_q"] = np.bool_(dra["learn_q"])
    p["learn_sigma"] = np.bool_(dra["learn_sigma"])
    p["objective"] = np.int32(OBJECTIVE_CODES[dra.get("objective", "dra")])
    p["seed"] = np.uint32(seed)
    p["task"] = {k: np.asarray(v) for k, v in (task_params or {}).items()}
    return p


def stack_params(params: list[dict]) -> dict:
    """Stack per-run parameter dicts into one batch (leading axis = runs)."""
    return jax.tree.map(lambda *xs: np.stack(xs), *params)
