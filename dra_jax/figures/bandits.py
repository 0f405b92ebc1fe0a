"""Figures of the capacity-limited bandits (the review's Figs. 2-6, regret vs rate), drawn from
a sweep's results (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dra_jax.config import iter_run_params
from dra_jax.figures.common import draw_each
from dra_jax.results import GridResults, atomic_savefig


def _by_agent(cfg, results):
    """(kind, agent spec) -> list of run indices, in grid order."""
    groups: dict = {}
    for run in iter_run_params(cfg):
        tp = run["task_params"]
        groups.setdefault((tp["kind"], tp["agent"]), []).append(run["index"])
    return groups


def _label(spec: str, parse) -> str:
    name, v = parse(spec)
    sym = {"sts": "ε", "blasts": "β", "dra": "λ"}
    if name == "ts":
        return "TS"
    nice = {"sts": "STS", "blasts": "BLASTS", "dra": "DRA"}[name]
    return nice if v is None else f"{nice} {sym[name]}={v:g}"


def _colors(n, cmap="viridis"):
    import matplotlib.pyplot as plt

    return [plt.get_cmap(cmap)(x) for x in np.linspace(0.1, 0.9, max(n, 1))]


def plot(cfg: dict, results: GridResults, fig_dir: Path, parse_agent, agent_names) -> list[Path]:
    """Draw the config's ``figures`` (matplotlib, Agg) into ``fig_dir``, written atomically.

    ``parse_agent(spec) -> (name, parameter)`` reads the runs' agent specs and ``agent_names``
    orders the agent families (both from the experiment module, which knows the agents)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = Path(fig_dir)

    def draw(name):
        fig = _FIGS[name](cfg, results, plt, (parse_agent, agent_names))
        path = fig_dir / f"{name}.png"
        atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return [path]

    return draw_each(cfg, cfg["figures"], draw)


def _ap_arrays(cfg, results):
    runs = list(iter_run_params(cfg))
    lams = np.array([r["task_params"]["info_cost"] for r in runs])
    ul = np.unique(lams)
    avg = lambda a: np.stack([a[lams == v].mean(0) for v in ul])  # noqa: E731  (over seeds)
    return ul, {k: avg(np.asarray(results.curves[k])) for k in ("blasts_probs", "ts_probs", "boltzmann_probs", "rate")}


def _fig_action_probs(cfg, results, plt, agents):
    tp = cfg["task_params"]
    lams, c = _ap_arrays(cfg, results)
    means = np.asarray(results.arrays["setup_means"])[0]
    sd = float(np.asarray(results.arrays["setup_sds"])[0])
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.4))
    x = np.linspace(means.min() - 4 * sd, means.max() + 4 * sd, 300)
    cols = _colors(len(means), "coolwarm")
    for a, m in enumerate(means):
        ax[0].plot(x, np.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color=cols[a],
                   label=f"a{a}: N({m:g}, {sd:g}²)")
    ax[0].set(title="A  beliefs", xlabel="mean reward", ylabel="density")
    ax[0].legend(fontsize=7)
    for panel, key, title in ((1, "boltzmann_probs", "B  Boltzmann (T = λ)"),
                              (2, "ts_probs", "C  Thompson sampling"),
                              (3, "blasts_probs", "D  BLASTS (β = 1/λ)")):
        for a in range(len(means)):
            ax[panel].plot(lams, c[key][:, 0, a], "o-", ms=3, color=cols[a], label=f"a{a}")
        ax[panel].set(xscale="log", ylim=(-0.02, 1.02), title=title,
                      xlabel="cost of information λ (utils/nat)", ylabel="P(action)")
        ax[panel].legend(fontsize=7)
    fig.suptitle(f"BLASTS vs cost of information (Z={tp['z_samples']}, BA tol {tp['ba_tol']:g}, "
                 f"cap {tp['ba_max_iter']})", fontsize=9)
    fig.tight_layout()
    return fig


