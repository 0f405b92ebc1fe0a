"""Choice data for the fitter: a CSV or DataFrame checked column by column (each breach a
:class:`DataError` naming the column and row) and padded to arrays. :mod:`.common` reads the
stimulus-response and bandit tasks (one row a trial), :mod:`.sequential` the sequential tasks
(the grid-world: one row a step, with ``next_state`` and ``done``); :func:`load_for` picks the
reader of a config's task."""
from __future__ import annotations

from dra_jax.fitting.data import sequential
from dra_jax.fitting.data.common import (  # noqa: F401
    REQUIRED,
    DataError,
    Dataset,
    integers,
    load,
    subject_seed,
    to_dataset,
    validate,
)


def load_for(data, cfg: dict) -> Dataset:
    """:func:`load` for the config's task (a sequential task:
    :func:`dra_jax.fitting.data.sequential.load`); an ``rlwm`` model needs the ``set_size`` column."""
    f = cfg["fit"]
    if cfg["task"] == "gridworld":
        return sequential.load(data, f["n_states"], f["n_actions"])
    ds = load(data, f["n_states"], f["n_actions"])
    rlwm = [n for n, m in cfg["models"].items() if m["kind"] == "rlwm"]
    if rlwm and "set_size" not in ds.df:
        raise DataError("set_size", None, f"missing column: model {rlwm[0]!r} (kind rlwm) "
                                          "weighs working memory by the block's set size")
    return ds
