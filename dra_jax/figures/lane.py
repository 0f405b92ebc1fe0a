"""Figures of the lane tasks (grid-world, mountain car) and the summaries they stand on.

Runs come flattened in grid order with ``seed`` as the last axis, so run ``g * n_seeds + i``
is seed ``i`` of grid point ``g``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dra_jax.config import grid_points
from dra_jax.core.stats import episodes_to_converge
from dra_jax.figures.common import draw_each
from dra_jax.results import GridResults, atomic_savefig

CONVERGENCE_DEFINITION = {
    "band": "the first evaluation episode from which the running mean (window 5 evaluations) "
            "stays within 5% of the final plateau (mean of the last 10% of evaluations)",
    "rise": "the first evaluation episode at which the running mean (window 5 evaluations) has "
            "covered 95% of the way from its first value to the final plateau",
    "note": "computed per run on the objective and on the expected reward, then averaged over "
            "seeds; a run that never converges counts as missing (per_seed null)",
}


def by_point(cfg: dict, arr: np.ndarray) -> np.ndarray:
    """``[runs, ...]`` -> ``[points, seeds, ...]``."""
    arr = np.asarray(arr)
    return arr.reshape((-1, cfg["n_seeds"]) + arr.shape[1:])


def summarize_lane_sweep(cfg: dict, res: GridResults) -> dict:
    """Per grid point: final and plateau objective, reward, cost (mean, SD over seeds),
    episodes to converge; with variants, the ratios of each variant to the first one."""
    eps = res.arrays["eval_episodes"]
    obj = by_point(cfg, res.curves["objective"])
    rew = by_point(cfg, res.curves["expected_reward"])
    cost = by_point(cfg, res.curves["cost"])
    m = max(1, int(round(0.1 * obj.shape[-1])))
    out = []
    def e2c(curves, mode):
        vals = [episodes_to_converge(c, eps, mode=mode) for c in curves]
        ok = [v for v in vals if np.isfinite(v)]
        return {"mean": float(np.mean(ok)) if ok else None,
                "per_seed": [v if np.isfinite(v) else None for v in vals]}

    for g, pt in enumerate(grid_points(cfg)):
        rec = {"point": pt["point"], "label": pt["label"]}
        for name, a in (("objective", obj), ("expected_reward", rew), ("cost", cost)):
            plateau = a[g, :, -m:].mean(axis=1)
            rec[name] = {"final_mean": float(a[g, :, -1].mean()), "final_sd": float(a[g, :, -1].std()),
                         "plateau_mean": float(plateau.mean()), "plateau_sd": float(plateau.std())}
        rec["episodes_to_converge"] = {
            f"{name}_{mode}": e2c(a[g], mode) for name, a in (("objective", obj), ("reward", rew))
            for mode in ("band", "rise")}
        out.append(rec)
    summary = {"points": out, "plateau_definition": "mean of the last 10% of evaluations",
               "convergence_definition": CONVERGENCE_DEFINITION}
    if cfg["variants"] and len(cfg["sweep"]) == 0:
        names = list(cfg["variants"])
        ref = out[0]
        ratios = {}
        for rec, name in zip(out, names):
            if rec is ref:
                continue
            fo, ro = rec["objective"]["plateau_mean"], ref["objective"]["plateau_mean"]
            ratios[name] = {
                f"objective_{name}_over_{names[0]}": fo / ro if ro else None,
                f"objective_{names[0]}_minus_{name}": ro - fo,
                f"expected_reward_{names[0]}_minus_{name}": ref["expected_reward"]["plateau_mean"]
                - rec["expected_reward"]["plateau_mean"],
                f"cost_{names[0]}_minus_{name}": ref["cost"]["plateau_mean"] - rec["cost"]["plateau_mean"],
            }
            for key, e_ref in ref["episodes_to_converge"].items():
                e_ref, e_var = e_ref["mean"], rec["episodes_to_converge"][key]["mean"]
                ratios[name][f"episodes_to_converge_{key}_{names[0]}_over_{name}"] = (
                    e_ref / e_var if (e_ref and e_var) else None)
        summary["baseline_ratios"] = ratios
    return summary


# ------------------------------------------------------------------ figures


def plot_lane_figures(cfg: dict, res: GridResults, fig_dir: Path, mazes=None) -> list[Path]:
    """The config's figures. ``mazes``: the text maze of each stage of a maze-built tabular
    task (state maps are then drawn on the maze), else maps are drawn on the discretizer's
    ``task_params.cells`` grid or as a strip of states."""
    fig_dir = Path(fig_dir)

    def draw(name):
        fn = _FIGURES[name]
        if fn in (fig_choice_entropy, fig_allocation):
            return fn(cfg, res, fig_dir, mazes=mazes)
        return fn(cfg, res, fig_dir)

    return draw_each(cfg, cfg["figures"], draw)


def _colors(n):
    return plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(n, 1)))


def _plotted(cfg, res, name: str):
    """``objective`` / ``expected_reward`` with the return ``eval.plot_return`` names."""
    und = cfg["eval"].get("plot_return") == "undiscounted" and f"{name}_undiscounted" in res.curves
    return by_point(cfg, res.curves[f"{name}_undiscounted" if und else name]), (
        " (undiscounted return)" if und else "")


def _plateau_ylim(ax, eps, curves_mean_sd):
    """Limits that show the plateau: from the evaluations after the first 10% of training (the
    first evaluations of an untrained agent, e.g. F ~ -400, would squash it to a line)."""
    keep = np.asarray(eps) >= 0.1 * np.max(eps)
    if keep.sum() < 2:
        return
    lo = min(float(np.nanmin((m - s)[keep])) for m, s in curves_mean_sd)
    hi = max(float(np.nanmax((m + s)[keep])) for m, s in curves_mean_sd)
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        pad = 0.08 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)


def _unconverged_note(cfg, res, g) -> str:
    """`` (k/n unconverged)`` for grid point g, from the runs' ``converged`` flags."""
    if res.run_extra is None or "converged" not in res.run_extra[0]:
        return ""
    flags = [e["converged"] for e in res.run_extra][g * cfg["n_seeds"]:(g + 1) * cfg["n_seeds"]]
    bad = sum(f is False for f in flags)
    return f" ({bad}/{len(flags)} unconverged)" if bad else ""


