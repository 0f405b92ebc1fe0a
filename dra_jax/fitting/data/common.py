"""Choice data: a long-format table (CSV or pandas DataFrame), one row per trial.

Columns ``subject, block, trial, state, action, reward``: states and actions are 0-based
integers, an empty action is a missed response (no likelihood term, no update). Other columns
(e.g. ``set_size``) are kept as covariates. Rows are sorted by subject, block and trial, each
subject's rows together. Validation raises :class:`DataError` naming the column and the first
bad row (0-based row of the table; in a CSV file that is line row + 2).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dra_jax.fitting.particle import Trials

REQUIRED = ("subject", "block", "trial", "state", "action", "reward")


class DataError(ValueError):
    """Bad choice data; ``column`` and ``row`` name the first problem."""

    def __init__(self, column: str, row: int | None, message: str):
        self.column, self.row = column, row
        where = (f"column {column!r}" if not column.startswith("-") else column) + \
            (f", row {row} (CSV line {row + 2})" if row is not None else "")
        super().__init__(f"data error: {where}: {message}")


def integers(df: pd.DataFrame, col: str, lo: int | None = None, hi: int | None = None,
              allow_empty: bool = False) -> np.ndarray:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    bad = (num.isna() & ~empty) | (~num.isna() & (num != np.round(num)))
    if not allow_empty:
        bad |= empty
    rng = ""
    if lo is not None:
        bad |= ~num.isna() & (num < lo)
        rng = f" in [{lo}, {hi - 1}]" if hi is not None else f" >= {lo}"
    if hi is not None:
        bad |= ~num.isna() & (num >= hi)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(col, i, f"expected an integer{rng}{' or empty' if allow_empty else ''}, "
                                f"got {raw.iloc[i]!r}")
    return np.where(empty.to_numpy(), -1, num.fillna(-1).to_numpy()).astype(np.int64)


def validate(data, n_states: int, n_actions: int) -> pd.DataFrame:
    """Read (a path or a DataFrame) and check the table; returns a clean DataFrame with integer
    ``block, trial, state, action`` (-1 = missed) and float ``reward``. Raises DataError."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise DataError("--data", None, f"no such file: {path}")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DataError("--data", None, f"{path} is not a readable CSV: {e}") from None
    elif isinstance(data, pd.DataFrame):
        df = data.reset_index(drop=True)
    else:
        raise DataError("data", None, f"expected a CSV path or a pandas DataFrame, got {type(data).__name__}")
    df.columns = [str(c).strip() for c in df.columns]
    for col in REQUIRED:
        if col not in df.columns:
            raise DataError(col, None, f"missing column; required: {', '.join(REQUIRED)}")
    if len(df) == 0:
        raise DataError("subject", None, "the table has no rows")
    out = df.copy()
    out["subject"] = df["subject"].astype(str).str.strip()
    empty_subj = out["subject"].isin(["", "nan", "None"])
    if empty_subj.any():
        raise DataError("subject", int(np.flatnonzero(empty_subj.to_numpy())[0]), "empty subject")
    out["block"] = integers(df, "block", lo=0)
    out["trial"] = integers(df, "trial", lo=0)
    out["state"] = integers(df, "state", lo=0, hi=n_states)
    out["action"] = integers(df, "action", lo=0, hi=n_actions, allow_empty=True)
    rew = pd.to_numeric(df["reward"], errors="coerce")
    rew_empty = df["reward"].isna() | (df["reward"].astype(str).str.strip() == "")
    bad = (rew.isna() & ~(rew_empty & (out["action"] < 0))) | ~np.isfinite(rew.fillna(0.0))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError("reward", i, f"expected a finite number (empty only on a missed trial), "
                                     f"got {df['reward'].iloc[i]!r}")
    out["reward"] = rew.fillna(0.0).astype(np.float64)
    if "set_size" in df.columns:
        out["set_size"] = integers(df, "set_size", lo=1, hi=n_states + 1)
    # sorted: each subject's rows together, (block, trial) strictly increasing within a subject
    subj = out["subject"].to_numpy()
    change = np.flatnonzero(subj[1:] != subj[:-1]) + 1
    starts = np.concatenate([[0], change])
    seen = set()
    for st in starts:
        if subj[st] in seen:
            raise DataError("subject", int(st), f"subject {subj[st]!r} appears again after other "
                                                f"subjects; sort rows by subject, block, trial")
        seen.add(subj[st])
    same = np.concatenate([[False], subj[1:] == subj[:-1]])
    b, t = out["block"].to_numpy(), out["trial"].to_numpy()
    prev_b, prev_t = np.roll(b, 1), np.roll(t, 1)
    bad_b = same & (b < prev_b)
    bad_t = same & (b == prev_b) & (t <= prev_t)
    first = [(int(np.flatnonzero(m)[0]), c) for c, m in (("block", bad_b), ("trial", bad_t)) if m.any()]
    if first:
        i, col = min(first)
        raise DataError(col, i, f"rows are not sorted by subject, block, trial "
                                f"({col} {out[col].iloc[i]} after {out[col].iloc[i - 1]})")
    if "set_size" in out:
        _check_set_size(out, same & (b == prev_b))
    return out


