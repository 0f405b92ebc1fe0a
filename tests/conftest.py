import os

# Tests run on whatever JAX finds (CPU here, a GPU when present); keep float32 (the default).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# A fresh persistent compilation cache for the session (the sweep command and dra_jax.run use
# one by default): programs compiled by one test are reused by the next, never across sessions.
if "DRA_JAX_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["DRA_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="dra_jax_compile_cache_")
