"""Figure of a posterior run (:func:`dra_jax.fitting.posterior.run`): one trace per parameter
(every iteration, chains coloured, the burn-in shaded) and the joint posterior of two parameters
(``lam`` and ``beta`` when both are free, else the first two) with their marginals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.figures.fitting import _plt
from dra_jax.results import atomic_savefig


def pair(free: list[str]) -> tuple[int, int]:
    """The two parameters of the joint panel: lam and beta when both are free, else the first
    two (one parameter: itself twice)."""
    if "lam" in free and "beta" in free:
        return free.index("lam"), free.index("beta")
    return 0, min(1, len(free) - 1)


def posterior(result: dict, path: Path) -> Path:
    """Traces (left column) and the joint scatter with marginal histograms (right)."""
    plt = _plt()
    free, trace = result["free"], np.asarray(result["trace"])
    draws = np.asarray(result["draws"])
    c_n, n_iter, d = trace.shape
    n_burn = result["n_burn"]
    colors = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(12, max(2.2 * d, 6.0)))
    gs = fig.add_gridspec(4 * d, 2, width_ratios=[1.4, 1.0], wspace=0.3, hspace=2.0)
    summ = result.get("summary", {})
    for j, p in enumerate(free):
        ax = fig.add_subplot(gs[4 * j:4 * j + 4, 0])
        for c in range(c_n):
            ax.plot(np.arange(n_iter), trace[c, :, j], lw=0.6, color=colors(c % 10),
                    label=f"chain {c} (acc {result['accept'][c]:.2f})")
        ax.axvspan(0, n_burn, color="0.85", zorder=-1)
        st = summ.get(p, {})
        ax.set_ylabel(p)
        if st:
            ax.set_title(f"{p}: R-hat {st['rhat']:.3f}, ESS bulk {st['ess_bulk']:.0f} / tail "
                         f"{st['ess_tail']:.0f}", fontsize=9)
        if j == d - 1:
            ax.set_xlabel("iteration (grey: burn-in, adapting)")
        else:
            ax.tick_params(labelbottom=False)
        if j == 0:
            ax.legend(fontsize=7, loc="upper right", ncol=2)
    i, k = pair(free)
    sub = gs[:, 1].subgridspec(4, 4, hspace=0.05, wspace=0.05)
    ax_j = fig.add_subplot(sub[1:, :3])
    ax_x = fig.add_subplot(sub[0, :3], sharex=ax_j)
    ax_y = fig.add_subplot(sub[1:, 3], sharey=ax_j)
    for c in range(c_n):
        ax_j.plot(draws[c, :, i], draws[c, :, k], ".", ms=2, alpha=0.4, color=colors(c % 10))
    flat = draws.reshape(-1, d)
    ax_x.hist(flat[:, i], bins=40, color="0.4")
    ax_y.hist(flat[:, k], bins=40, color="0.4", orientation="horizontal")
    ax_x.tick_params(labelbottom=False)
    ax_y.tick_params(labelleft=False)
    ax_j.set_xlabel(free[i])
    ax_j.set_ylabel(free[k])
    r = np.asarray(result["corr"])[i, k]
    ax_x.set_title(f"{result['model']}, subject {result['subject']}: corr({free[i]}, {free[k]}) "
                   f"= {r:.2f}", fontsize=9)
    atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
