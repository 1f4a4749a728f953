"""Shared fixtures: a seeded torch RNG and a tiny sparse-recovery problem on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from l2o.tasks.sparse_recovery.data import ProblemConfig, load_problem, write_problem

TINY_PROBLEM = dict(m=20, n=40, n_val_per_snr=50, n_test_per_snr=50, extra_test_snr_db=[10.0])


@dataclass(frozen=True)
class TinyProblem:
    """The session's tiny problem file, its config, JSON sidecar and loaded arrays."""

    path: Path
    config: ProblemConfig
    meta: dict
    arrays: dict[str, np.ndarray]
    data_hash: str


@pytest.fixture
def rng() -> torch.Generator:
    """A CPU torch generator seeded 0 (fresh per test)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def tiny_problem(tmp_path_factory) -> TinyProblem:
    """``ProblemConfig(m=20, n=40, 50 val/test per SNR, extra test at 10 dB)`` written once."""
    config = ProblemConfig(**TINY_PROBLEM)
    path = tmp_path_factory.mktemp("tiny_problem") / "problem.npz"
    meta = write_problem(config, path)
    arrays, data_hash = load_problem(path)
    return TinyProblem(path, config, meta, arrays, data_hash)


@pytest.fixture(scope="session")
def tiny_problem_path(tiny_problem) -> Path:
    return tiny_problem.path


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(n)``: the sparse-recovery task's ``sample_batch`` raises
    KeyboardInterrupt at its n-th call (a job killed mid-training); ``monkeypatch.undo()`` or
    the test's end restores it."""
    from l2o.tasks.sparse_recovery.task import SparseRecoveryTask

    real = SparseRecoveryTask.sample_batch

    def install(n: int):
        calls = {"n": 0}

        def dying_sample_batch(self, batch_size, generator):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(self, batch_size, generator)

        monkeypatch.setattr(SparseRecoveryTask, "sample_batch", dying_sample_batch)
        return real

    return install


@dataclass(frozen=True)
class MlflowStore:
    """A local sqlite MLflow store (MLFLOW_TRACKING_URI points at it) and a fresh experiment in it."""

    uri: str
    experiment_id: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)


@pytest.fixture(scope="session")
def _mlflow_db(tmp_path_factory) -> str:
    """One sqlite store for the session (creating one takes seconds)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the tables once
    return uri


@pytest.fixture
def mlflow_store(_mlflow_db, monkeypatch, request) -> MlflowStore:
    """The session's store with an experiment of this test's own; no parent run in the environment."""
    from mlflow.tracking import MlflowClient

    import uuid

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _mlflow_db)
    for var in ("L2O_MLFLOW_PARENT_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.setenv(var, "")  # records the old value: the test's own setting is undone afterwards
        monkeypatch.delenv(var)
    exp_id = MlflowClient(_mlflow_db).create_experiment(f"{request.node.name}-{uuid.uuid4().hex[:8]}")
    return MlflowStore(_mlflow_db, exp_id)
