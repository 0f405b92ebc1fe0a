"""``python -m dra_jax.fit``: the fit command, kept at this name; it runs
:mod:`dra_jax.fitting.__main__` (which chooses the host device count before JAX starts)."""
import runpy

if __name__ == "__main__":
    runpy.run_module("dra_jax.fitting", run_name="__main__", alter_sys=True)
