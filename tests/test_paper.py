"""``python -m dra_jax.paper``: the report's claims table is computed from the run's own outputs,
--resume skips finished configs, bad flags exit 2. A subset of ``--quick`` (``--only``) keeps
the test short; the whole quick run is the same code path over more configs."""
import json
import re

import numpy as np
import pytest

from dra_jax.paper import __main__ as paper
from dra_jax.paper.claims import BANDIT_CLAIMS, DRA_CLAIMS
from dra_jax.paper.claims_episodic import EPISODIC_CLAIMS
from dra_jax.paper.runs import RUNS

SUBSET = ["gridworld_baselines", "gridworld_baselines_authors", "bandits_rate_distortion",
          "episodic"]


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    rc = paper.main(["--quick", "--out", str(out), "--only", ",".join(SUBSET), "--no-progress"])
    assert rc == 0
    return out


def _table(report: str) -> list[list[str]]:
    rows = [ln for ln in report.splitlines() if re.match(r"^\| \d+ \|", ln)]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in rows]


def test_report_has_a_row_per_claim(quick_out):
    report = (quick_out / "report.md").read_text()
    rows = _table(report)
    claims = DRA_CLAIMS + BANDIT_CLAIMS + EPISODIC_CLAIMS
    assert len(rows) == len(claims) >= 23
    assert [r[2] for r in rows] == [c[2] for c in claims]
    for r, c in zip(rows, claims):
        if set(c[4]) <= set(SUBSET):  # computed: a number and a verdict of the rule
            assert re.search(r"\d", r[4]) and r[6] in ("reproduces", "partly", "**does not**"), r
        else:  # its config was not run: said so, not failed
            assert "not computed" in r[4] and "missing input" in r[6], r
        if set(c[4]) == {"gridworld_baselines"}:  # the authors' settings column, computed
            assert re.search(r"\d", r[8]) and re.search(r"\((reproduces|partly|\*\*does not\*\*)\)$", r[8]), r
        elif not set(c[4]) & {"gridworld", "gridworld_baselines"}:
            assert r[8] == "-", r
    for spec in RUNS:  # a section per figure, with the images of the configs that ran
        assert spec.title in report
    for name in SUBSET:
        figs = list((quick_out / name / "figures").glob("*.png"))
        assert figs and all(f"({name}/figures/{f.name})" in report for f in figs)
    assert "## Timing" in report.split("## Claims")[1] and report.rstrip().splitlines()[-1]
    assert re.search(r"\| \*\*total\*\* \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", report)