def _check_set_size(df: pd.DataFrame, same_block: np.ndarray) -> None:
    """``set_size`` is constant within a block and every stimulus index is below it."""
    ns = df["set_size"].to_numpy()
    bad = same_block & (ns != np.roll(ns, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError("set_size", i, f"changes inside a block ({ns[i]} after {ns[i - 1]}, "
                                       f"block {df['block'].iloc[i]})")
    bad = df["state"].to_numpy() >= ns
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError("state", i, f"stimulus index {df['state'].iloc[i]} >= set_size {ns[i]}")


@dataclass
class Dataset:
    """Validated data as padded arrays, one row per subject."""

    df: pd.DataFrame
    subjects: list[str]
    trials: Trials  # numpy arrays, leading axis = subjects
    n_trials: np.ndarray  # observed (non-missed) trials per subject
    n_missed: np.ndarray
    n_states: int
    n_actions: int

    def subset(self, subjects: list[str]) -> "Dataset":
        return to_dataset(self.df[self.df["subject"].isin(subjects)], self.n_states,
                          self.n_actions, subjects)


def subject_seed(subject: str) -> int:
    """A subject's own random stream, from its label (never its position in a batch)."""
    return zlib.crc32(str(subject).encode()) & 0x7FFFFFFF


def to_dataset(df: pd.DataFrame, n_states: int, n_actions: int,
               subjects: list[str] | None = None) -> Dataset:
    """Pad every subject's trials to the longest; ``block[t]`` marks the stimuli that occur in
    trial t's block (where DRA's rollouts draw their stimuli)."""
    order = list(dict.fromkeys(df["subject"])) if subjects is None else list(subjects)
    groups = {k: g for k, g in df.groupby("subject", sort=False)}
    missing = [s for s in order if s not in groups]
    if missing:
        raise DataError("subject", None, f"no rows for subject(s) {', '.join(missing)}")
    t_max = max(len(groups[s]) for s in order)
    n = len(order)
    s_arr = np.zeros((n, t_max), np.int32)
    a_arr = np.full((n, t_max), -1, np.int32)
    r_arr = np.zeros((n, t_max), np.float32)
    nb = np.zeros((n, t_max), bool)
    valid = np.zeros((n, t_max), bool)
    blk = np.zeros((n, t_max, n_states), np.float32)
    ns = np.ones((n, t_max), np.float32)
    for i, sid in enumerate(order):
        g = groups[sid]
        k = len(g)
        s_arr[i, :k] = g["state"].to_numpy()
        a_arr[i, :k] = g["action"].to_numpy()
        r_arr[i, :k] = g["reward"].to_numpy()
        b = g["block"].to_numpy()
        nb[i, :k] = np.concatenate([[True], b[1:] != b[:-1]])
        valid[i, :k] = True
        for bv in np.unique(b):
            rows = np.flatnonzero(b == bv)
            blk[i, rows[:, None], np.unique(s_arr[i, rows])[None, :]] = 1.0
        # the block's set size: the data's set_size column, else the stimuli the block shows
        ns[i, :k] = (g["set_size"].to_numpy() if "set_size" in g else blk[i, :k].sum(-1))
    trials = Trials(s_arr, a_arr, r_arr, nb, valid, blk, ns)
    n_tr = ((a_arr >= 0) & valid).sum(1)
    n_mi = ((a_arr < 0) & valid).sum(1)
    return Dataset(df, order, trials, n_tr, n_mi, n_states, n_actions)


def load(data, n_states: int, n_actions: int) -> Dataset:
    """Validate and pad: the whole path from a CSV/DataFrame to arrays."""
    return to_dataset(validate(data, n_states, n_actions), n_states, n_actions)
