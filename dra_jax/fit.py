"""python -m dra_jax.fit: fit capacity-limited agents to choice data (see dra_jax.fitting.cli)."""
import sys

from dra_jax.fitting.cli import main

if __name__ == "__main__":
    sys.exit(main())
