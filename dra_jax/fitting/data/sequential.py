"""Choice data of a sequential task (the grid-world): the columns of :mod:`dra_jax.fitting.data`
plus ``next_state`` (0-based, in range) and ``done`` (0/1: ``next_state`` is terminal), and
optionally ``truncated`` (0/1: the episode was cut short, e.g. by a time limit; the target
bootstraps and the next row may start a new episode anywhere).

Rules (a researcher's usual layout; each breach raises :class:`DataError` naming the column
and the first bad row):

* a **block** is a sequence of episodes with the same memories: memories persist across the
  episodes of a block and start afresh at a new block (a new session, or a new maze);
* an **episode** is the run of rows up to ``done = 1`` (or ``truncated = 1``); the block's last
  row ends its episode too (a truncation if ``done = 0``);
* within an episode the next row continues where the previous one left: ``state[i + 1] ==
  next_state[i]`` when row i is not the end of an episode (else column ``state`` at row i + 1 is
  reported);
* a missed response (empty action) still needs ``next_state`` and ``done`` (normally
  ``next_state = state``): it adds no likelihood term and does not update the means, but an
  episode that ends there still ends (sigma update).

The padded arrays (:class:`dra_jax.fitting.sequential.SeqTrials`) align episodes across the
subjects of a batch: episode k of every subject starts at the same position, padded to the
longest k-th episode, so the k-th episodes' rollouts run in one call. Each step keeps its index
among the subject's own rows and its own episode index, which seed its noise: a subject's
numbers do not depend on its batch-mates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dra_jax.fitting.data import common as data_mod
from dra_jax.fitting.data.common import DataError, integers
from dra_jax.fitting.sequential import SeqTrials

SEQ_REQUIRED = ("next_state", "done")


def validate(data, n_states: int, n_actions: int) -> pd.DataFrame:
    """:func:`dra_jax.fitting.data.validate` plus the sequential columns and continuity."""
    out = data_mod.validate(data, n_states, n_actions)  # (a path was read and checked there)
    src = data.reset_index(drop=True) if isinstance(data, pd.DataFrame) else \
        pd.read_csv(data, dtype=str, keep_default_na=False, na_values=[""])
    src.columns = [str(c).strip() for c in src.columns]
    for col in SEQ_REQUIRED:
        if col not in src.columns:
            raise DataError(col, None, f"missing column; a sequential task requires "
                                       f"{', '.join(data_mod.REQUIRED + SEQ_REQUIRED)}")
    out["next_state"] = integers(src, "next_state", lo=0, hi=n_states)
    out["done"] = integers(src, "done", lo=0, hi=2)
    out["truncated"] = integers(src, "truncated", lo=0, hi=2) if "truncated" in src.columns \
        else np.zeros(len(out), np.int64)
    subj, blk = out["subject"].to_numpy(), out["block"].to_numpy()
    last = np.concatenate([(subj[1:] != subj[:-1]) | (blk[1:] != blk[:-1]), [True]])
    ends = last | (out["done"].to_numpy() > 0) | (out["truncated"].to_numpy() > 0)
    s, s2 = out["state"].to_numpy(), out["next_state"].to_numpy()
    broken = ~ends[:-1] & (s[1:] != s2[:-1])
    if broken.any():
        i = int(np.flatnonzero(broken)[0]) + 1
        raise DataError("state", i, f"the episode continues from row {i - 1} (done = 0), so "
                                    f"state must equal its next_state {s2[i - 1]}, got {s[i]}")
    out["episode_end"] = ends
    return out


@dataclass
class SeqDataset(data_mod.Dataset):
    """A validated sequential data set; ``trials`` is a :class:`SeqTrials` (numpy arrays)."""

    def subset(self, subjects: list[str]) -> "SeqDataset":
        return to_dataset(self.df[self.df["subject"].isin(subjects)], self.n_states,
                          self.n_actions, subjects)


def episodes_of(g: pd.DataFrame) -> list[np.ndarray]:
    """Row positions (within one subject's rows) of each of its episodes, in order."""
    ends = np.flatnonzero(g["episode_end"].to_numpy())
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [np.arange(a, b + 1) for a, b in zip(starts, ends)]


def to_dataset(df: pd.DataFrame, n_states: int, n_actions: int,
               subjects: list[str] | None = None) -> SeqDataset:
    """Episode-aligned padded arrays of the subjects (in the order given)."""
    order = list(dict.fromkeys(df["subject"])) if subjects is None else list(subjects)
    groups = {k: g for k, g in df.groupby("subject", sort=False)}
    missing = [s for s in order if s not in groups]
    if missing:
        raise DataError("subject", None, f"no rows for subject(s) {', '.join(missing)}")
    eps = [episodes_of(groups[s]) for s in order]
    n_ep = max(len(e) for e in eps)
    slot = np.array([max((len(e[k]) for e in eps if k < len(e)), default=0) for k in range(n_ep)])
    offset = np.concatenate([[0], np.cumsum(slot)[:-1]])
    n, t_max = len(order), int(slot.sum())
    arr = {k: np.zeros((n, t_max), dt) for k, dt in (
        ("s", np.int32), ("a", np.int32), ("r", np.float32), ("s2", np.int32), ("done", bool),
        ("end", bool), ("new_block", bool), ("valid", bool), ("t_own", np.int32),
        ("ep_own", np.int32))}
    arr["a"][:] = -1
    for i, sid in enumerate(order):
        g = groups[sid]
        b = g["block"].to_numpy()
        nb = np.concatenate([[True], b[1:] != b[:-1]])
        cols = {"s": g["state"], "a": g["action"], "r": g["reward"], "s2": g["next_state"],
                "done": g["done"] > 0, "new_block": nb}
        for k, rows in enumerate(eps[i]):
            pos = offset[k] + np.arange(len(rows))
            for name, col in cols.items():
                arr[name][i, pos] = np.asarray(col)[rows]
            arr["valid"][i, pos] = True
            arr["t_own"][i, pos] = rows
            arr["ep_own"][i, offset[k]:offset[k] + slot[k]] = k
            arr["end"][i, offset[k] + slot[k] - 1] = True
    trials = SeqTrials(*(arr[f] for f in SeqTrials._fields))
    valid = arr["valid"]
    n_tr = ((arr["a"] >= 0) & valid).sum(1)
    n_mi = ((arr["a"] < 0) & valid).sum(1)
    return SeqDataset(df, order, trials, n_tr, n_mi, n_states, n_actions)


def load(data, n_states: int, n_actions: int) -> SeqDataset:
    return to_dataset(validate(data, n_states, n_actions), n_states, n_actions)
