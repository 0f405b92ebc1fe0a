"""What every task's figures share: draw each figure of a config on its own, so a figure that
cannot be drawn for a grid (it compares variants the grid lacks, it needs snapshots the run did
not take, ...) is skipped with a warning naming it, and the others are still drawn. The results
are on disk before any figure is drawn (:func:`dra_jax.sweep.write_outputs`)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable


def draw_each(cfg: dict, names: Iterable[str], draw: Callable[[str], list[Path]]) -> list[Path]:
    """``draw(name) -> [paths]`` for each figure name; a figure that raises, or draws nothing,
    is skipped with a ``UserWarning`` naming it and the config. Returns the paths drawn."""
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for name in names:
        try:
            got = list(draw(name) or [])
        except Exception as e:
            plt.close("all")
            warnings.warn(f"figure {name!r} of {cfg.get('name', cfg.get('task'))} skipped: "
                          f"{type(e).__name__}: {e}", stacklevel=2)
            continue
        if not got:
            warnings.warn(f"figure {name!r} of {cfg.get('name', cfg.get('task'))} skipped: "
                          "nothing to draw for this grid", stacklevel=2)
        paths.extend(got)
    return paths
