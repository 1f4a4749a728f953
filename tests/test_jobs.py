"""A Snakemake job's run ends with what happened, and a failure's first line says why (l2o/jobs.py)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from l2o.failures import OutputWriteError, Terminated
from l2o.jobs import snakemake_job
from l2o.orphans import JOB, PID, REPLACED_BY, REPLACES, RUN_ID_FILE

NAME = "stage1/task=sparse_recovery/seed=0"


@pytest.fixture
def parent(mlflow_store, monkeypatch, tmp_path):
    """A parent run in the environment, as the workflow's onstart leaves it; cwd is a temp dir."""
    monkeypatch.chdir(tmp_path)
    run = mlflow_store.client().create_run(mlflow_store.experiment_id)
    monkeypatch.setenv("L2O_MLFLOW_PARENT_RUN_ID", run.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", mlflow_store.experiment_id)
    return mlflow_store


def fake_snakemake(tmp_path: Path, log: str = "logs/stage1.log") -> SimpleNamespace:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return SimpleNamespace(
        rule="stage1", wildcards={"task": "sparse_recovery", "seed": "0"}, threads=1,
        params={"stage1": {"lr": 0.001}}, input=[], output=[str(tmp_path / "results/stage1/model.pt")],
        log=[str(tmp_path / log)], config={"tracking": {"retry_seconds": 5}}, resources=SimpleNamespace(runtime=30),
    )


def job_runs(store) -> list:
    return store.client().search_runs([store.experiment_id], filter_string=f"tags.`{JOB}` = '{NAME}'")


def test_a_job_that_finishes(parent, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4711")  # its runtime (30 min) is then its deadline
    sm = fake_snakemake(tmp_path)
    with snakemake_job(sm) as job:
        job.tracker.log_metrics({"val_nmse_db": -12.5}, step=10)
    (run,) = job_runs(parent)
    assert run.info.status == "FINISHED" and run.data.metrics["val_nmse_db"] == -12.5
    assert run.data.tags[PID] == str(os.getpid())
    assert float(run.data.tags["l2o.deadline"]) - run.info.start_time / 1000 == pytest.approx(1800, abs=60)
    assert (tmp_path / "results/stage1" / RUN_ID_FILE).read_text().strip() == run.info.run_id


def test_without_slurm_the_deadline_is_orphan_after_hours(tmp_path, monkeypatch):
    from l2o.jobs import job_lifetime_s

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    sm = fake_snakemake(tmp_path)  # runtime 30 min, which nothing enforces outside SLURM
    assert job_lifetime_s(sm, {"orphan_after_hours": 5}) == 5 * 3600
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    assert job_lifetime_s(sm, {"orphan_after_hours": 5}) == 30 * 60


def test_a_full_disk_is_one_line_first_and_the_traceback_in_the_log(parent, tmp_path, capsys):
    sm = fake_snakemake(tmp_path)
    with pytest.raises(SystemExit) as info:
        with snakemake_job(sm):
            raise OutputWriteError(errno.ENOSPC, "No space left on device", "results/stage1/model.pt")
    assert info.value.code == 1
    line = f"l2o {NAME}: cannot write results/stage1/model.pt: No space left on device (errno 28): the disk is full"
    console = capsys.readouterr().err
    assert console.startswith(line) and "Traceback" not in console and len(console.splitlines()) == 1
    log = (tmp_path / "logs/stage1.log").read_text()
    assert log.startswith(line) and "Traceback" in log
    (run,) = job_runs(parent)
    assert run.info.status == "FAILED" and run.data.tags["l2o.reason"].startswith("cannot write results/stage1/model.pt")
    assert not (tmp_path / "results/stage1" / RUN_ID_FILE).exists()


def test_a_bug_keeps_its_traceback(parent, tmp_path, capsys):
    with pytest.raises(ValueError, match="shape"):
        with snakemake_job(fake_snakemake(tmp_path)):
            raise ValueError("bad shape (3, 4)")
    assert capsys.readouterr().err.startswith(f"l2o {NAME}: ValueError: bad shape (3, 4)")
    (run,) = job_runs(parent)
    assert (run.info.status, run.data.tags["l2o.reason"]) == ("FAILED", "ValueError: bad shape (3, 4)")


def test_sigterm_ends_the_run_killed(parent, tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        with snakemake_job(fake_snakemake(tmp_path)):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # training; the handler raises between two bytecodes
                pass
    assert info.value.code == 128 + signal.SIGTERM
    (run,) = job_runs(parent)
    assert (run.info.status, run.data.tags["l2o.reason"]) == ("KILLED", "killed by SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_rerun_is_linked_to_the_attempt_it_replaces(parent, tmp_path):
    with pytest.raises(SystemExit, match="130"):
        with snakemake_job(fake_snakemake(tmp_path)):
            raise KeyboardInterrupt  # Ctrl-C
    with snakemake_job(fake_snakemake(tmp_path)):
        pass
    runs = {r.info.status: r for r in job_runs(parent)}
    assert sorted(runs) == ["FINISHED", "KILLED"]
    assert runs["KILLED"].data.tags[REPLACED_BY] == runs["FINISHED"].info.run_id
    assert runs["FINISHED"].data.tags[REPLACES] == runs["KILLED"].info.run_id


def test_a_log_that_cannot_be_opened_is_named(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/not-a-folder").write_text("")
    with pytest.raises(SystemExit):
        with snakemake_job(fake_snakemake(tmp_path, log="logs/not-a-folder/stage1.log")):
            pass
    assert capsys.readouterr().err.startswith(f"l2o {NAME}: cannot write {tmp_path}/logs/not-a-folder/stage1.log")


def test_every_workflow_script_runs_inside_snakemake_job():
    """So every rule of every task gets the statuses, reasons and links above."""
    scripts = sorted((Path(__file__).resolve().parents[1] / "workflow" / "scripts").glob("*.py"))
    assert len(scripts) >= 10
    assert [s.name for s in scripts if "with snakemake_job(snakemake) as job:" not in s.read_text()] == []


class FullDiskLog:
    """A log file on a full disk: every write fails."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        pass


def test_a_log_on_the_full_disk_still_gives_the_console_line(parent, tmp_path, capsys, monkeypatch):
    import logging
    import sys

    import l2o.jobs

    monkeypatch.setattr(l2o.jobs, "open", lambda *a, **k: FullDiskLog(), raising=False)
    stderr, handlers = sys.stderr, list(logging.getLogger().handlers)
    with pytest.raises(SystemExit):
        with snakemake_job(fake_snakemake(tmp_path)):
            raise OutputWriteError(errno.ENOSPC, "No space left on device", "results/stage1/model.pt")
    assert capsys.readouterr().err.startswith(f"l2o {NAME}: cannot write results/stage1/model.pt: No space left")
    assert sys.stderr is stderr and logging.getLogger().handlers == handlers
    (run,) = job_runs(parent)
    assert run.info.status == "FAILED"


def test_sigterm_inside_a_checkpoint_write_is_still_killed(parent, tmp_path):
    with pytest.raises(SystemExit) as info:
        with snakemake_job(fake_snakemake(tmp_path)):
            try:
                raise Terminated(signal.SIGTERM)  # arrives while torch writes through a Python file
            except Terminated:
                raise RuntimeError("unexpected pos 176640 vs 176552")  # what torch's writer raises then
    assert info.value.code == 128 + signal.SIGTERM
    (run,) = job_runs(parent)
    assert (run.info.status, run.data.tags["l2o.reason"]) == ("KILLED", "killed by SIGTERM")