def test_rows_are_computed_from_the_run_outputs(quick_out):
    rows = {r["key"]: r for r in json.loads((quick_out / "claims.json").read_text())}
    # grid-world objective ratio, recomputed from summary.json's plateau means
    s = json.loads((quick_out / "gridworld_baselines" / "summary.json").read_text())
    plateau = {p["point"]["variant"]: p["objective"]["plateau_mean"] for p in s["points"]}
    f_dra, f_eq = plateau["dra"], plateau["equal"]
    want = f_eq / f_dra if f_dra < 0 else f_dra / f_eq
    got = rows["grid_obj_ratio"]["numbers"]["ratio"]
    assert got == pytest.approx(want, rel=1e-5)
    assert f"{got:.3g}" in rows["grid_obj_ratio"]["value"]
    # ... equal precision at its searched optimum, and the gradient's shared sigma beside it
    num = rows["grid_obj_ratio"]["numbers"]
    assert num["sigma_star"] == s["equal_search"][0]["best_sigma"]
    f_sgd = plateau["equal_sgd"]
    assert num["ratio_sgd"] == pytest.approx(f_sgd / f_dra if f_dra < 0 else f_dra / f_sgd, rel=1e-5)
    # episodes to converge against both lambda -> 0 baselines, all four criteria, resolution
    ep = rows["grid_ep_ratio"]["numbers"]
    assert set(ep["ratios"]) == {"lambda0", "sarsa_sigma_min"} and ep["eval_every"] == 30
    conv = {p["point"]["variant"]: p["episodes_to_converge"] for p in s["points"]}
    for base, rs in ep["ratios"].items():
        assert len(rs) == 4
        for crit, r in rs.items():
            a, b = conv["dra"][crit]["mean"], conv[base][crit]["mean"]
            assert r == (pytest.approx(a / b) if a and b else None)
    assert "every 30 episodes" in rows["grid_ep_ratio"]["rule"]
    # the consistency rows: every nested pair of the baselines, recomputed paired by seed
    cons = json.loads((quick_out / "consistency.json").read_text())
    lane = [r for r in cons if r["config"] == "gridworld_baselines"]
    assert {(r["larger"], r["smaller"]) for r in lane} == {("dra", "equal"), ("dra", "equal_sgd"),
                                                          ("equal", "equal_sgd")}
    assert {r["config"] for r in cons} == {"gridworld_baselines", "gridworld_baselines_authors"}
    report = (quick_out / "report.md").read_text()
    assert "## Consistency" in report and all(r["status"] in report for r in lane)
    # the authors' settings: the same claim from the lam 0.1, gamma 0.9 run
    s_a = json.loads((quick_out / "gridworld_baselines_authors" / "summary.json").read_text())
    pa = {p["point"]["variant"]: p["objective"]["plateau_mean"] for p in s_a["points"]}
    assert rows["grid_obj_ratio"]["authors_numbers"]["ratio"] == pytest.approx(
        pa["equal"] / pa["dra"] if pa["dra"] < 0 else pa["dra"] / pa["equal"], rel=1e-5)
    cfg_a = json.loads((quick_out / "gridworld_baselines_authors" / "paper_run.json").read_text())
    assert {"dra.lam=0.1", "dra.gamma=0.9"} <= set(cfg_a["overrides"])
    assert cfg_a["config"] == "gridworld_baselines.toml"
    # rate-distortion dominance, recomputed from the finals (cost = rate, objective = -distortion)
    s = json.loads((quick_out / "bandits_rate_distortion" / "summary.json").read_text())
    for kind in ("bernoulli", "gaussian"):
        pts = {r["params"]["agent"]: (r["final"]["cost"], -r["final"]["objective"])
               for r in s["runs"] if r["params"]["kind"] == kind}
        b = np.array(sorted(v for k, v in pts.items() if k.startswith("blasts")))
        dmax = max(-r["final"]["objective"] for r in s["runs"])
        st = [v for k, v in pts.items() if k.startswith("sts") and v[0] >= b[0, 0]]
        dom = sum(np.interp(r, b[:, 0], b[:, 1]) <= d + 0.01 * dmax for r, d in st)
        assert rows["blasts_rd"]["numbers"][kind] == {"dominated": dom, "compared": len(st)}


