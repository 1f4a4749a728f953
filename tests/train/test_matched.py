"""The matched-budget LISTA control: same start, updates and batches as Stage I, plain loss."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from l2o.checkpoints import load_checkpoint
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask
from l2o.train import baseline, matched, stage1
from l2o.train.loop import OptimConfig

MODEL = {"T": 4}
OPT = {"iterations": 20, "batch_size": 16, "lr": 1e-3, "val_every": 10}
COMMON = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def trained_baseline(tiny_problem, tmp_path_factory):
    out = tmp_path_factory.mktemp("matched") / "baseline.pt"
    summary = baseline.run(data=tiny_problem.path, out=out, model=MODEL, baseline=OPT, **COMMON)
    return out, summary


def test_settings_take_stage1_budget_and_baseline_gamma():
    settings = matched.matched_settings(
        {"iterations": 500, "lr": 0.5, "gamma": 0.9},
        {"iterations": 30, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "val_every": 10,
         "loss": "sampled", "beta": 0.5, "init": "baseline"})
    assert settings == {"iterations": 30, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "val_every": 10,
                        "gamma": 0.9, "init": "baseline"}


def test_workflow_derives_the_same_settings():
    """common.smk re-derives matched_settings without importing torch: its key list must not drift."""
    smk = (Path(__file__).parents[2] / "workflow" / "rules" / "common.smk").read_text()
    keys = ast.literal_eval(re.search(r"^OPTIM_KEYS = (\(.*?\))$", smk, re.M).group(1))
    assert set(keys) == set(OptimConfig.__dataclass_fields__)


def test_starts_from_the_baseline_and_writes_a_predictive_checkpoint(tiny_problem, trained_baseline, tmp_path):
    init, base_summary = trained_baseline
    out = tmp_path / "matched.pt"
    summary = matched.run(data=tiny_problem.path, out=out, init=init, model=MODEL,
                          matched={**OPT, "init": "baseline"}, **COMMON)
    ckpt = load_checkpoint(out)
    assert ckpt["kind"] == "predictive" and ckpt["stage"] == "matched"
    assert [r["iteration"] for r in ckpt["history"]] == [0, 10, 20]
    # iteration 0 is the baseline's best model, unchanged
    assert ckpt["history"][0]["val_nmse_db_last"] == pytest.approx(base_summary["best_val_nmse_db_last"], abs=1e-9)
    assert summary["best_val_nmse_db_last"] <= ckpt["history"][0]["val_nmse_db_last"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matched.pt"]


def test_sees_exactly_stage1s_batches(tiny_problem, trained_baseline, tmp_path, monkeypatch):
    init, _ = trained_baseline
    seen: list[torch.Tensor] = []
    original = SparseRecoveryTask.sample_batch

    def recording(self, batch_size, generator):
        batch = original(self, batch_size, generator)
        seen.append(batch["y"].clone())
        return batch

    monkeypatch.setattr(SparseRecoveryTask, "sample_batch", recording)
    stage1.run(data=tiny_problem.path, out=tmp_path / "s1.pt", init=init, model=MODEL, seed=3,
               stage1={**OPT, "init": "baseline", "loss": "full", "beta": 0.28}, **COMMON)
    stage1_batches, seen[:] = list(seen), []
    matched.run(data=tiny_problem.path, out=tmp_path / "m.pt", init=init, model=MODEL, seed=3,
                matched={**OPT, "init": "baseline"}, **COMMON)
    assert len(seen) == len(stage1_batches) == OPT["iterations"]
    assert all(torch.equal(a, b) for a, b in zip(seen, stage1_batches))


def test_from_scratch_needs_no_checkpoint(tiny_problem, tmp_path):
    matched.run(data=tiny_problem.path, out=tmp_path / "m.pt", model=MODEL,
                matched={**OPT, "iterations": 10, "init": "scratch"}, **COMMON)
    assert load_checkpoint(tmp_path / "m.pt")["stage"] == "matched"


@pytest.mark.parametrize("settings, match", [
    ({**OPT, "init": "baseline"}, "no checkpoint"),
    ({**OPT, "init": "warm"}, "unknown init 'warm'"),
    ({**OPT, "init": "scratch", "beta": 0.1}, "beta"),
])
def test_bad_settings_raise_before_training(tiny_problem, tmp_path, settings, match):
    with pytest.raises((ValueError, TypeError), match=match):
        matched.run(data=tiny_problem.path, out=tmp_path / "m.pt", model=MODEL, matched=settings, **COMMON)
    assert not (tmp_path / "m.pt").exists()


def test_rejects_a_baseline_of_another_depth(tiny_problem, trained_baseline, tmp_path):
    init, _ = trained_baseline
    with pytest.raises(ValueError, match="config section 'model'"):
        matched.run(data=tiny_problem.path, out=tmp_path / "m.pt", init=init, model={"T": 5},
                    matched={**OPT, "init": "baseline"}, **COMMON)
