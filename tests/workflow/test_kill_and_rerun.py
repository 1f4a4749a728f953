"""A real job killed mid-training (SIGTERM, then SIGKILL) and the same command re-run:
MLflow tells what happened to each attempt and links them; the outputs equal an
uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from workflow_helpers import SNAKEMAKE, copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow

SR = "sparse_recovery"
TARGET = f"results/{SR}/seed0/stage1/model.pt"
JOB = f"stage1/task={SR}/seed=0"
# long enough to be killed between two checkpoints (one every 40 iterations)
LONG_STAGE1 = {"tasks": [SR], SR: {"stage1": {"iterations": 1000, "val_every": 40}}}


def start_snakemake(workdir: Path) -> subprocess.Popen:
    """``snakemake --cores 1 TARGET`` in its own process group, as a terminal would run it."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    log = open(workdir / "snakemake.out", "w")
    return subprocess.Popen([*SNAKEMAKE, "--cores", "1", TARGET], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_mid_training(workdir: Path, signum: int, timeout_s: float = 300) -> int:
    """Start the run, wait for Stage I's second checkpoint, send ``signum`` to the whole
    process group (Ctrl-C, ``kill -TERM -PGID`` and SLURM do that); return snakemake's exit code."""
    proc = start_snakemake(workdir)
    checkpoint = workdir / f"results/{SR}/seed0/stage1/.model.pt.work/last.pt"
    deadline = time.monotonic() + timeout_s
    seen = None
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before the kill:\n{(workdir / 'snakemake.out').read_text()[-3000:]}")
        if checkpoint.exists():
            stamp = checkpoint.stat().st_mtime_ns
            if seen is not None and stamp != seen:
                break  # a second checkpoint: training is under way
            seen = stamp
        assert time.monotonic() < deadline, "Stage I never checkpointed"
        time.sleep(0.05)
    os.killpg(proc.pid, signum)
    try:
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def runs_of(workdir: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("l2o")
    return client.search_runs([exp.experiment_id], max_results=1000)


def state_dict(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v for k, v in ckpt["model_state"].items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("uninterrupted"), extra=LONG_STAGE1)
    run_snakemake(work, TARGET)
    return work / TARGET


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_job_is_marked_killed_and_linked_to_its_rerun(tmp_path, uninterrupted, signum):
    work = copy_workflow(tmp_path / "wf", extra=LONG_STAGE1)
    rc = kill_mid_training(work, signum)
    assert rc != 0
    if signum == signal.SIGKILL:
        proc = run_snakemake(work, "--dry-run", TARGET, check=False)
        assert "LockException" in proc.stdout + proc.stderr or "locked" in (proc.stdout + proc.stderr)
        run_snakemake(work, "--unlock")
    else:  # the job's run was ended by the job itself
        killed = [r for r in runs_of(work) if r.data.tags.get("l2o.job") == JOB]
        assert [r.info.status for r in killed] == ["KILLED"]
        assert killed[0].data.tags["l2o.reason"] == "killed by SIGTERM"
    run_snakemake(work, TARGET)

    runs = runs_of(work)
    attempts = {r.info.status: r for r in runs if r.data.tags.get("l2o.job") == JOB}
    assert sorted(r.info.status for r in runs if r.data.tags.get("l2o.job") == JOB) == ["FINISHED", "KILLED"]
    killed, finished = attempts["KILLED"], attempts["FINISHED"]
    assert killed.data.tags["l2o.replaced_by"] == finished.info.run_id
    assert finished.data.tags["l2o.replaces"] == killed.info.run_id
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
    assert killed.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert parents[0].data.tags["l2o.replaced_by"] == parents[1].info.run_id
    assert parents[1].data.tags["l2o.replaces"] == parents[0].info.run_id
    if signum == signal.SIGKILL:  # nobody could say so at the time: the next invocation found them
        for orphan in (killed, parents[0]):
            assert orphan.data.tags["l2o.found_by"] == parents[1].info.run_id
            assert orphan.data.tags["l2o.reason"].startswith("orphaned: process ")
    else:
        assert parents[0].data.tags["l2o.reason"] == "killed by SIGTERM"
    assert not [r for r in runs if r.info.status == "RUNNING"]

    assert "resumed from" in (work / f"logs/{SR}/seed0/stage1.log").read_text()
    got, want = state_dict(work / TARGET), state_dict(uninterrupted)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
