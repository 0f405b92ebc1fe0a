"""Figures of mountain car (Fig. 2b-d): value function with the greedy path, choice entropy
per cell, final objective per grid point. Drawn from results and the task (its cells)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.figures import lane
from dra_jax.results import atomic_savefig


def _panel(ax, task, values, cmap, vmin, vmax):
    ex, ev = task.cell_edges()
    img = np.asarray(values, float).reshape(task.cells)
    im = ax.pcolormesh(ex, ev, img.T, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
    ax.set_xlabel("position x")
    ax.set_ylabel("velocity v")
    ax.set_facecolor("0.8")
    return im


def _path(ax, path, steps, reached, color="w"):
    n = int(steps) + 1 if reached else len(path)
    p = path[:n]
    ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.2)
    ax.plot(p[0, 0], p[0, 1], "*", color="gold", ms=10, mec="k")
    if reached and n >= 2:
        ax.annotate("", xy=p[-1], xytext=p[-2],
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2))
    ax.axvline(0.5, color="m", lw=0.8, ls=":")  # the flag


def _fig_grid(n):
    import matplotlib.pyplot as plt

    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 1.0, 3.6 * nrow + 0.6), squeeze=False,
                             layout="constrained")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def fig2b(cfg, res, fig_dir, task):
    """Fig. 2b: value function ``max_a q(s, a)`` of the first seed's run per grid point over
    position x velocity (cells never updated, q still 0 everywhere, in grey), with that run's
    greedy rollout from ``(-0.5, 0)`` drawn as a path."""
    import matplotlib.pyplot as plt

    q = lane.by_point(cfg, res.curves["q"])[:, 0]  # [points, S, A]
    path = lane.by_point(cfg, res.curves["greedy_path"])
    reached = lane.by_point(cfg, res.curves["greedy_reached"])
    steps = lane.by_point(cfg, res.curves["greedy_steps"])
    v = q.max(-1)
    v = np.where(np.all(q == 0.0, axis=-1), np.nan, v)
    vmin = float(np.nanmin(v)) if np.isfinite(v).any() else -1.0
    pts = lane.grid_points(cfg)
    fig, axes = _fig_grid(len(pts))
    im = None
    for g, (ax, pt) in enumerate(zip(axes.flat, pts)):
        im = _panel(ax, task, v[g], "viridis", vmin, 0.0)
        _path(ax, path[g, 0], steps[g, 0], reached[g, 0])
        res_txt = f"flag in {steps[g, 0]} steps" if reached[g, 0] else "flag not reached"
        ax.set_title(f"{pt['label']} (seed {cfg['seed']}): {res_txt}\n"
                     f"{int(reached[g].sum())}/{reached.shape[1]} seeds reach the flag", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.85, label="max_a q(s, a)")
    fig.suptitle(f"{cfg['name']}: value function and greedy rollout of the means")
    p = Path(fig_dir) / "fig2b_value_function.png"
    atomic_savefig(fig, p, dpi=120)
    plt.close(fig)
    return [p]


def fig2c(cfg, res, fig_dir, task):
    """Fig. 2c: normalized choice entropy per cell of the final memories (mean over seeds; dark
    = precise), with the first seed's greedy path for orientation."""
    import matplotlib.pyplot as plt

    ent = lane.by_point(cfg, res.curves["final_choice_entropy"])  # [points, seeds, S]
    path = lane.by_point(cfg, res.curves["greedy_path"])
    reached = lane.by_point(cfg, res.curves["greedy_reached"])
    steps = lane.by_point(cfg, res.curves["greedy_steps"])
    pts = lane.grid_points(cfg)
    fig, axes = _fig_grid(len(pts))
    im = None
    for g, (ax, pt) in enumerate(zip(axes.flat, pts)):
        im = _panel(ax, task, ent[g].mean(0), "magma", 0.0, 1.0)
        _path(ax, path[g, 0], steps[g, 0], reached[g, 0], color="c")
        ax.set_title(pt["label"], fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.85, label="normalized choice entropy")
    fig.suptitle(f"{cfg['name']}: choice entropy of the final memories "
                 f"(mean over {cfg['n_seeds']} seeds; path: seed {cfg['seed']})")
    p = Path(fig_dir) / "fig2c_choice_entropy.png"
    atomic_savefig(fig, p, dpi=120)
    plt.close(fig)
    return [p]


def fig2d(cfg, res, fig_dir):
    """Fig. 2d: final objective (last evaluation) per grid point, e.g. per gradient R / Q / A:
    bars = mean over seeds, error bars = SD, dots = seeds."""
    import matplotlib.pyplot as plt

    obj = lane.by_point(cfg, res.curves["objective"])[:, :, -1]
    pts = lane.grid_points(cfg)
    labels = [pt["label"].replace("psi=", "") for pt in pts]
    fig, ax = plt.subplots(figsize=(1.4 * len(pts) + 2.5, 4))
    x = np.arange(len(pts))
    cols = plt.get_cmap("tab10").colors
    ax.bar(x, obj.mean(1), yerr=obj.std(1), capsize=6, color=[cols[i % 10] for i in range(len(pts))],
           alpha=0.8)
    for g in range(len(pts)):
        ax.plot(np.full(obj.shape[1], x[g]) + np.linspace(-0.15, 0.15, obj.shape[1]), obj[g], "k.")
    ax.set_xticks(x, labels)
    ax.set_xlabel("gradient (Psi)" if list(cfg["sweep"]) == ["psi"] else "grid point")
    ax.set_ylabel("final objective F")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"{cfg['name']}: final objective (mean +- SD over {cfg['n_seeds']} seeds)", fontsize=10)
    fig.tight_layout()
    p = Path(fig_dir) / "fig2d_objective.png"
    atomic_savefig(fig, p, dpi=120)
    plt.close(fig)
    return [p]
