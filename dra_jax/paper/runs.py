"""The paper's configs, in the order of the paper, with the overrides of ``--quick``.

Each entry names the shipped config (``configs/<name>.toml``) it runs and the figures of the
paper it stands for. The full run uses the configs as shipped; ``--quick`` applies ``quick``
(few seeds, episodes, grid points): a smoke test of the pipeline whose numbers are *not*
expected to reproduce the paper. Its time is mostly compilation (one program per config, per
n_traj, per bandit agent); measured in report.md's timing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class PaperRun:
    name: str                      # configs/<name>.toml and the output folder OUT/<name>
    figures: str                   # the paper's figures it reproduces
    title: str                     # section title of the report
    text: str                      # what the section shows
    quick: tuple[str, ...] = field(default_factory=tuple)  # --set overrides of --quick
    full: tuple[str, ...] = field(default_factory=tuple)   # --set overrides of the full run
    base: str = ""                 # the config when it is not configs/<name>.toml

    @property
    def config(self) -> Path:
        return CONFIG_DIR / f"{self.base or self.name}.toml"

    def overrides(self, quick: bool) -> list[str]:
        """The ``--set`` overrides of this entry in the given mode."""
        return list(self.quick) + list(self.full) if quick else list(self.full)


# The authors' settings of their saved Fig. 1b data (lam 0.1, gamma 0.9), beside Table B.1's
# (the shipped configs): the grid-world claims are computed under both.
AUTHORS = ("dra.lam=0.1", "dra.gamma=0.9")


_LANE_QUICK = ("n_seeds=2", "eval.n_rollouts=10")
# the equal-precision search, smaller (quick mode)
_SEARCH_QUICK = ("variants.equal.equal_points=4", "variants.equal.equal_rounds=1",
                 "variants.equal.equal_seeds=1")

RUNS: tuple[PaperRun, ...] = (
    PaperRun("gridworld", "DRA Fig. 1b, 1d",
             "Grid-world: learning curves for four initial precisions",
             "DRA on the 6 x 9 grid-world (Table B.1) from sigma0 = 1, 3, 4, 5: objective F and "
             "cost over episodes, and the final allocation of precision.",
             _LANE_QUICK + ("dra.episodes=300", "eval.every=30")),
    PaperRun("gridworld_switch", "DRA Fig. 1c",
             "Grid-world: the environment switches",
             "The obstacle and goal move after switch_episode; normalized choice entropy of "
             "every cell at four snapshots.",
             ("n_seeds=1", "eval.n_rollouts=10", "dra.episodes=400", "task_params.switch_episode=200",
                            "eval.every=50", "eval.snapshots=[100,200,250,400]")),
    PaperRun("gridworld_baselines", "DRA Sec. 3.1 (2x, 1.5x)",
             "Grid-world: DRA against equal precision and lambda = 0",
             "The objective ratio DRA / equal precision, with equal precision at its optimum "
             "(the shared sigma maximizing F, searched) and by gradient (equal_sgd), and the "
             "episodes-to-converge ratio DRA / lambda = 0, with lambda = 0 learning sigma at no "
             "cost (the paper's wording) and SARSA with sigma pinned at sigma_min.",
             _LANE_QUICK + _SEARCH_QUICK + ("dra.episodes=300", "eval.every=30")),
    PaperRun("gridworld_authors", "DRA Fig. 1b (the authors' settings)",
             "Grid-world: learning curves for four initial precisions, at lam 0.1, gamma 0.9",
             "The Fig. 1b run again at the settings of the authors' saved Fig. 1b data (lam 0.1, "
             "gamma 0.9, where Table B.1 and the shipped config have lam 0.2, gamma 1): the "
             "claims table's second column.",
             _LANE_QUICK + ("dra.episodes=300", "eval.every=30"), full=AUTHORS, base="gridworld"),
    PaperRun("gridworld_baselines_authors", "DRA Sec. 3.1 (the authors' settings)",
             "Grid-world: DRA against its baselines, at lam 0.1, gamma 0.9",
             "The baselines run again at the settings of the authors' saved Fig. 1b data: the "
             "claims table's second column.",
             _LANE_QUICK + _SEARCH_QUICK + ("dra.episodes=300", "eval.every=30"), full=AUTHORS,
             base="gridworld_baselines"),
    PaperRun("gridworld_elbo", "Acerbi et al. 2022 (ELBO readings)",
             "Grid-world: DRA as variational inference",
             "The paper's objective beside the two ELBO readings of Acerbi, Patel & Pouget (2022).",
             ("n_seeds=1", "eval.n_rollouts=10", "dra.episodes=200", "eval.every=50")),
    PaperRun("mountain_car", "DRA Fig. 2b-d",
             "Mountain car: the three gradients",
             "DRA on gymnax's MountainCar-v0 with the REINFORCE (R), q-value (Q) and advantage "
             "(A) gradients of Eq. 4.",
             _LANE_QUICK + ("dra.episodes=100", "eval.every=25")),
    PaperRun("mountain_car_baselines", "DRA Sec. 3.2 (1.3x)",
             "Mountain car: DRA against equal precision and lambda = 0",
             "The objective ratio DRA / equal precision, with equal precision at its optimum "
             "(the shared sigma maximizing F, searched) and by gradient (equal_sgd), and the "
             "episodes-to-converge ratio DRA / lambda = 0, with lambda = 0 learning sigma at no "
             "cost (the paper's wording) and SARSA with sigma pinned at sigma_min.",
             _LANE_QUICK + _SEARCH_QUICK + ("dra.episodes=100", "eval.every=25")),
    PaperRun("planning", "DRA Fig. 3c-f",
             "Planning: search budget, gradient vs CMA-ES, flexible vs equal precision",
             "Sigma optimized at every search budget by the stochastic gradient (n_traj 1, 10, "
             "50), by equal precision at its optimum (the shared sigma maximizing F, searched) "
             "and by CMA-ES; d' against impact and F-tilde.",
             _SEARCH_QUICK + ("n_seeds=2", "dra.episodes=400", "eval.every=200", "eval.n_rollouts=64",
              "final.n_rollouts=512", "sweep.budget=[3,12,24]", "cma.generations=8",
              "cma.restarts=2", "cma.n_eval_trials=64")),
    PaperRun("planning_loo", "DRA Fig. 3c, 3d (variance-reduced gradient)",
             "Planning: the gradient with a leave-one-out baseline against CMA-ES and equal precision",
             "The same budgets with an unbiased, variance-reduced sigma gradient (baseline "
             "loo_start) and an optimizer that converges, beside the paper's estimator as "
             "published: the gradient against CMA-ES, and flexible against equal precision.",
             ("n_seeds=2", "dra.episodes=400", "variants.n50.episodes=200",
              "variants.paper_n10.episodes=200", "eval.every=200", *_SEARCH_QUICK, "eval.n_rollouts=64",
              "final.n_rollouts=512", "sweep.budget=[3,12,24]", "cma.generations=8",
              "cma.restarts=2", "cma.n_eval_trials=64")),
    PaperRun("planning_moves", "DRA Fig. B.4",
             "Planning: d' against impact for M = 3, 4, 5 moves",
             "The slope of d' against impact at each budget, for three tree depths.",
             ("n_seeds=2", "dra.episodes=300", "eval.every=150", "eval.n_rollouts=64",
              "final.n_rollouts=512", "sweep.moves=[3,4]", "sweep.budget_index=[0,4,7]")),
    PaperRun("bandits_action_probs", "Review Figs. 2-3",
             "BLASTS: action probabilities against the cost of information",
             "BLASTS's marginal over actions from lambda = 0.01 to 1e4, beside Thompson sampling "
             "and Boltzmann.",
             ("task_params.z_samples=300", "sweep.info_cost=[0.01,0.1,1.0,10.0,100.0,10000.0]",
              "task_params.ba_max_iter=2000")),
    PaperRun("bandits_regret", "Review Figs. 4, 6",
             "BLASTS against Thompson sampling: regret over time",
             "Cumulative regret and target rate on 10-armed Bernoulli and Gaussian bandits.",
             ("n_seeds=4", "task_params.steps=200", "task_params.z_samples=32",
              "sweep.agent=['ts','blasts:100','blasts:100000']")),
    PaperRun("bandits_rate_distortion", "Review Fig. 5",
             "BLASTS against satisficing TS on the rate-distortion plane",
             "Rate and distortion of each agent's learning target under the prior, 1000 arms.",
             ("task_params.arms=100", "task_params.z_samples=100",
              "sweep.agent=['ts','sts:0.01','sts:0.1','sts:0.5','sts:2','blasts:1','blasts:10',"
              "'blasts:100','blasts:1000','blasts:100000']")),
    PaperRun("bandits_regret_vs_rate", "Regret vs rate (all four agents)",
             "Regret against information rate: TS, satisficing TS, BLASTS, DRA",
             "Time-average rate of each agent's learning target against its cumulative regret.",
             ("n_seeds=4", "task_params.steps=200", "task_params.z_samples=32",
              # the ts and blasts groups equal bandits_regret's (compiled once, then cached)
              "sweep.agent=['ts','sts:0.1','blasts:100','blasts:100000','dra:0.1']")),
    PaperRun("episodic", "Review App. B (Algorithms 6, 7) + DRA",
             "Episodic MDPs: PSRL, value-equivalent rate-distortion sampling (VE-PSRL) and DRA",
             "Cumulative regret over episodes of PSRL, VE-PSRL across β and DRA on RiverSwim and "
             "random MDPs drawn from the prior; the rate over episodes; final regret against the "
             "cumulative rate (DRA: its KL cost, not a mutual information).",
             ("n_seeds=4", "dra.episodes=100", "sweep.env=['riverswim']",
              "sweep.agent=['psrl','vepsrl:0.1','vepsrl:10','vepsrl:1000000','dra:0.01']",
              "task_params.z_samples=16", "task_params.n_values=4", "eval.n_rollouts=5",
              "dra.n_traj=4")),
)

BY_NAME = {r.name: r for r in RUNS}


MARKER = "paper_run.json"  # OUT/<name>/MARKER: written last, when a config's outputs are complete


def marker_of(out: Path, name: str) -> dict | None:
    """The completion record of ``OUT/<name>``, or None when its outputs are not complete."""
    d = out / name
    try:
        rec = json.loads((d / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not ((d / "summary.json").is_file() and (d / "curves.npz").is_file()):
        return None
    return rec


def is_complete(out: Path, name: str, quick: bool) -> bool:
    rec = marker_of(out, name)
    return (rec is not None and rec.get("quick") == quick
            and rec.get("overrides") == BY_NAME[name].overrides(quick))