def test_episodic_rows_are_computed_from_the_run_outputs(quick_out):
    rows = {r["key"]: r for r in json.loads((quick_out / "claims.json").read_text())}
    s = json.loads((quick_out / "episodic" / "summary.json").read_text())
    reg = {}
    for i, r in enumerate(s["runs"]):
        reg.setdefault(r["params"]["agent"], []).append((i, r["final"]["cumulative_regret"]))
    assert {"psrl", "vepsrl:1000000"} <= reg.keys() and len(reg["psrl"]) >= 2
    # PSRL's sublinear regret: slopes of the cumulative regret recomputed from curves.npz
    with np.load(quick_out / "episodic" / "curves.npz") as z:
        per_ep = z["regret"].reshape(len(s["runs"]), -1)
    psrl = per_ep[[i for i, _ in reg["psrl"]]]
    e = psrl.shape[1]
    first, last = psrl[:, :e // 10].mean(), psrl[:, e - e // 2:].mean()
    num = rows["psrl_sublinear"]["numbers"]
    assert num["slope_first_tenth"] == pytest.approx(first, rel=1e-5)
    assert num["slope_last_half"] == pytest.approx(last, rel=1e-5)
    want = "reproduces" if last <= 0.5 * first else ("partly" if last < first else "does not")
    assert rows["psrl_sublinear"]["verdict"] == want
    # the cumulative regret of a run is the sum of its per-episode regret
    np.testing.assert_allclose(psrl.sum(1), [v for _, v in reg["psrl"]], rtol=1e-4)
    # VE-PSRL at the largest beta vs PSRL, paired by seed
    d = np.array([v for _, v in reg["vepsrl:1000000"]]) - np.array([v for _, v in reg["psrl"]])
    env = rows["vepsrl_large_beta"]["numbers"]["riverswim"]
    assert env["diff_mean"] == pytest.approx(d.mean(), abs=1e-4)
    # DRA vs PSRL and the rate ordering use the finals as written
    dra = [k for k in reg if k.startswith("dra")]
    best = min(dra, key=lambda k: np.mean([v for _, v in reg[k]]))
    assert rows["dra_vs_psrl"]["numbers"]["riverswim"]["regret"] == pytest.approx(
        np.mean([v for _, v in reg[best]]), rel=1e-6)
    betas = sorted((k for k in reg if k.startswith("vepsrl:")), key=lambda k: float(k[7:]))
    rate = [np.mean([s["runs"][i]["final"]["rate"] for i, _ in reg[k]]) for k in betas]
    assert rows["vepsrl_rate_falls"]["numbers"]["riverswim"]["cumulative_rate"] == pytest.approx(rate)


def test_resume_skips_finished_configs(quick_out, capsys):
    before = {n: (quick_out / n / "summary.json").stat().st_mtime_ns for n in SUBSET}
    rc = paper.main(["--quick", "--out", str(quick_out), "--only", ",".join(SUBSET), "--resume",
                     "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert all(f"{n}: complete in" in err and "skipped (--resume)" in err for n in SUBSET)
    assert {n: (quick_out / n / "summary.json").stat().st_mtime_ns for n in SUBSET} == before
    # a quick run's outputs are not the full run's
    assert paper.is_complete(quick_out, SUBSET[0], quick=True)
    assert not paper.is_complete(quick_out, SUBSET[0], quick=False)


def test_resume_with_compare_timing_shows_before_and_after(quick_out, tmp_path):
    """``--compare-timing OLD``: the timing table puts OLD's wall time per config beside this
    session's, with the ratio; a config OLD lacks gets dashes and stays out of the total."""
    import json
    import shutil

    old = tmp_path / "old"
    for n in SUBSET[:1]:  # OLD has the first config only, 3 times slower
        shutil.copytree(quick_out / n, old / n)
        rec = json.loads((old / n / paper.MARKER).read_text())
        rec["wall_s"] = 3 * json.loads((quick_out / n / paper.MARKER).read_text())["wall_s"]
        (old / n / paper.MARKER).write_text(json.dumps(rec))
    assert paper.main(["--quick", "--out", str(quick_out), "--only", ",".join(SUBSET), "--resume",
                       "--no-progress", "--compare-timing", str(old)]) == 0
    text = (quick_out / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and "|" in line[2:]}
    assert "before: wall (s)" in text and rows[SUBSET[0]].rstrip().endswith("| 3.00x |")
    if len(SUBSET) > 1:
        assert rows[SUBSET[1]].rstrip().endswith("| - | - |")
    assert rows["**total**"].rstrip().endswith("| 3.00x |")


@pytest.mark.parametrize("argv", [["--only", "gridworld,nope"], ["--only", ","], ["--bogus"],
                                  ["--compare-timing", "/nonexistent/dir"], ["--cpu-devices", "0"]])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, argv, capsys):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        paper.main(["--quick", "--out", str(out)] + argv)
    assert e.value.code == 2
    assert not out.exists()
    if "nope" in argv[-1]:
        assert "nope" in capsys.readouterr().err


def test_a_violated_order_is_flagged_as_an_optimizer_problem():
    """A smaller family that beats the larger one beyond 2 SE is a VIOLATION row, named an
    optimizer problem; within noise it holds."""
    from types import SimpleNamespace

    from dra_jax.paper import consistency

    curves = np.zeros((2, 3, 10))  # [variant, seed, evaluations]
    curves[0] = -10.0 + np.array([0.1, -0.1, 0.0])[:, None]  # dra
    curves[1] = -5.0 + np.array([0.2, 0.0, -0.2])[:, None]  # equal beats dra: impossible
    res = SimpleNamespace(axes=[("variant", ["dra", "equal"]), ("seed", [0, 1, 2])],
                          arrays={"objective": curves}, shape=(2, 3))
    (row,) = consistency.lane_rows("t", res)
    assert row["status"] == consistency.VIOLATION and "optimizer problem" in row["status"]
    assert row["diff"] == pytest.approx(-5.0)
    curves[1] = -10.05 + np.array([0.1, -0.1, 0.0])[:, None]
    (row,) = consistency.lane_rows("t", res)
    assert row["status"] == consistency.HOLDS
    text = "\n".join(consistency.consistency_section([row]))
    assert "no violations" in text and "| t | plateau F | dra | equal |" in text
