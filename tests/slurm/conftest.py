"""Fixtures for tests that need a real (single-node, loopback) SLURM."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from .cluster import (
    SLURM_CONF,
    ClusterError,
    cluster_available,
    free_port,
    record_machine,
    restore_machine,
    start_cluster,
    stop_process_group,
)

# the `slurm` marker is registered in pyproject.toml ([tool.pytest.ini_options])


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# Set to 1 to keep what the session installed (faster reruns while working on
# these tests; every `snakemake` start then waits ~10 s on `scontrol`).
KEEP_ENV = "L2O_SLURM_KEEP_PACKAGES"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running SlurmCluster, started once per session (shared by every
    module of tests/slurm) and stopped (by PID) at the end of the session.

    The machine is left as the session found it: after the daemons are
    stopped, the Debian packages the start had to install (and only those)
    are purged again, with the files the cluster wrote under /etc (see
    ``cluster.restore_machine``), unless ``L2O_SLURM_KEEP_PACKAGES=1``.  A
    machine where SLURM was installed before keeps it.

    Skips with the reason where the cluster cannot run, except in CI
    (CI=true), where that is a failure."""
    ok, reason = cluster_available()
    if not ok:
        if _in_ci():
            pytest.fail(f"SLURM cluster unavailable in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    machine = record_machine()
    workdir = tmp_path_factory.mktemp("slurm-cluster")
    t0 = time.monotonic()
    try:
        cluster = start_cluster(workdir, machine=machine)
    except ClusterError as e:
        problems = _restore(machine, tmp_path_factory)  # undo a half-done install
        pytest.fail(f"could not start the SLURM cluster:\n{e}"
                    + (f"\nrestoring the machine: {problems}" if problems else ""),
                    pytrace=False)
    print(
        f"\n[slurm] cluster start: {time.monotonic() - t0:.1f}s "
        f"(install {cluster.install_seconds}s, {len(machine.installed)} packages; "
        f"steps {cluster.timings}); pids {cluster.pids}; logs in {workdir / 'logs'}"
    )
    try:
        yield cluster
    finally:
        t1 = time.monotonic()
        try:
            codes = cluster.stop()
            print(f"\n[slurm] cluster stop: {time.monotonic() - t1:.1f}s, exit codes {codes}")
        finally:
            # restore_machine itself refuses while a daemon still runs
            problems = _restore(machine, tmp_path_factory)
        if problems:
            pytest.fail(f"the machine was not left as found: {problems}", pytrace=False)


def _restore(machine, tmp_path_factory) -> list[str]:
    """``restore_machine`` unless KEEP_ENV; prints what it did and, when it
    removed SLURM, how long a `snakemake` with nothing to do takes now."""
    if os.environ.get(KEEP_ENV, "") not in ("", "0"):
        print(f"[slurm] {KEEP_ENV} set: kept the {len(machine.installed)} packages "
              f"installed by this session ({' '.join(machine.installed) or 'none'})")
        return []
    restored = restore_machine(machine)
    print(f"[slurm] machine restored: {restored.summary()}")
    if restored.packages or restored.paths:
        print(f"[slurm] after restore: no-op snakemake {_noop_snakemake(tmp_path_factory):.1f}s; "
              f"scontrol {shutil.which('scontrol') or 'not installed'}; "
              f"{SLURM_CONF} {'exists' if SLURM_CONF.exists() else 'absent'}")
    return restored.problems


def _noop_snakemake(tmp_path_factory) -> float:
    """Seconds of a `snakemake -n` with nothing to do (mostly start-up:
    importing the executor plugins; the slurm one calls `scontrol`)."""
    work = tmp_path_factory.mktemp("noop-snakemake")
    (work / "done.txt").write_text("done\n")
    (work / "Snakefile").write_text('rule all:\n    input: "done.txt"\n')
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]
    t0 = time.monotonic()
    subprocess.run([*cmd, "--cores", "2", "-n"], cwd=work, capture_output=True,
                   timeout=120, check=False)
    return time.monotonic() - t0


# --------------------------------------------------------------------------
# MLflow tracking server (what a cluster run logs to)

MLFLOW_START_TIMEOUT = 120


@dataclass
class MlflowServer:
    uri: str
    port: int
    pid: int  # also the process group of the server and its workers
    workdir: Path
    log: Path
    start_seconds: float


def _l2o_command() -> list[str]:
    script = Path(sys.executable).with_name("l2o")
    if script.exists():
        return [str(script)]
    found = shutil.which("l2o")
    return [found] if found else [sys.executable, "-m", "l2o"]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``l2o mlflow-server`` on 127.0.0.1 (free port; sqlite backend and
    artifact destination in a tmp dir), up and answering ``/health``.

    It runs in its own session: ``mlflow server`` starts uvicorn (and, unless
    disabled, huey job consumers), so it is stopped by killing the whole
    process group, and the fixture fails if anything of it survives.  One
    uvicorn worker and no job execution: the defaults (4 workers, ~8 huey
    consumers) take ~40 s of the 2-core test machine to start."""
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    cmd = [
        *_l2o_command(), "mlflow-server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "artifacts"),
    ]
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_WORKERS="1", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(var, None)
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=fh,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop():
        left = stop_process_group(proc.pid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return left

    try:
        deadline = t0 + MLFLOW_START_TIMEOUT
        while not _healthy(uri):
            if proc.poll() is not None:
                raise RuntimeError(f"exited with rc={proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no /health after {MLFLOW_START_TIMEOUT}s")
            time.sleep(0.25)
    except RuntimeError as e:
        stop()
        pytest.fail(
            f"`{' '.join(cmd)}` did not come up: {e}\n"
            f"{log.read_text(errors='replace')[-4000:]}", pytrace=False,
        )
    server = MlflowServer(uri, port, proc.pid, workdir, log, time.monotonic() - t0)
    print(f"\n[mlflow] server {uri} up in {server.start_seconds:.1f}s (pgid {proc.pid})")
    try:
        yield server
    finally:
        left = stop()
        print(f"\n[mlflow] server stopped (rc={proc.returncode}); left alive: {left or 'none'}")
        assert not left, f"mlflow server processes survived SIGKILL: {left}"
