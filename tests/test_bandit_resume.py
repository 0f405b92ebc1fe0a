"""Bandit regret runs in chunks (dra_jax.bandits.runner): the same numbers as one uninterrupted
scan, a killed sweep resumes from its last checkpoint with identical results, --max-batch does not
change a number, and a checkpoint of another config is refused (exit 2, nothing written)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax import sweep
from dra_jax.bandits import agents as ba
from dra_jax.bandits import runner as bandit_runner
from dra_jax.envs import bandits as envs


@pytest.mark.parametrize("agent", ["blasts"])  # warm-started BA: the largest carry
def test_chunks_equal_one_scan(agent):
    st = ba.Static(agent, "gaussian", 3, 12, record_every=2, z_samples=8, ba_max_iter=20)
    keys = jnp.stack([jax.random.key(s) for s in (0, 1)])
    hp = jax.tree.map(lambda x: jnp.stack([x, x]), ba.make_hyper(ba_beta=10.0, lam=0.1))
    ep = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * 2), envs.EnvParams())
    with jax.threefry_partitionable(False):
        ref = jax.tree.map(np.asarray, jax.jit(jax.vmap(ba.make_run(st)))(keys, hp, ep))
        init, advance, finish = bandit_runner.make_chunked(st)
        adv = jax.jit(jax.vmap(advance, in_axes=(0, 0, 0, None, None)))
        s = jax.jit(jax.vmap(init))(keys, hp, ep)
        for a, b in ((0, 1), (1, 4), (4, 4), (4, 6)):  # uneven pieces, one empty
            s = adv(s, hp, ep, jnp.int32(a), jnp.int32(b))
    got = jax.tree.map(np.asarray, jax.jit(finish)(s))
    for name, r, g in zip(ba.RunOut._fields, ref, got):
        np.testing.assert_array_equal(g, r, err_msg=name)
    assert np.all(np.diff(got.cum_regret, axis=1) >= 0) and np.all(got.counts.sum(1) == 12)


ARGS = ["--config", "configs/bandits_regret_vs_rate.toml", "--quiet", "--chunk-seconds", "1e-6",
        "--set", "n_seeds=2", "--set", "task_params.arms=3", "--set", "task_params.steps=40",
        "--set", "task_params.z_samples=8", "--set", "task_params.ba_max_iter=20",
        "--set", "sweep.agent=['blasts:10','dra:0.1']"]


def _outputs(out):
    s = json.loads((out / "summary.json").read_text())
    with np.load(out / "curves.npz") as z:
        return [r["final"] for r in s["runs"]], {k: z[k] for k in z.files}


def test_interrupted_resumed_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    ref_out = tmp_path / "ref"
    assert sweep.main([*ARGS, "--out", str(ref_out)]) == 0  # one batch per group
    assert not (ref_out / "checkpoint").exists()  # removed once finished

    saves = {"n": 0}
    real_save = bandit_runner.save_checkpoint

    def save_then_die(path, meta, tree):  # killed right after its 6th checkpoint
        real_save(path, meta, tree)
        saves["n"] += 1
        if saves["n"] == 6:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(bandit_runner, "save_checkpoint", save_then_die)
    assert sweep.main([*ARGS, "--out", str(out), "--max-batch", "1"]) == 130
    monkeypatch.setattr(bandit_runner, "save_checkpoint", real_save)
    ckpts = sorted(p.name for p in (out / "checkpoint").glob("*.npz"))
    # 4 points per run, one per chunk: batch 0 of group 0 done, batch 1 half-way
    assert ckpts == ["bandits_group0_batch0.npz", "bandits_group0_batch1.npz"]
    assert not (out / "summary.json").exists()

    # another config's checkpoint is refused, naming it; nothing is written, the checkpoint stays
    capsys.readouterr()
    rc = sweep.main([*ARGS, "--out", str(out), "--max-batch", "1", "--resume",
                     "--set", "task_params.ba_tol=1e-3"])
    assert rc == 2 and "belongs to another config" in capsys.readouterr().err
    assert not (out / "summary.json").exists() and (out / "checkpoint").is_dir()

    # the same checkpoints read with another batch split (batch 0 would be runs 0-1) are refused
    rc = sweep.main([*ARGS, "--out", str(out), "--max-batch", "2", "--resume"])
    assert rc == 2 and "another --max-batch" in capsys.readouterr().err

    assert sweep.main([*ARGS, "--out", str(out), "--max-batch", "1", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resumed bandit group 0 batch 1" in err and "(2/4 curve points done)" in err
    finals, curves = _outputs(out)
    ref_finals, ref_curves = _outputs(ref_out)
    assert finals == ref_finals
    assert curves.keys() == ref_curves.keys()
    for k in curves:
        np.testing.assert_array_equal(curves[k], ref_curves[k], err_msg=k)
    assert not (out / "checkpoint").exists()
    t = json.loads((out / "summary.json").read_text())["timing"]
    assert [g["batches"] for g in t["groups"]] == [2, 2]


def test_blasts_batches_end_where_beta_changes():
    """Runs ordered by hyperparameters: pieces of at most max_batch, and (BLASTS) a new batch
    at every change of beta, so a batch waits only for its own beta's slowest lane."""
    keys = [(1.0,), (1.0,), (1.0,), (10.0,), (10.0,)]
    assert bandit_runner._batch_starts(keys, 5, True) == [0, 3, 5]
    assert bandit_runner._batch_starts(keys, 2, True) == [0, 2, 3, 5]
    assert bandit_runner._batch_starts(keys, 5, False) == [0, 5]
    assert bandit_runner._batch_starts(keys, 2, False) == [0, 2, 4, 5]
