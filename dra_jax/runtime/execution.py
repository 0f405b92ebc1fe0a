"""How a runner executes a grid: :class:`ExecOptions` (none of them changes a number) and the
memory a batch may take."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax

from dra_jax.config import available_memory


@dataclass
class ExecOptions:
    """How the sweep command executes a grid (not part of the config: they change no number).

    ``out``: output folder (checkpoints go to ``out/checkpoint/``); ``resume``: continue from
    the checkpoints there; ``max_batch``: runs per compiled batch (0: from available memory);
    ``n_devices``: devices the batch axis is split over (0: all of ``jax.local_devices()``);
    ``chunk_seconds``: target wall time between progress lines and checkpoints.
    """

    out: Path | None = None
    resume: bool = False
    max_batch: int = 0
    n_devices: int = 0
    chunk_seconds: float = 2.0


def available_bytes() -> int:
    """Free memory of the first device (its allocator's limit on an accelerator,
    ``MemAvailable`` on CPU; 8 GiB when neither can be read)."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return available_memory()
