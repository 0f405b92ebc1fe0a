"""What a task's runner hands back to the sweep command, and how it is written to disk."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class GridResults:
    """What a task's runner hands back: the results of one grid, unlabelled
    (:class:`dra_jax.Results` labels them by the grid's axes).

    ``finals``: one dict per run in grid order, at least ``objective``, ``expected_reward`` and
    ``cost`` (plain floats). ``curves``: arrays whose leading axis is the flattened grid (runs in
    grid order); the writer reshapes that axis to the grid's axes. ``arrays``: other arrays
    (not per run), written to ``curves.npz`` as they are. ``summary``: extra JSON-able entries
    for ``summary.json`` (ratios, definitions). ``run_extra``: optional per-run JSON-able dicts
    merged into each run's record. ``timing``: ``compile_s``, ``run_s``, ``env_steps``.
    """

    finals: list[dict]
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    run_extra: list[dict] | None = None
    timing: dict[str, Any] = field(default_factory=dict)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_savefig(fig, path: Path, **kw) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kw)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures are only written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
