"""Figure of random-effects Bayesian model selection: expected model frequencies and PXP."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.figures.fitting import _plt
from dra_jax.results import atomic_savefig


def draw_bms(block: dict, path: Path) -> Path:
    """Left: each model's expected frequency with its posterior SD under ``Dir(alpha)`` (and,
    when the evidences carry Monte Carlo error, the 95% range over their draws). Right: the
    protected exceedance probabilities, chance (1/K) dashed, the BOR in the title."""
    plt = _plt()
    names = block["models"]
    k = len(names)
    a = np.asarray(block["alpha"], float)
    a0 = a.sum()
    freq = np.asarray(block["expected_frequencies"], float)
    sd = np.sqrt(a * (a0 - a) / (a0 ** 2 * (a0 + 1)))
    x = np.arange(k)
    fig, axes = plt.subplots(1, 2, figsize=(3 + 1.6 * k, 3.8))
    axes[0].bar(x, freq, yerr=sd, color="0.6", capsize=4, label="posterior SD")
    pxp = np.asarray(block["pxp"], float)
    sp = block.get("spread")
    if sp is not None:
        for ax, key, val in ((axes[0], "expected_frequencies", freq), (axes[1], "pxp", pxp)):
            lo, hi = np.asarray(sp[key]["lo95"]), np.asarray(sp[key]["hi95"])
            ax.errorbar(x + 0.15, val, yerr=[np.maximum(val - lo, 0), np.maximum(hi - val, 0)],
                        fmt="none", ecolor="C3", capsize=3, label="95% over MC draws")
        axes[0].legend(fontsize=7)
    axes[0].axhline(1 / k, ls="--", c="k", lw=0.8)
    axes[0].set_ylabel("expected frequency")
    axes[1].bar(x, pxp, color="C0")
    axes[1].axhline(1 / k, ls="--", c="k", lw=0.8)
    axes[1].set_ylabel("protected exceedance probability")
    axes[1].set_title(f"BOR = {block['bor']:.3g}", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, names, rotation=30)
        ax.set_ylim(0, 1.05)
    fig.suptitle(f"random-effects BMS ({block['evidence']} evidence, "
                 f"{block.get('n_subjects', '?')} subjects)", fontsize=10)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path
