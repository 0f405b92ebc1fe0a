"""Checkpoints of every runner: a pytree of arrays and its metadata in one ``.npz``, written
atomically, refused on load when it belongs to another config, group, batch or state shape."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from dra_jax.results import atomic_savez


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this config (corrupted, or from another config)."""


def config_fingerprint(cfg: dict) -> str:
    """A hash of everything in the config that changes numbers (not ``out``, not ``figures``)."""
    from dra_jax import __version__

    keep = {k: v for k, v in cfg.items() if k not in ("out", "figures", "description", "name")}
    text = json.dumps(keep, sort_keys=True, default=str) + __version__
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path: Path, meta: dict, tree) -> None:
    """Write a pytree of arrays and its ``meta`` (JSON: ``fingerprint``, ``group``, ``batch``,
    ``kind``, ...) to ``path`` atomically."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    arrays = {f"leaf_{i}": x for i, x in enumerate(leaves)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    atomic_savez(path, arrays)


def load_checkpoint(path: Path, meta: dict, like):
    """Load a checkpoint written by :func:`save_checkpoint` for the same ``meta``, shaped like
    ``like``; raise :class:`CheckpointError` with the reason otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            got = json.loads(str(z["meta"]))
            leaves = [z[f"leaf_{i}"] for i in range(len(z.files) - 1)]
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                              "delete it or run without --resume") from None
    for key in ("fingerprint", "group", "batch", "kind"):
        if got.get(key) != meta.get(key):
            raise CheckpointError(f"checkpoint {path} belongs to another {'config' if key == 'fingerprint' else key} "
                                  f"({key} {got.get(key)!r} != {meta.get(key)!r}); delete it or run "
                                  "without --resume")
    ref = jax.tree.leaves(like)
    if len(ref) != len(leaves) or any(np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype
                                      for a, b in zip(ref, leaves)):
        raise CheckpointError(f"checkpoint {path} does not match this run's state (shapes differ); "
                              "delete it or run without --resume")
    return jax.tree.unflatten(jax.tree.structure(like), leaves), got
