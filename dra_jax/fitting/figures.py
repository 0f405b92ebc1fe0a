"""Figures of the fit command: posterior predictive checks, parameter-recovery scatter, model
confusion matrix, random-effects model selection (BMS), a PMMH posterior. Drawn from a FitResults'
``extra`` entries (computed by the fitter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.results import atomic_savefig
from dra_jax.results import pyplot as _plt


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
        out.append(draw_bms(res.extra["bms"], fig_dir / "bms.png"))
    rec = res.extra.get("recovery")
    if rec is not None and "recovery_scatter" in wanted:
        out.append(recovery_scatter(rec, fig_dir / "recovery_scatter.png"))
    if rec is not None and "confusion" in wanted:
        out.append(confusion(rec, fig_dir / "confusion.png"))
    return out


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
