"""Figures of the planning task (Fig. 3c-f, Fig. B.4), drawn from a sweep's results.

``col`` is the per-run table the experiment module builds (:func:`dra_jax.experiments.planning.
_table`: budget, moves, n_traj, equal, seed, the finals, budget_pct, in grid order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.envs import planning as env
from dra_jax.results import GridResults


def _ref_n_traj(col: dict, cfg: dict) -> int:
    """The n_traj of the DRA-vs-equal comparison: that of the equal runs if any, else the base."""
    eq = col["n_traj"][col["equal"]]
    return int(eq[0]) if eq.size else int(cfg["dra"]["n_traj"])


def _ref_baseline(col: dict, cfg: dict) -> str:
    """The gradient's baseline of the DRA-vs-equal comparison (and of Fig. 3e, 3f): that of the
    equal runs if any, else the config's."""
    eq = col["baseline"][col["equal"]]
    return str(eq[0]) if eq.size else str(cfg["dra"]["baseline"])


def _dprime_panel(ax, col, results, sel, key, ylabel, title=None):
    """Scatter of ``key`` per extended state against impact, one regression line per budget."""
    import matplotlib.pyplot as plt

    budgets = sorted(set(col["budget"][sel].tolist()))
    cmap = plt.get_cmap("viridis")
    fits = {}
    for j, b in enumerate(budgets):
        idx = np.flatnonzero(sel & (col["budget"] == b))
        m = int(col["moves"][idx[0]])
        y = np.nanmean(np.asarray(results.curves[key])[idx][:, :, :m], axis=0).ravel()
        x = np.asarray(results.curves["impact"])[idx[0]][:, :m].ravel()
        ok = np.isfinite(y)
        color = cmap(j / max(1, len(budgets) - 1))
        pct = 100.0 * b / env.full_budget(m)
        ax.scatter(x[ok], y[ok], s=12, color=color, alpha=0.6)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slope, icpt = np.polyfit(x[ok], y[ok], 1)
            xx = np.linspace(x.min(), x.max(), 10)
            ax.plot(xx, slope * xx + icpt, color=color, label=f"b={b} ({pct:.0f}%)")
            fits[b] = (float(slope), float(icpt))
    ax.set_xlabel("impact |q*1 - q*2| (difference in cumulative reward)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, title="search budget", title_fontsize=7)
    return fits


def plot(cfg: dict, results: GridResults, col: dict, fig_dir: Path) -> list[Path]:
    """Fig. 3c-f and Fig. B.4 (those listed in ``figures``), each drawn on its own: one that
    cannot be drawn for this grid is skipped with a warning (:mod:`dra_jax.figures.common`)."""
    from dra_jax.figures.common import draw_each

    return draw_each(cfg, cfg["figures"],
                     lambda name: _plot({**cfg, "figures": [name]}, results, col, fig_dir))


def _plot(cfg: dict, results: GridResults, col: dict, fig_dir: Path) -> list[Path]:
    """Fig. 3c-f and Fig. B.4 (those listed in ``figures``), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dra_jax.results import atomic_savefig

    fig_dir = Path(fig_dir)
    ref = _ref_n_traj(col, cfg)
    ref_bl = _ref_baseline(col, cfg)
    m0 = int(cfg["task_params"]["moves"])
    flex = ~col["equal"]
    flex_ref = flex & (col["baseline"] == ref_bl)  # Fig. 3d-f: the same estimator as equal
    paths: list[Path] = []
    # guards: a figure whose runs this grid lacks raises (plot skips it with a warning)
    if "fig3d" in cfg["figures"] and not (col["equal"].any() and flex.any()):
        raise ValueError("fig3d compares flexible and equal precision; this grid lacks one of them")
    for name in set(cfg["figures"]) & {"fig3e", "fig3f", "figB4"}:
        m = (col["moves"] == m0) if name != "figB4" else True
        if not (flex & (col["n_traj"] == ref) & m).any():
            raise ValueError(f"{name} draws flexible-precision runs at n_traj={ref}"
                             + (f", M={m0}" if name != "figB4" else "") + "; this grid has none")

    def save(fig, name):
        path = fig_dir / f"{name}.png"
        fig.tight_layout()
        atomic_savefig(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)

    def by_budget(sel, key):
        bs = np.asarray(sorted(set(col["budget"][sel].tolist())))
        vals = [col[key][sel & (col["budget"] == b)] for b in bs]
        return bs, np.asarray([v.mean() for v in vals]), np.asarray([v.std() for v in vals])

    figs = cfg["figures"]
    if "fig3c" in figs:
        fig, ax = plt.subplots(figsize=(9, 4))
        sel0 = flex & (col["moves"] == m0)
        ns = sorted(set(zip(col["baseline"][sel0].tolist(), col["n_traj"][sel0].tolist())),
                    key=lambda t: (t[0] != "none", t[1]))  # the paper's estimator first
        bs = sorted(set(col["budget"][sel0].tolist()))
        cma_b = list(np.asarray(results.arrays.get("cma_budget", [])))
        n_bars = len(ns) + (1 if cma_b else 0)
        width = 0.8 / max(n_bars, 1)
        for j, (bl, n) in enumerate(ns):
            b_, mu, sd = by_budget(sel0 & (col["n_traj"] == n) & (col["baseline"] == bl),
                                   "objective")
            x = np.searchsorted(bs, b_) + (j - (n_bars - 1) / 2) * width
            ax.bar(x, mu, width, yerr=sd, capsize=2,
                   label=f"gradient, n_traj={n}" + (
                       f", baseline {bl}" if bl != "none" else
                       ", paper's estimator" if len({b for b, _ in ns}) > 1 else ""))
        if cma_b:
            f = np.asarray(results.arrays["cma_objective"])
            x = np.searchsorted(bs, cma_b) + (len(ns) - (n_bars - 1) / 2) * width
            ax.bar(x, f.mean(axis=1), width, yerr=f.std(axis=1), capsize=2, label="CMA-ES",
                   color="0.4")
        ax.set_xticks(range(len(bs)), [f"{b}\n({100 * b / env.full_budget(m0):.0f}%)" for b in bs])
        ax.set_xlabel("search budget b (transitions)")
        ax.set_ylabel("objective F* (Eq. 1)")
        ax.set_title(f"Fig. 3c: optimal F by the stochastic gradient and CMA-ES (M={m0}); "
                     f"SD over restarts", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, "fig3c")
    if "fig3d" in figs and col["equal"].any():
        fig, ax = plt.subplots(figsize=(5, 4))
        sel_f = flex_ref & (col["n_traj"] == ref) & (col["moves"] == m0)
        sel_e = col["equal"] & (col["n_traj"] == ref) & (col["moves"] == m0)
        bs = sorted(set(col["budget"][sel_f].tolist()) & set(col["budget"][sel_e].tolist()))
        for key, label in (("objective", "objective F"), ("expected_reward", "expected reward")):
            mu, sd = [], []
            for b in bs:
                f = {s: v for s, v in zip(col["seed"][sel_f & (col["budget"] == b)],
                                          col[key][sel_f & (col["budget"] == b)])}
                e = {s: v for s, v in zip(col["seed"][sel_e & (col["budget"] == b)],
                                          col[key][sel_e & (col["budget"] == b)])}
                d = np.asarray([f[s] - e[s] for s in f if s in e])
                mu.append(d.mean())
                sd.append(d.std())
            pct = 100.0 * np.asarray(bs) / env.full_budget(m0)
            ax.errorbar(pct, mu, yerr=sd, marker="o", capsize=2, label=label)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("search budget (%)")
        ax.set_ylabel("performance difference (flexible - equal)")
        ax.set_title(f"Fig. 3d: DRA vs equal precision (n_traj={ref}"
                     + ("" if ref_bl == "none" else f", baseline {ref_bl}") + ")", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "fig3d")
    if "fig3e" in figs:
        fig, axs = plt.subplots(1, 2, figsize=(10, 4))
        sel = flex_ref & (col["n_traj"] == ref) & (col["moves"] == m0)
        _dprime_panel(axs[0], col, results, sel, "dprime", "d' (discriminability)")
        _dprime_panel(axs[1], col, results, sel, "mean_sigma", "mean sigma of the state's memories")
        fig.suptitle(f"Fig. 3e: memories per extended state (s, k), mean over seeds; M={m0}, "
                     f"n_traj={ref}", fontsize=9)
        save(fig, "fig3e")
    if "fig3f" in figs:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        sel = flex_ref & (col["n_traj"] == ref) & (col["moves"] == m0)
        bs, mu, sd = by_budget(sel, "objective")
        pct = 100.0 * bs / env.full_budget(m0)
        ax.plot(pct, mu, "o-", color="tab:green", label="F* (Eq. 1)")
        ax.fill_between(pct, mu - sd, mu + sd, color="tab:green", alpha=0.2)
        ax.set_xlabel("search budget (%)")
        ax.set_ylabel("objective F (exp. reward)", color="tab:green")
        ax2 = ax.twinx()
        _, mt, st_ = by_budget(sel, "objective_tilde")
        ax2.plot(pct, mt, "o-", color="tab:orange", label="F-tilde* (Eq. 8)")
        ax2.fill_between(pct, mt - st_, mt + st_, color="tab:orange", alpha=0.2)
        i = int(np.argmax(mt))
        ax2.plot(pct[i], mt[i], "*", color="gold", markersize=18, markeredgecolor="k")
        ax2.set_ylabel("modified objective F-tilde (exp. reward rate)", color="tab:orange")
        tp = cfg["task_params"]
        ax.set_title(f"Fig. 3f: a_dec={tp['a_dec']}, t_nondec={tp['t_nondec']}; "
                     f"F-tilde peaks at b={bs[i]}", fontsize=9)
        save(fig, "fig3f")
    if "figB4" in figs:
        ms = sorted(set(col["moves"].tolist()))
        fig, axs = plt.subplots(1, len(ms), figsize=(5 * len(ms), 4), squeeze=False)
        for ax, m in zip(axs[0], ms):
            sel = flex_ref & (col["n_traj"] == ref) & (col["moves"] == m)
            _dprime_panel(ax, col, results, sel, "dprime", "d' (discriminability)", f"M = {m}")
        fig.suptitle("Fig. B.4: d' against impact per extended state, mean over seeds",
                     fontsize=9)
        save(fig, "figB4")
    return paths
