import os

# Tests run on whatever JAX finds (CPU here, a GPU when present); keep float32 (the default).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
