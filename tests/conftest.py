import os

# Tests run on whatever JAX finds (CPU here, a GPU when present); keep float32 (the default).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# No persistent compilation cache in the tests (the sweep command and dra_jax.run use one by
# default): writing executables into it crashed the interpreter twice in full-suite runs on the
# 2-core CPU (SIGABRT / SIGSEGV inside jax's put_executable_and_time, jax 0.10.2, in two
# different tests), and no test relies on it. A folder that cannot be created turns it off
# (dra_jax.runtime.compile_cache.enable_compile_cache returns None); subprocesses inherit it. Set
# DRA_JAX_CACHE_DIR to test with a cache.
if "DRA_JAX_CACHE_DIR" not in os.environ:
    os.environ["DRA_JAX_CACHE_DIR"] = os.devnull + "/no-compile-cache"


import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled program after each test module. The full suite compiles a few
    thousand XLA CPU programs in one process; kept, they held 5.8 GB and the suite crashed
    (SIGSEGV inside XLA's compile, the same test twice: test_sub_lanes, which passes alone).
    No test relies on a program compiled by another module."""
    yield
    jax.clear_caches()
