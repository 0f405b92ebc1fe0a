"""python -m dra_jax.fit (or python -m dra_jax.fitting): fit capacity-limited agents to choice
data (the command: :mod:`dra_jax.fitting.cli`).

``--cpu-devices N`` (default: one per core) splits the host CPU into N XLA devices, set in
``XLA_FLAGS`` here, before anything starts JAX (importing the fitter does); the subjects of
every likelihood call are then split over ``fit.devices`` of them (0: all). A host device count
already in ``XLA_FLAGS`` wins. No number depends on it.
"""
import os
import sys

from dra_jax.config import set_host_device_count


def _choose_cpu_devices(argv: list[str]) -> list[str]:
    """Remove ``--cpu-devices N`` from ``argv`` and put the host device count in XLA_FLAGS."""
    argv, n = list(argv), None
    for i, arg in enumerate(argv):
        if arg == "--cpu-devices" and i + 1 < len(argv):
            n = argv[i + 1]
            del argv[i:i + 2]
            break
        if arg.startswith("--cpu-devices="):
            n = arg.split("=", 1)[1]
            del argv[i]
            break
    if n is not None and (not n.isdigit() or int(n) < 1):
        print("error: config error: --cpu-devices: expected an integer >= 1", file=sys.stderr)
        sys.exit(2)
    set_host_device_count(int(n) if n is not None else (os.cpu_count() or 1))
    return argv


if __name__ == "__main__":
    args = _choose_cpu_devices(sys.argv[1:])
    from dra_jax.fitting.cli import main

    sys.exit(main(args))
