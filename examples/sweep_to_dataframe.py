"""A sweep through the Python API, its results as a DataFrame, and a plot from it.

    python examples/sweep_to_dataframe.py [--episodes 1000] [--out sweep_lam.png]

DRA on the paper's grid-world for three costs of information lam and three seeds each: the
whole grid is one compiled, vmapped call. Final objective and cost against lam.
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import dra_jax

ap = argparse.ArgumentParser()
ap.add_argument("--episodes", type=int, default=1000)
ap.add_argument("--out", default="sweep_lam.png")
args = ap.parse_args()

res = dra_jax.run("configs/gridworld.toml", set=[f"dra.episodes={args.episodes}", "n_seeds=3",
                                                 "sweep.sigma0=[3.0]",
                                                 "sweep.lam=[0.05, 0.2, 0.8]", "figures=[]"])
df = res.to_dataframe()
table = df.groupby("lam")[["objective", "expected_reward", "cost"]].agg(["mean", "std"])
print(table.round(2))

fig, ax = plt.subplots(figsize=(4.5, 3.2))
for col, marker in (("objective", "o"), ("cost", "s")):
    m = df.groupby("lam")[col].mean()
    ax.plot(m.index, m.values, marker=marker, label=col)
ax.set_xscale("log")
ax.set_xlabel("lam (cost per nat)")
ax.legend()
fig.tight_layout()
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