def fig_convergence(cfg, res, fig_dir):
    """Fig. 1b: objective (solid, left axis) and cost (dashed, right axis) against episodes, one
    colour per grid point, mean and SD across seeds; the y range shows the plateau (the first
    10% of training may leave it); grid points with unconverged runs say how many."""
    eps = res.arrays["eval_episodes"]
    obj, which = _plotted(cfg, res, "objective")
    cost = by_point(cfg, res.curves["cost"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax2 = ax.twinx()
    for g, (pt, col) in enumerate(zip(grid_points(cfg), _colors(obj.shape[0]))):
        m, s = obj[g].mean(0), obj[g].std(0)
        ax.plot(eps, m, "-", color=col, label=pt["label"] + _unconverged_note(cfg, res, g))
        ax.fill_between(eps, m - s, m + s, color=col, alpha=0.2, lw=0)
        mc, sc = cost[g].mean(0), cost[g].std(0)
        ax2.plot(eps, mc, "--", color=col)
        ax2.fill_between(eps, mc - sc, mc + sc, color=col, alpha=0.1, lw=0)
    _plateau_ylim(ax, eps, [(obj[g].mean(0), obj[g].std(0)) for g in range(obj.shape[0])])
    ax.set_xlabel("episodes")
    ax.set_ylabel(f"objective F{which} (solid)")
    ax2.set_ylabel("cost lam * KL (dashed)")
    ax.set_title(f"{cfg['name']}: convergence (mean +- SD over {cfg['n_seeds']} seeds)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    p = fig_dir / "convergence.png"
    atomic_savefig(fig, p, dpi=120)
    plt.close(fig)
    return [p]


def fig_baselines(cfg, res, fig_dir):
    """DRA vs the baselines (variants): objective and expected reward against episodes."""
    eps = res.arrays["eval_episodes"]
    obj, which = _plotted(cfg, res, "objective")
    rew, _ = _plotted(cfg, res, "expected_reward")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for g, (pt, col) in enumerate(zip(grid_points(cfg), plt.get_cmap("tab10").colors)):
        for ax, a in zip(axes, (obj, rew)):
            m, s = a[g].mean(0), a[g].std(0)
            ax.plot(eps, m, color=col, label=pt["label"] + _unconverged_note(cfg, res, g))
            ax.fill_between(eps, m - s, m + s, color=col, alpha=0.2, lw=0)
    for ax, a in zip(axes, (obj, rew)):
        _plateau_ylim(ax, eps, [(a[g].mean(0), a[g].std(0)) for g in range(a.shape[0])])
    axes[0].set_ylabel(f"objective F = E[reward] - lam * KL{which}")
    axes[1].set_ylabel(f"expected reward{which}")
    for ax in axes:
        ax.set_xlabel("episodes")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{cfg['name']}: DRA and baselines (mean +- SD over {cfg['n_seeds']} seeds)")
    fig.tight_layout()
    p = fig_dir / "baselines.png"
    atomic_savefig(fig, p, dpi=120)
    plt.close(fig)
    return [p]


def _draw_maze(ax, values, maze, vmin=0.0, vmax=1.0, cmap="magma"):
    """One heat map over a text maze: obstacles (grey), start (S) and goal (G) marked."""
    rows, cols = len(maze), len(maze[0])
    img = np.asarray(values, float).reshape(rows, cols).copy()
    for r in range(rows):
        for c in range(cols):
            if maze[r][c] == "#":
                img[r, c] = np.nan
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
    for r in range(rows):
        for c in range(cols):
            ch = maze[r][c]
            if ch == "#":
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.55"))
            elif ch in "SG":
                ax.text(c, r, ch, ha="center", va="center", color="c" if ch == "S" else "lime",
                        fontsize=12, fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _entropy_figure(cfg, maps, titles, stages, path, suptitle, mazes=None):
    n = len(maps)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.6 * nrow), squeeze=False)
    im = None
    cells = cfg["task_params"].get("cells")
    for ax, m, t, stage in zip(axes.flat, maps, titles, stages):
        if mazes is not None:
            im = _draw_maze(ax, m, mazes[min(stage, len(mazes) - 1)])
        elif cells is not None and len(cells) == 2:
            im = ax.imshow(np.asarray(m).reshape(cells).T, origin="lower", cmap="magma", vmin=0,
                           vmax=1, aspect="auto")
        else:
            im = ax.imshow(np.asarray(m).reshape(1, -1), cmap="magma", vmin=0, vmax=1, aspect="auto")
            ax.set_yticks([])
            ax.set_xlabel("state")
        ax.set_title(t, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="normalized choice entropy")
    fig.suptitle(suptitle)
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def fig_choice_entropy(cfg, res, fig_dir, mazes=None):
    """Fig. 1c: normalized choice entropy of each cell at the snapshot episodes (mean over
    seeds), exact by quadrature (dra_jax.core.choice)."""
    if "choice_entropy" not in res.curves:
        raise ValueError("needs snapshots of the memories (eval.snapshots); this run took none")
    ent = by_point(cfg, res.curves["choice_entropy"])  # [points, seeds, n_snap, S]
    snaps = res.arrays["snapshot_episodes"]
    paths = []
    sw_ep = cfg["task_params"].get("switch_episode", None)
    switch = cfg["task_params"].get("switch", False)
    for g, pt in enumerate(grid_points(cfg)):
        maps = [ent[g, :, j].mean(0) for j in range(len(snaps))]
        # the snapshot after k episodes holds memories learned in episodes 1..k; episode j (1-based)
        # runs in the switched maze when j > switch_episode
        titles = [f"episode {e}" + (" (switched maze)" if switch and e > sw_ep else "") for e in snaps]
        flags = [int(bool(switch and e > sw_ep)) for e in snaps]
        suffix = "" if len(grid_points(cfg)) == 1 else f"_{g}"
        p = fig_dir / f"choice_entropy{suffix}.png"
        _entropy_figure(cfg, maps, titles, flags, p,
                        f"{cfg['name']} {pt['label']}: normalized choice entropy "
                        f"(dark = precise), mean over {cfg['n_seeds']} seeds", mazes)
        paths.append(p)
    return paths


def fig_allocation(cfg, res, fig_dir, mazes=None):
    """Final allocation: choice-entropy map of the final memories, one panel per grid point."""
    ent = by_point(cfg, res.curves["final_choice_entropy"])
    pts = grid_points(cfg)
    maps = [ent[g].mean(0) for g in range(len(pts))]
    p = fig_dir / "allocation.png"
    _entropy_figure(cfg, maps, [pt["label"] for pt in pts], [0] * len(pts), p,
                    f"{cfg['name']}: final choice entropy (mean over {cfg['n_seeds']} seeds)", mazes)
    return [p]


_FIGURES = {"convergence": fig_convergence, "baselines": fig_baselines,
            "choice_entropy": fig_choice_entropy, "allocation": fig_allocation}


def register_figure(name: str, fn) -> None:
    """Add a figure function ``fn(cfg, res, fig_dir) -> list[Path]`` under ``name``."""
    _FIGURES[name] = fn
