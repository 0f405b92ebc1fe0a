"""JAX's persistent compilation cache, as the sweep, paper and fit commands use it."""
from __future__ import annotations

import os
from pathlib import Path


def compile_cache_dir() -> Path:
    """Where the persistent compilation cache lives: ``$DRA_JAX_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dra_jax/jax-compile``, else ``~/.cache/dra_jax/jax-compile``."""
    if os.environ.get("DRA_JAX_CACHE_DIR"):
        return Path(os.environ["DRA_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dra_jax" / "jax-compile"


def enable_compile_cache(path: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache (every program, however fast it compiled),
    so a repeated config skips XLA compilation. Returns the folder, or None if it cannot be
    created (then nothing is cached and nothing else changes)."""
    import jax

    path = Path(path) if path is not None else compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
