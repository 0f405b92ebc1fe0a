"""Figures of the fit command: posterior predictive check, parameter-recovery scatter, model
confusion matrix. Drawn from a FitResults' ``extra`` entries (computed by the fitter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.results import atomic_savefig


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ppc(ppc_: dict, path: Path) -> Path:
    """Accuracy by set size (data dots, models lines) and learning curves by set size."""
    plt = _plt()
    sizes = ppc_["set_size"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.plot(sizes, ppc_["data"], "ko", ms=7, label="data")
    for name, acc in ppc_["models"].items():
        ax.plot(sizes, acc, "-", marker=".", label=name)
    ax.set_xlabel("set size")
    ax.set_ylabel("accuracy (P correct)")
    ax.set_title("posterior predictive: accuracy by set size")
    ax.legend(fontsize=8)
    ax = axes[1]
    cmap = plt.get_cmap("viridis")
    best = ppc_.get("best") or (next(iter(ppc_["models"])) if ppc_["models"] else None)
    for i, k in enumerate(sizes):
        c = cmap(i / max(len(sizes) - 1, 1))
        d = ppc_["curves"]["data"][str(k)]
        ax.plot(np.arange(1, len(d) + 1), d, "o", color=c, ms=3, label=f"data, set size {k}")
        if best is not None:
            m = ppc_["curves"][best][str(k)]
            ax.plot(np.arange(1, len(m) + 1), m, "-", color=c)
    ax.set_xlabel("presentation of the stimulus")
    ax.set_ylabel("accuracy")
    ax.set_title(f"learning curves: data (dots) vs {best} (lines; best total AIC)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def ppc_models(ppc_: dict, path: Path) -> Path:
    """Set-size learning curves, one panel per model: data (dots) against the model fitted to
    each subject and replayed on the subject's own trials (lines), colour = set size."""
    plt = _plt()
    sizes, names = ppc_["set_size"], list(ppc_["models"])
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.6 * max(len(names), 1), 3.4),
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], names):
        for i, k in enumerate(sizes):
            c = cmap(i / max(len(sizes) - 1, 1))
            d, m = ppc_["curves"]["data"][str(k)], ppc_["curves"][name][str(k)]
            ax.plot(np.arange(1, len(d) + 1), d, "o", color=c, ms=3,
                    label=f"set size {k}" if ax is axes[0][0] else None)
            ax.plot(np.arange(1, len(m) + 1), m, "-", color=c)
        ax.set_title(name)
        ax.set_xlabel("presentation of the stimulus")
    axes[0][0].set_ylabel("accuracy (data dots, model lines)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def ppc_episodes(ppc_: dict, path: Path) -> Path:
    """A sequential task's learning curve: steps per episode, data (dots) vs models (lines)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ppc_["episode"], ppc_["data"], "ko", ms=4, label="data")
    for name, steps in ppc_["models"].items():
        ax.plot(np.arange(1, len(steps) + 1), steps, "-", label=name)
    ax.set_xlabel("episode (within a block)")
    ax.set_ylabel("steps to the goal")
    ax.set_yscale("log")
    ax.set_title("posterior predictive: learning curve")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def recovery_scatter(rec: dict, path: Path) -> Path:
    """True vs recovered, one panel per (generating model, free parameter)."""
    plt = _plt()
    panels = [(g, p, v) for g, ps in rec["parameters"].items() for p, v in ps.items()]
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (g, p, v) in zip(axes.flat, panels):
        t, r = np.array(v["true"]), np.array(v["recovered"])
        ax.plot(t, r, "o", ms=4)
        lo, hi = min(t.min(), r.min()), max(t.max(), r.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{g}: {p}\nSpearman {v['spearman_r']:.2f}, bias {v['bias']:+.2g}", fontsize=9)
        ax.set_xlabel("true")
        ax.set_ylabel("recovered")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def confusion(rec: dict, path: Path) -> Path:
    """P(best model by BIC | generating model)."""
    plt = _plt()
    m = np.array(rec["confusion_bic"])
    fig, ax = plt.subplots(figsize=(1.3 * m.shape[1] + 2, 1.1 * m.shape[0] + 1.5))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center",
                    color="white" if m[i, j] > 0.5 else "black")
    ax.set_xticks(range(m.shape[1]), rec["fitted"], rotation=30)
    ax.set_yticks(range(m.shape[0]), rec["generating"])
    ax.set_xlabel("best fit (BIC)")
    ax.set_ylabel("generating model")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def draw(res, fig_dir: Path) -> list[Path]:
    """Every figure the config asks for that its results support."""
    fig_dir = Path(fig_dir)
    out = []
    wanted = res.config.get("figures", [])
    if "ppc" in wanted and "ppc" in res.extra:
        if "episode" in res.extra["ppc"]:
            out.append(ppc_episodes(res.extra["ppc"], fig_dir / "ppc.png"))
        else:
            out.append(ppc(res.extra["ppc"], fig_dir / "ppc.png"))
            out.append(ppc_models(res.extra["ppc"], fig_dir / "ppc_models.png"))
    if "bms" in wanted and res.extra.get("bms") is not None:
        from dra_jax.figures.bms import draw_bms

        out.append(draw_bms(res.extra["bms"], fig_dir / "bms.png"))
    rec = res.extra.get("recovery")
    if rec is not None and "recovery_scatter" in wanted:
        out.append(recovery_scatter(rec, fig_dir / "recovery_scatter.png"))
    if rec is not None and "confusion" in wanted:
        out.append(confusion(rec, fig_dir / "confusion.png"))
    return out