def _fig_gap_uncertainty(cfg, results, plt, agents):
    tp = cfg["task_params"]
    lams, c = _ap_arrays(cfg, results)
    means = np.asarray(results.arrays["setup_means"])
    best = np.argmax(means, axis=1)
    n_g = len(tp["gaps"])
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for panel, (lo, labels, title) in enumerate(((1, tp["gaps"], "A  action gap"),
                                                 (1 + n_g, tp["sds"], "B  uncertainty (belief SD)"))):
        cols = _colors(len(labels))
        for j, v in enumerate(labels):
            s = lo + j
            ax[panel].plot(lams, c["blasts_probs"][:, s, best[s]], "o-", ms=3, color=cols[j],
                           label=("gap " if panel == 0 else "SD ") + f"{v:g}")
        ax[panel].set(xscale="log", ylim=(0, 1.02), title=title,
                      xlabel="cost of information λ (utils/nat)", ylabel="BLASTS P(best arm)")
        ax[panel].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _regret_groups(cfg, results):
    groups = _by_agent(cfg, results)
    kinds = sorted({k for k, _ in groups})
    return groups, kinds


def _agent_order(specs, agents):
    parse, names = agents

    def key(s):
        name, v = parse(s)
        return (names.index(name), -1 if v is None else v)

    return sorted(specs, key=key)


def _fig_regret(cfg, results, plt, agents):
    groups, kinds = _regret_groups(cfg, results)
    t = np.asarray(results.arrays["t"])
    cum = np.asarray(results.curves["cum_regret"])
    fig, ax = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4), squeeze=False)
    for p, kind in enumerate(kinds):
        specs = _agent_order([s for k, s in groups if k == kind], agents)
        blasts = [s for s in specs if s.startswith("blasts")]
        cols = dict(zip(blasts, _colors(len(blasts), "plasma")))
        for s in specs:
            y = cum[groups[(kind, s)]]
            m, se = y.mean(0), y.std(0) / np.sqrt(len(y))
            style = dict(color="k", lw=2.2) if s == "ts" else dict(color=cols.get(s, "gray"), lw=1.3)
            ax[0, p].plot(t, m, label=_label(s, agents[0]), **style)
            ax[0, p].fill_between(t, m - se, m + se, alpha=0.15, color=style["color"])
        n = len(groups[(kind, specs[0])])
        ax[0, p].set(title=f"{kind} bandit, K={cfg['task_params']['arms']}, {n} seeds",
                     xlabel="time period t", ylabel="cumulative regret")
        ax[0, p].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _fig_rate_over_time(cfg, results, plt, agents):
    groups, kinds = _regret_groups(cfg, results)
    t = np.asarray(results.arrays["t"])
    rate = np.asarray(results.curves["rate"])
    fig, ax = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4), squeeze=False)
    for p, kind in enumerate(kinds):
        specs = [s for s in _agent_order([s for k, s in groups if k == kind], agents)
                 if s == "ts" or s.startswith("blasts")]
        blasts = [s for s in specs if s.startswith("blasts")]
        cols = dict(zip(blasts, _colors(len(blasts), "plasma")))
        for s in specs:
            y = rate[groups[(kind, s)]]
            if not np.isfinite(y).any():
                continue
            lab = "TS: H_t(A*)" if s == "ts" else _label(s, agents[0])
            style = dict(color="k", lw=2.2) if s == "ts" else dict(color=cols[s], lw=1.3)
            ax[0, p].plot(t, np.nanmean(y, 0), label=lab, **style)
        ax[0, p].set(title=f"{kind} bandit: rate of the learning target", xlabel="time period t",
                     ylabel="rate (nats)", yscale="symlog", )
        ax[0, p].set_yscale("symlog", linthresh=1e-2)
        ax[0, p].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _fig_regret_vs_rate(cfg, results, plt, agents):
    groups, kinds = _regret_groups(cfg, results)
    final_regret = np.array([-f["objective"] for f in results.finals])
    rate = np.array([np.nan if f["cost"] is None else f["cost"] for f in results.finals])
    fig, ax = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.4), squeeze=False)
    style = {"ts": ("k", "*"), "sts": ("tab:blue", "s"), "blasts": ("tab:red", "o"), "dra": ("tab:green", "^")}
    for p, kind in enumerate(kinds):
        specs = _agent_order([s for k, s in groups if k == kind], agents)
        for name in agents[1]:
            fam = [s for s in specs if agents[0](s)[0] == name]
            if not fam:
                continue
            xs = np.array([np.nanmean(rate[groups[(kind, s)]]) for s in fam])
            ys = np.array([final_regret[groups[(kind, s)]].mean() for s in fam])
            se = np.array([final_regret[groups[(kind, s)]].std() / np.sqrt(len(groups[(kind, s)])) for s in fam])
            c, m = style[name]
            nice = {"ts": "TS", "sts": "satisficing TS (ε)", "blasts": "BLASTS (β)", "dra": "DRA (λ)"}[name]
            ax[0, p].errorbar(xs, ys, yerr=se, color=c, marker=m, ms=7 if name == "ts" else 5,
                              lw=1, capsize=2, label=nice)
            for s, x, y in zip(fam, xs, ys):
                v = agents[0](s)[1]
                if v is not None:
                    ax[0, p].annotate(f"{v:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax[0, p].set(title=f"{kind} bandit, K={cfg['task_params']['arms']}, T={cfg['task_params']['steps']}",
                     xlabel="mean information rate of the learning target (nats/step)",
                     ylabel="cumulative regret at T")
        ax[0, p].set_yscale("log")
        ax[0, p].legend(fontsize=8)
    fig.text(0.01, -0.02, "rate: TS H(A*), STS H(A_ε), BLASTS BA channel rate, under the posterior; "
                          "DRA H(argmax(q+σζ)) under its memories N(q,σ²)", fontsize=7)
    fig.tight_layout()
    return fig


