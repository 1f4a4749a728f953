"""A job on a full disk (a real tiny tmpfs): one line naming the file, nothing that looks complete,
and the same command succeeds once there is room. Needs root to mount; skipped otherwise (the
patched-write tests in tests/test_io.py and tests/test_jobs.py run everywhere); as root under
``CI=true`` a failed mount fails the test. Skip reasons are printed in pytest's summary (``-rs``)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from workflow_helpers import SNAKEMAKE, copy_workflow

pytestmark = pytest.mark.workflow

TARGET = "results/sparse_recovery/data/data.npz"  # about 100 kB: more than the disk has left


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 kB tmpfs at tmp_path/disk (Snakemake's own metadata takes most of it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = f"cannot mount a tmpfs here: {proc.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":  # CI runs as root: the guarantee must be tested there
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def snakemake_on(disk, src, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # the store has room
    return subprocess.run([*SNAKEMAKE, TARGET, "--cores", "1", "-s", str(src / "Snakefile"),
                           "--configfile", "config.yaml"], cwd=disk, env=env, capture_output=True, text=True, timeout=300)


def test_a_full_disk_is_one_line_and_leaves_nothing_complete(tiny_disk, tmp_path):
    src = copy_workflow(tmp_path / "src", extra={"tasks": ["sparse_recovery"]})
    shutil.copy(src / "config.yaml", tiny_disk / "config.yaml")

    proc = snakemake_on(tiny_disk, src, tmp_path)

    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = ("l2o data/task=sparse_recovery: cannot write results/sparse_recovery/data/data.npz: "
            "No space left on device (errno 28): the disk is full")
    assert line in out, out[-4000:]
    assert out.index(line) < out.index("Traceback")  # the reason comes first; the traceback is the log's
    assert not [p for p in tiny_disk.glob("results/**/*") if p.is_file()]  # no output, no temporary file

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    proc = snakemake_on(tiny_disk, src, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (tiny_disk / TARGET).stat().st_size > 0
