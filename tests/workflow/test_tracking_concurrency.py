"""Many writers at once: 32 concurrent Snakemake jobs log to one store, through
``l2o mlflow-server`` and through sqlite; no run, param or metric is lost or doubled
(bench/tracking_load.py counts the store's own tables). And a store locked for longer
than sqlite waits is retried, not a failed job."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from bench.tracking_load import run_load

pytestmark = pytest.mark.workflow

LOAD = dict(jobs=32, params=20, metric_keys=5, steps=10)


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_32_concurrent_jobs_lose_and_double_nothing(store, tmp_path):
    figures = run_load(store, folder=tmp_path / store, server_workers=4, **LOAD)
    assert figures["snakemake_rc"] == 0, figures.get("snakemake_tail")
    assert figures["failed_jobs"] == 0 and figures["problems"] == []
    assert figures["runs_written"] == figures["runs_expected"] == 33
    assert figures["params_written"] == figures["params_expected"] == 32 * 20
    assert figures["metric_rows_written"] == figures["metric_rows_expected"] == 32 * 50
    assert figures["statuses"] == {"FINISHED": 33}


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
