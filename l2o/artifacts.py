"""Checkpoints as MLflow artifacts: each training job stores its ``model.pt`` in its run, and a run id
leads back to the model (``l2o predict --run-id``, or ``mlflow ui`` -> the run -> Artifacts -> checkpoint).

A checkpoint goes under the run's artifact folder ``checkpoint/`` (``checkpoint/model.pt``: :data:`ARTIFACT`), with tags giving
its size in bytes and its SHA-256. The checkpoints of the shipped configs are small (tens of kB to a
few MB: docs/results.md, Run 9); one larger than ``tracking.checkpoint_max_mb`` is not copied into
the store: the run then records only where the file lies (tag ``l2o.checkpoint_path``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from l2o.checksums import sha256_file

log = logging.getLogger("l2o")

#: the checkpoint's path inside its run's artifacts
ARTIFACT_DIR = "checkpoint"
ARTIFACT = f"{ARTIFACT_DIR}/model.pt"
#: tags a training run carries
BYTES_TAG = "l2o.checkpoint_bytes"
SHA_TAG = "l2o.checkpoint_sha256"
PATH_TAG = "l2o.checkpoint_path"
STORED_TAG = "l2o.checkpoint_stored"
#: default ``tracking.checkpoint_max_mb``
DEFAULT_MAX_MB = 100.0


def log_checkpoint(tracker, path: Path, max_mb: float = DEFAULT_MAX_MB) -> dict[str, str]:
    """Store the checkpoint ``path`` in the tracker's run (under ``checkpoint/``) and tag its size.

    :param tracker: an :class:`l2o.tracking.MlflowTracker` (a ``NullTracker`` does nothing).
    :param max_mb: larger files are not copied into the store; their path is tagged instead.
    :return: the tags set (empty without a run).
    """
    if getattr(tracker, "run_id", None) is None:
        return {}
    path = Path(path)
    size = path.stat().st_size
    stored = size <= max_mb * 1e6
    where = f"{ARTIFACT_DIR}/{path.name}"  # checkpoint/model.pt from the workflow
    tags = {BYTES_TAG: str(size), SHA_TAG: sha256_file(path), PATH_TAG: str(path.resolve()),
            STORED_TAG: where if stored else f"no: {size / 1e6:.1f} MB > tracking.checkpoint_max_mb = {max_mb:g}"}
    if stored:
        tracker.log_artifact(path, ARTIFACT_DIR)
    tracker.set_tags(tags)
    log.info("checkpoint %s (%d bytes) %s", path, size, "stored in the run" if stored else "left out of the store")
    return tags


def checkpoint_from_run(run_id: str, dest: Path, tracking_uri: str | None = None) -> Path:
    """The checkpoint of the MLflow run ``run_id``, downloaded into ``dest`` (or, when the run did not
    store it, the file its ``l2o.checkpoint_path`` tag names, if it is still there and unchanged).

    Errors name the run and say what it is: an unknown run id, a run that is not a training job.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from l2o.tracking import tracking_uri as default_uri

    uri = tracking_uri or default_uri()
    try:
        run = MlflowClient(uri).get_run(run_id)
    except MlflowException as err:
        raise ValueError(f"no MLflow run {run_id!r} in {uri} (--run-id; MLFLOW_TRACKING_URI): "
                         f"{str(err).splitlines()[0]}") from None
    from l2o.orphans import JOB

    tags = run.data.tags
    job = tags.get(JOB, run.info.run_name)
    if BYTES_TAG not in tags:
        raise ValueError(f"MLflow run {run_id} ({job}) holds no checkpoint: only training jobs (baseline, stage1, "
                         "stage2, finetune, matched, aevb) store one")
    stored = tags.get(STORED_TAG, "")
    if stored.startswith(ARTIFACT_DIR + "/"):
        Path(dest).mkdir(parents=True, exist_ok=True)
        try:
            local = Path(download_artifacts(run_id=run_id, artifact_path=stored, dst_path=str(dest), tracking_uri=uri))
        except MlflowException as err:
            raise ValueError(f"MLflow run {run_id} ({job}): cannot download its checkpoint {stored}: "
                             f"{str(err).splitlines()[0]}") from None
    else:
        local = Path(tags[PATH_TAG])
        if not local.is_file():
            raise FileNotFoundError(f"MLflow run {run_id} ({job}) did not store its checkpoint "
                                    f"({stored}) and {local} is gone")
    if sha256_file(local) != tags.get(SHA_TAG):
        raise ValueError(f"the checkpoint of MLflow run {run_id} ({local}) differs from the one the run logged "
                         "(SHA-256 mismatch): it was overwritten by a later run; use that run's id")
    return local
