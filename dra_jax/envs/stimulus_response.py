"""Stimulus-response learning in blocks: the classic capacity (set-size) paradigm.

A block presents ``set_size`` stimuli (2 to 6), interleaved in random order, each ``reps``
times (about 12 to 15). There are 3 actions; each stimulus has one correct action, and the
reward is 1 for it and 0 otherwise. Memories start afresh in every block. As a contextual
bandit each trial is a one-step episode: state = the stimulus (0-based within its block).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

N_ACTIONS = 3
MAX_SET_SIZE = 6


class Design(NamedTuple):
    """Trial sequences of one subject, flattened over blocks (all ``[T]``)."""

    block: np.ndarray  # int
    trial: np.ndarray  # int, 0-based within the block
    state: np.ndarray  # int, stimulus within the block
    correct: np.ndarray  # int, the stimulus's correct action
    set_size: np.ndarray  # int


def make_design(rng: np.random.Generator, set_sizes=(2, 3, 4, 5, 6), reps: int = 13,
                n_actions: int = N_ACTIONS) -> Design:
    """One subject's blocks, one per entry of ``set_sizes`` (in that order): each stimulus
    ``reps`` times in a random interleaved order, a random correct action per stimulus."""
    cols = {k: [] for k in Design._fields}
    for b, ns in enumerate(set_sizes):
        if not 1 <= ns <= MAX_SET_SIZE:
            raise ValueError(f"set_size must be in [1, {MAX_SET_SIZE}], got {ns}")
        states = rng.permutation(np.repeat(np.arange(ns), reps))
        correct = rng.integers(0, n_actions, ns)
        cols["block"].append(np.full(states.size, b))
        cols["trial"].append(np.arange(states.size))
        cols["state"].append(states)
        cols["correct"].append(correct[states])
        cols["set_size"].append(np.full(states.size, ns))
    return Design(*(np.concatenate(cols[k]).astype(np.int64) for k in Design._fields))


def reward(correct: np.ndarray, action: np.ndarray) -> np.ndarray:
    """1 for the correct action, 0 otherwise (0 for a missed response, ``action = -1``)."""
    return ((action == correct) & (action >= 0)).astype(np.float32)


def correct_from_data(state: np.ndarray, action: np.ndarray, reward_: np.ndarray,
                      block: np.ndarray, n_actions: int = N_ACTIONS) -> np.ndarray:
    """Each trial's correct action as the data reveal it: the action rewarded for that stimulus
    in that block; if it never was, the lowest action never seen unrewarded (for the posterior
    predictive check on a subject's own trial sequence)."""
    out = np.zeros(state.shape, np.int64)
    for key in set(zip(block.tolist(), state.tolist())):
        rows = (block == key[0]) & (state == key[1])
        hit = rows & (reward_ > 0) & (action >= 0)
        if hit.any():
            out[rows] = action[hit][0]
        else:
            wrong = set(action[rows & (action >= 0)].tolist())
            free = [a for a in range(n_actions) if a not in wrong]
            out[rows] = free[0] if free else 0
    return out
