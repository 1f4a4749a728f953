"""Checkpoints as MLflow artifacts (l2o/artifacts.py): a training job stores its checkpoint in its run,
with its size; a run id leads back to it (l2o predict --run-id), and a wrong id says what it is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from l2o.artifacts import ARTIFACT, BYTES_TAG, PATH_TAG, SHA_TAG, STORED_TAG, checkpoint_from_run, log_checkpoint
from l2o.checksums import sha256_file
from l2o.cli import main
from l2o.jobs import snakemake_job
from l2o.tracking import MlflowTracker


class _Outputs(list):
    """Snakemake's named output list: indexable, and ``.model`` by name."""

    def __init__(self, model: str):
        super().__init__([model])
        self.model = model


@pytest.fixture
def parent(mlflow_store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    run = mlflow_store.client().create_run(mlflow_store.experiment_id)
    monkeypatch.setenv("L2O_MLFLOW_PARENT_RUN_ID", run.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", mlflow_store.experiment_id)
    return SimpleNamespace(store=mlflow_store, run_id=run.info.run_id)


def _training_job(tmp_path: Path, payload: bytes, max_mb: float = 100.0):
    (tmp_path / "logs").mkdir(exist_ok=True)
    model = tmp_path / "results/t/seed0/stage1/model.pt"
    sm = SimpleNamespace(rule="stage1", wildcards={"task": "t", "seed": "0"}, threads=1, params={"stage1": {}},
                         input=[], output=_Outputs(str(model)), log=[str(tmp_path / "logs/stage1.log")],
                         config={"tracking": {"retry_seconds": 5, "checkpoint_max_mb": max_mb}},
                         resources=SimpleNamespace(runtime=30))
    with snakemake_job(sm) as job:
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(payload)  # what the stage writes
    return job.tracker.run_id, model


def test_a_training_job_stores_its_checkpoint_and_the_run_id_reads_it_back(parent, tmp_path):
    payload = np.random.default_rng(0).bytes(50_000)
    run_id, model = _training_job(tmp_path, payload)
    run = parent.store.client().get_run(run_id)
    assert run.data.tags[BYTES_TAG] == "50000" and run.data.tags[STORED_TAG] == ARTIFACT
    assert run.data.tags[SHA_TAG] == sha256_file(model)
    assert [a.path for a in parent.store.client().list_artifacts(run_id, "checkpoint")] == [ARTIFACT]
    model.unlink()  # the run alone leads to the model
    got = checkpoint_from_run(run_id, tmp_path / "dl")
    assert got.read_bytes() == payload and got.is_relative_to(tmp_path / "dl")


def test_a_large_checkpoint_is_only_named(parent, tmp_path):
    run_id, model = _training_job(tmp_path, b"x" * 3000, max_mb=0.001)
    tags = parent.store.client().get_run(run_id).data.tags
    assert tags[STORED_TAG].startswith("no: ") and tags[PATH_TAG] == str(model.resolve())
    assert parent.store.client().list_artifacts(run_id, "checkpoint") == []
    assert checkpoint_from_run(run_id, tmp_path / "dl") == model.resolve()
    model.write_bytes(b"y" * 3000)  # overwritten by a later run
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        checkpoint_from_run(run_id, tmp_path / "dl")


def test_a_wrong_run_id_says_what_it_is(parent, tmp_path):
    with pytest.raises(ValueError, match=r"no MLflow run '0123abcd'"):
        checkpoint_from_run("0123abcd", tmp_path)
    with pytest.raises(ValueError, match=r"holds no checkpoint: only training jobs"):
        checkpoint_from_run(parent.run_id, tmp_path)  # the invocation's parent run


def test_without_tracking_nothing_is_logged(tmp_path):
    from l2o.tracking import NullTracker

    (tmp_path / "m.pt").write_bytes(b"abc")
    assert log_checkpoint(NullTracker(), tmp_path / "m.pt") == {}


def test_predict_by_run_id_equals_predict_by_file(parent, tmp_path, capsys):
    """A tiny sparse-recovery stopping model, trained by the CLI, stored in a run, predicted by run id."""
    cfg = {"tasks": ["sparse_recovery"], "sparse_recovery": {
        "data": {"m": 10, "n": 20, "n_val_per_snr": 10, "n_test_per_snr": 10},
        "model": {"T": 3}, "policy": {"hidden": [8]},
        "stage1": {"iterations": 4, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "stage2": {"iterations": 4, "batch_size": 8, "lr": 0.001, "val_every": 2}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--config", str(tmp_path / "c.yaml"), "--no-progress"]
    d = tmp_path / "d.npz"
    assert main(["data", *args, "--out", str(d)]) == 0
    assert main(["stage1", *args, "--data", str(d), "--out", str(tmp_path / "s1.pt")]) == 0
    assert main(["stage2", *args, "--data", str(d), "--model", str(tmp_path / "s1.pt"), "--out", str(tmp_path / "s2.pt")]) == 0
    tracker = MlflowTracker("stage2/task=sparse_recovery/seed=0", parent.run_id, parent.store.experiment_id)
    log_checkpoint(tracker, tmp_path / "s2.pt")
    assert main(["predict", *args, "--data", str(d), "--model", str(tmp_path / "s2.pt"), "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["predict", *args, "--data", str(d), "--run-id", tracker.run_id, "--out", str(tmp_path / "b.npz")]) == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert np.array_equal(a["prediction"], b["prediction"]) and np.array_equal(a["stop_step"], b["stop_step"])
    assert main(["predict", *args, "--data", str(d), "--run-id", "feedbeef", "--out", str(tmp_path / "c.npz")]) == 2
    assert "no MLflow run 'feedbeef'" in capsys.readouterr().err
