"""Make the small synthetic stimulus-response data set shipped in examples/data/.

Ten simulated DRA subjects (flexible precision; lam from 0.02 to 0.2, beta 20, alpha_q 0.5,
alpha_sigma 0.05, sigma_base 1, sigma0 0.3), two blocks of each set size 2..6, each stimulus
12 times a block, 3 actions; two missed responses. Usage:

    python examples/make_stimulus_response_data.py [OUT.csv]
"""
import sys

import numpy as np

from dra_jax.fitting import models, simulate


def make(seed: int = 2026):
    n = 10
    lam = np.linspace(0.02, 0.2, n)
    theta = np.column_stack([lam, np.full(n, 20.0), np.full(n, 0.5), np.full(n, 0.05),
                             np.full(n, 1.0), np.full(n, 0.3)])
    df = simulate.synthetic_dataset(models.Static("dra", 6, 3), theta, seed,
                                    set_sizes=(2, 3, 4, 5, 6, 6, 5, 4, 3, 2), reps=12)
    df.loc[[17, 400], ["action", "reward"]] = np.nan  # missed responses
    df["action"] = df["action"].astype("Int64")
    return df


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/data/stimulus_response_synthetic.csv"
    make().to_csv(out, index=False)
    print(f"wrote {out}")
