"""Many writers at once: concurrent Snakemake jobs log to one store, through
``l2o mlflow-server`` and through sqlite; no run, param or metric is lost or doubled
(bench/tracking_load.py counts the store's own tables). And a store locked for longer
than sqlite waits is retried, not a failed job.

Eight writers here (more than the cores, so they contend for the store; 2.5 min of the suite
went to 32); the 32- and 64-writer loads are a benchmark (``python -m bench.tracking_load``,
recorded in bench/results/tracking-load-*.json), or set ``L2O_TRACKING_LOAD_JOBS=32``."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from bench.tracking_load import run_load

pytestmark = pytest.mark.workflow

_JOBS = os.environ.get("L2O_TRACKING_LOAD_JOBS", "8")
if not _JOBS.isdigit() or int(_JOBS) < 1:
    raise ValueError(f"L2O_TRACKING_LOAD_JOBS must be a positive whole number of writers, got {_JOBS!r}")
JOBS = int(_JOBS)
LOAD = dict(jobs=JOBS, params=20, metric_keys=5, steps=10)


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_concurrent_jobs_lose_and_double_nothing(store, tmp_path):
    figures = run_load(store, folder=tmp_path / store, server_workers=4, **LOAD)
    assert figures["snakemake_rc"] == 0, figures.get("snakemake_tail")
    assert figures["failed_jobs"] == 0 and figures["problems"] == []
    assert figures["runs_written"] == figures["runs_expected"] == JOBS + 1  # and the parent run
    assert figures["params_written"] == figures["params_expected"] == JOBS * 20
    assert figures["metric_rows_written"] == figures["metric_rows_expected"] == JOBS * 50
    assert figures["statuses"] == {"FINISHED": JOBS + 1}


def test_a_store_locked_longer_than_sqlite_waits_is_retried(mlflow_store):
    """MLflow's sqlite sessions wait 20 s for a lock, then raise 'database is locked'."""
    from mlflow.entities import Metric

    from l2o.tracking import RetryingClient

    run_id = mlflow_store.client().create_run(mlflow_store.experiment_id).info.run_id
    db = mlflow_store.uri.removeprefix("sqlite:///")
    locked = threading.Event()

    def hold_the_lock(seconds: float) -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold_the_lock, args=(24.0,))
    holder.start()
    locked.wait(10)
    t0 = time.monotonic()
    RetryingClient(retry_s=120).log_batch(run_id, metrics=[Metric("m", 1.0, int(time.time() * 1000), 0)])
    waited = time.monotonic() - t0
    holder.join()
    assert waited > 20  # sqlite's own wait ran out at least once
    history = mlflow_store.client().get_metric_history(run_id, "m")
    assert [(m.value, m.step) for m in history] == [(1.0, 0)]