def _fig_rate_distortion(cfg, results, plt, agents):
    groups, kinds = _regret_groups(cfg, results)
    rate = np.asarray(results.curves["rate"])
    dist = np.asarray(results.curves["distortion"])
    fig, ax = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.2), squeeze=False)
    for p, kind in enumerate(kinds):
        specs = _agent_order([s for k, s in groups if k == kind], agents)
        for name, c, m, nice in (("blasts", "tab:red", "o", "BLASTS (β sweep)"),
                                 ("sts", "tab:blue", "s", "satisficing TS (ε sweep)"),
                                 ("ts", "k", "*", "TS")):
            fam = [s for s in specs if agents[0](s)[0] == name]
            if not fam:
                continue
            xs = np.array([dist[groups[(kind, s)]].mean() for s in fam])
            ys = np.array([rate[groups[(kind, s)]].mean() for s in fam])
            o = np.argsort(xs)
            ax[0, p].plot(xs[o], ys[o], marker=m, color=c, lw=1, ms=6 if name == "ts" else 4, label=nice)
        ax[0, p].set(title=f"{kind} bandit, K={cfg['task_params']['arms']}, Z={cfg['task_params']['z_samples']}",
                     xlabel="distortion E[(max θ − θ(target))²]", ylabel="rate I(E; target) (nats)")
        ax[0, p].set_xscale("symlog", linthresh=1e-4)
        ax[0, p].legend(fontsize=8)
    fig.tight_layout()
    return fig


_FIGS = {"action_probs": _fig_action_probs, "gap_uncertainty": _fig_gap_uncertainty,
         "regret": _fig_regret, "rate_over_time": _fig_rate_over_time,
         "regret_vs_rate": _fig_regret_vs_rate, "rate_distortion": _fig_rate_distortion}
