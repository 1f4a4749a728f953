"""MLflow as a side channel: one child run per job under one parent run per invocation.

Nothing here decides what Snakemake considers changed: run ids live in the
environment and in output files' metadata, never in ``params``.

The workflow's ``onstart`` (main process) calls :func:`start_parent_run`,
which creates/migrates the tracking DB once and exports
``L2O_MLFLOW_PARENT_RUN_ID`` and ``MLFLOW_EXPERIMENT_ID`` to the jobs. A job
calls :func:`job_tracker`; with no parent run in the environment it gets a
:class:`NullTracker` (the CLI's default), so the package works without MLflow.
``mlflow`` is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PARENT_ENV = "L2O_MLFLOW_PARENT_RUN_ID"
DEFAULT_URI = "sqlite:///mlflow.db"


def config_hash(cfg: Any) -> str:
    """Short stable hash of a JSON-able config."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def flatten(cfg: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists to ``{"a.b": "value"}`` (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(cfg) if isinstance(cfg, list) else str(cfg)
    return out


class NullTracker:
    """Does nothing; used when tracking is off."""

    run_id: str | None = None

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class MlflowTracker:
    """A child run of the invocation's parent run."""

    def __init__(self, run_name: str, parent_run_id: str, experiment_id: str | None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient()
        if experiment_id is None:
            experiment_id = self._client.get_run(parent_run_id).info.experiment_id
        run = self._client.create_run(
            experiment_id,
            run_name=run_name,
            tags={"mlflow.parentRunId": parent_run_id},
        )
        self.run_id = run.info.run_id
        self._mlflow = mlflow

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, v[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(step or 0))
            for k, v in metrics.items()
            if v is not None and v == v  # skip NaN
        ]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_artifact(self, path: Path) -> None:
        if Path(path).exists():
            self._client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, status: str = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status=status)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def check_tracking_uri(uri: str | None = None, timeout_s: float = 10.0) -> None:
    """Fail fast (before any job) when the tracking server cannot be reached."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).read()
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(
                f"MLFLOW_TRACKING_URI={uri} cannot be reached ({err}); start the server "
                "(`l2o mlflow-server`) or unset MLFLOW_TRACKING_URI to use ./mlflow.db"
            ) from err


def start_parent_run(experiment: str, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Create (and migrate) the tracking store once, start the parent run, export its id.

    Called in the main Snakemake process before any job starts.
    """
    check_tracking_uri()
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp:
        exp_id = exp.experiment_id
    elif tracking_uri().startswith(("http://", "https://")):
        exp_id = client.create_experiment(experiment)  # the server decides where artifacts go
    else:  # local store: pin artifacts beside the DB, as an absolute path
        exp_id = client.create_experiment(experiment, artifact_location=Path("mlartifacts").resolve().as_uri())
    run = client.create_run(exp_id, run_name=run_name, tags=tags or {})
    os.environ[PARENT_ENV] = run.info.run_id
    os.environ["MLFLOW_EXPERIMENT_ID"] = exp_id
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    return run.info.run_id


def end_parent_run(status: str) -> None:
    run_id = os.environ.get(PARENT_ENV)
    if not run_id:
        return
    from mlflow.tracking import MlflowClient

    MlflowClient().set_terminated(run_id, status=status)


def job_tracker(run_name: str) -> NullTracker | MlflowTracker:
    """The tracker for one job: a child run if a parent run is set, else a no-op."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return NullTracker()
    return MlflowTracker(run_name, parent, os.environ.get("MLFLOW_EXPERIMENT_ID"))
