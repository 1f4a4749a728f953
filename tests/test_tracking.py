"""The tracking side channel (l2o/tracking.py): retries on a busy store, the invocation's parent run."""

from __future__ import annotations

import os
import signal

import pytest

from l2o import tracking
from l2o.orphans import PID, REASON, process_tags
from l2o.tracking import PARENT_ENV, RetryingClient, end_invocation, is_store_busy, start_invocation


class FlakyMethod:
    """Raises ``error`` the first ``fails`` calls, then returns "ok"."""

    def __init__(self, fails: int, error: Exception):
        self.fails, self.error, self.calls = fails, error, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.fails:
            raise self.error
        return "ok"


def client_with(method, retry_s=30.0) -> RetryingClient:
    client = RetryingClient.__new__(RetryingClient)
    client._client = type("Fake", (), {"log_batch": staticmethod(method)})()
    client.retry_s = retry_s
    return client


def test_a_locked_store_is_retried_until_it_answers(caplog):
    method = FlakyMethod(3, RuntimeError("(sqlite3.OperationalError) database is locked\n[SQL: INSERT ...]"))
    with caplog.at_level("WARNING", logger="l2o.tracking"):
        assert client_with(method).log_batch("run", metrics=[]) == "ok"
    assert method.calls == 4
    assert [m.split(" in ", 2)[:2] for m in caplog.messages] == [
        ["MLflow store busy (database is locked)", "log_batch; retry %d" % n] for n in (1, 2, 3)]


def test_other_errors_are_not_retried():
    method = FlakyMethod(1, ValueError("INVALID_PARAMETER_VALUE"))
    with pytest.raises(ValueError):
        client_with(method).log_batch("run")
    assert method.calls == 1


def test_retries_stop_after_retry_s():
    method = FlakyMethod(10**9, RuntimeError("database is locked"))
    with pytest.raises(RuntimeError, match="database is locked"):
        client_with(method, retry_s=0.3).log_batch("run")
    assert 1 < method.calls < 100


def test_is_store_busy():
    assert is_store_busy(RuntimeError("database table is locked"))
    assert is_store_busy(RuntimeError("API request failed: too many 503 error responses"))  # through the server
    assert not is_store_busy(RuntimeError("database or disk is full"))


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    tracking._WATCH.received = None


def test_an_invocation_marks_what_a_killed_one_left_running(mlflow_store, monkeypatch, tmp_path, restore_signals):
    monkeypatch.chdir(tmp_path)
    client = mlflow_store.client()
    name = client.get_experiment(mlflow_store.experiment_id).name
    old_parent = client.create_run(mlflow_store.experiment_id,
                                   tags={**process_tags(60.0, "snakemake"), PID: "999999999"})

    run_id = start_invocation(name, run_name="snakemake")

    assert os.environ[PARENT_ENV] == run_id
    old = client.get_run(old_parent.info.run_id)
    assert old.info.status == "KILLED" and old.data.tags["l2o.replaced_by"] == run_id
    assert client.get_run(run_id).data.tags["l2o.orphans_marked"] == old_parent.info.run_id
    assert client.get_run(run_id).data.tags["l2o.replaces"] == old_parent.info.run_id
    assert end_invocation(success=True) == "FINISHED"
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("signum, status, reason", [
    (None, "FAILED", "a job failed (see run.log)"),
    (signal.SIGTERM, "KILLED", "killed by SIGTERM"),
    (signal.SIGINT, "KILLED", "killed by SIGINT"),
])
def test_a_failed_invocation_says_whether_it_was_killed(mlflow_store, monkeypatch, tmp_path, restore_signals,
                                                        signum, status, reason):
    monkeypatch.chdir(tmp_path)
    name = mlflow_store.client().get_experiment(mlflow_store.experiment_id).name
    handed_on = []  # Snakemake's own handlers, which the watch must hand the signal on to
    signal.signal(signal.SIGTERM, lambda num, frame: handed_on.append(num))
    signal.signal(signal.SIGINT, lambda num, frame: handed_on.append(num))
    run_id = start_invocation(name, run_name="snakemake")
    if signum is not None:
        os.kill(os.getpid(), signum)
    assert handed_on == ([] if signum is None else [signum])
    assert end_invocation(success=False, log_file="run.log") == status
    run = mlflow_store.client().get_run(run_id)
    assert (run.info.status, run.data.tags[REASON]) == (status, reason)


def test_a_full_store_is_one_line(monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(tracking, "_start_invocation", full)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////full/mlflow.db")
    with pytest.raises(RuntimeError) as info:
        start_invocation("l2o", run_name="snakemake")
    assert str(info.value).startswith("cannot write the MLflow tracking store sqlite:////full/mlflow.db: database or disk")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_l2o_runs_lists_this_workdirs_runs_with_their_links(mlflow_store, monkeypatch, tmp_path, capsys):
    from l2o.cli import main

    monkeypatch.chdir(tmp_path)
    client = mlflow_store.client()
    name = client.get_experiment(mlflow_store.experiment_id).name
    job = "stage1/task=sparse_recovery/seed=0"
    old = client.create_run(mlflow_store.experiment_id, tags={**process_tags(60.0, job), REASON: "killed by SIGTERM"})
    new = client.create_run(mlflow_store.experiment_id, tags=process_tags(60.0, job))
    client.set_tag(old.info.run_id, "l2o.replaced_by", new.info.run_id)
    client.set_terminated(old.info.run_id, "KILLED")
    client.set_terminated(new.info.run_id, "FINISHED")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    client.create_run(mlflow_store.experiment_id, tags=process_tags(60.0, "elsewhere"))
    monkeypatch.chdir(tmp_path)

    assert main(["runs", "--experiment", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "elsewhere" not in "\n".join(lines)
    assert "KILLED" in lines[1] and "killed by SIGTERM" in lines[1] and new.info.run_id[:8] in lines[1]
    assert main(["runs", "--experiment", name, "--status", "FINISHED"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["runs", "--experiment", "no-such-experiment"]) == 2
    assert "no MLflow experiment 'no-such-experiment'" in capsys.readouterr().err


def test_ending_the_parent_run_never_fails_the_workflow(monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise RuntimeError("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/update failed: Max retries exceeded")

    monkeypatch.setenv(PARENT_ENV, "abc123")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(tracking.RetryingClient, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(tracking.RetryingClient, "__getattr__", lambda self, name: unreachable)
    assert end_invocation(success=True) is None
    assert capsys.readouterr().err.startswith("l2o: could not mark the MLflow parent run abc123 FINISHED: "
                                              "the MLflow tracking server http://127.0.0.1:9 stopped answering")


def test_a_run_that_finishes_after_being_taken_for_dead_loses_the_verdict(mlflow_store):
    from l2o.tracking import MlflowTracker

    parent = mlflow_store.client().create_run(mlflow_store.experiment_id).info.run_id
    tracker = MlflowTracker("stage1", parent, mlflow_store.experiment_id)
    client = mlflow_store.client()
    client.set_tag(tracker.run_id, REASON, "orphaned: process 1 on vm is gone")
    client.set_tag(tracker.run_id, "l2o.found_by", "someone")
    client.set_terminated(tracker.run_id, "KILLED")
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and REASON not in run.data.tags and "l2o.found_by" not in run.data.tags
