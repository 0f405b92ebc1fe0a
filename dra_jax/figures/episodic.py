"""Figures of the episodic task: cumulative regret against episodes per agent, the rate over
episodes, and final regret against cumulative rate (one point per beta / lambda).

Drawn from :class:`dra_jax.results.GridResults` of :mod:`dra_jax.experiments.episodic`; one panel
per environment of the grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.figures.common import draw_each
from dra_jax.results import atomic_savefig

_STYLE = {"psrl": ("k", "*"), "vepsrl": ("tab:red", "o"), "dra": ("tab:green", "^")}
_NICE = {"psrl": "PSRL", "vepsrl": "VE-PSRL β", "dra": "DRA λ"}


def _groups(runs, parse_agent):
    """env -> agent spec -> run indices (grid order)."""
    g: dict = {}
    for r in runs:
        tp = r["task_params"]
        g.setdefault(tp["env"], {}).setdefault(tp["agent"], []).append(r["index"])
    return g


def _order(specs, parse_agent):
    rank = {"psrl": 0, "vepsrl": 1, "dra": 2}

    def key(s):
        name, v = parse_agent(s)
        return (rank[name], -1.0 if v is None else v)

    return sorted(specs, key=key)


def _label(spec, parse_agent):
    name, v = parse_agent(spec)
    return _NICE[name].split()[0] if v is None else f"{_NICE[name]}={v:g}"


def _colors(plt, n, cmap, lo=0.1, hi=0.9):
    return [plt.get_cmap(cmap)(x) for x in np.linspace(lo, hi, max(n, 1))]


def _spec_colors(plt, specs, parse_agent):
    cols = {}
    for name, cmap, lo in (("vepsrl", "plasma", 0.1), ("dra", "Greens", 0.5)):
        fam = [s for s in specs if parse_agent(s)[0] == name]
        cols.update(zip(fam, _colors(plt, len(fam), cmap, lo, 0.95)))
    for s in specs:
        cols.setdefault(s, "k")
    return cols


def _fig_curves(cfg, results, runs, parse_agent, plt, key, ylabel, title):
    groups = _groups(runs, parse_agent)
    y_all = np.asarray(results.curves[key])
    ep = np.asarray(results.arrays["episode"])
    fig, ax = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.2), squeeze=False)
    for p, (env, by) in enumerate(sorted(groups.items())):
        specs = _order(list(by), parse_agent)
        cols = _spec_colors(plt, specs, parse_agent)
        for s in specs:
            y = y_all[by[s]]
            if not np.isfinite(y).any():
                continue
            m = np.nanmean(y, 0)
            se = np.nanstd(y, 0) / np.sqrt(len(y))
            lw = 2.2 if s == "psrl" else 1.2
            ls = "--" if parse_agent(s)[0] == "dra" else "-"
            ax[0, p].plot(ep, m, color=cols[s], lw=lw, ls=ls, label=_label(s, parse_agent))
            ax[0, p].fill_between(ep, m - se, m + se, color=cols[s], alpha=0.15)
        n = len(by[specs[0]])
        ax[0, p].set(title=f"{env}: {title} ({n} seeds)", xlabel="episode", ylabel=ylabel)
        ax[0, p].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _fig_regret_vs_rate(cfg, results, runs, parse_agent, plt):
    groups = _groups(runs, parse_agent)
    reg = np.array([f["cumulative_regret"] for f in results.finals])
    rate = np.array([f["rate"] for f in results.finals])
    fig, ax = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.6), squeeze=False)
    for p, (env, by) in enumerate(sorted(groups.items())):
        specs = _order(list(by), parse_agent)
        for name in ("psrl", "vepsrl", "dra"):
            fam = [s for s in specs if parse_agent(s)[0] == name]
            if not fam:
                continue
            xs = np.array([rate[by[s]].mean() for s in fam])
            ys = np.array([reg[by[s]].mean() for s in fam])
            se = np.array([reg[by[s]].std() / np.sqrt(len(by[s])) for s in fam])
            c, m = _STYLE[name]
            lab = {"psrl": "PSRL (rate: log Z per episode)",
                   "vepsrl": "VE-PSRL (channel rate I(Z;J))",
                   "dra": "DRA (its KL cost, nats; not a mutual information)"}[name]
            ax[0, p].errorbar(np.maximum(xs, 1e-3), ys, yerr=se, color=c, marker=m, lw=1,
                              capsize=2, ms=8 if name == "psrl" else 5, label=lab)
            for s, x, y in zip(fam, xs, ys):
                v = parse_agent(s)[1]
                if v is not None:
                    ax[0, p].annotate(f"{v:g}", (max(x, 1e-3), y), fontsize=6, xytext=(3, 3),
                                      textcoords="offset points")
        ax[0, p].set(xscale="log", yscale="log", title=f"{env}: regret vs information",
                     xlabel="cumulative rate over the episodes (nats)",
                     ylabel="cumulative regret")
        ax[0, p].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot(cfg: dict, results, fig_dir: Path, runs: list, parse_agent) -> list[Path]:
    """Draw the config's ``figures`` into ``fig_dir`` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    draw = {
        "regret": lambda: _fig_curves(cfg, results, runs, parse_agent, plt, "cum_regret",
                                      "cumulative regret", "cumulative regret"),
        "rate": lambda: _fig_curves(cfg, results, runs, parse_agent, plt, "rate",
                                    "rate per episode (nats)", "rate over episodes"),
        "regret_vs_rate": lambda: _fig_regret_vs_rate(cfg, results, runs, parse_agent, plt),
    }

    def one(name):
        fig = draw[name]()
        path = Path(fig_dir) / f"{name}.png"
        atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return [path]

    return draw_each(cfg, cfg["figures"], one)
