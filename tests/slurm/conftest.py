"""Fixtures for tests that need a real (single-node, loopback) SLURM."""

from __future__ import annotations

import os
import time

import pytest

from .cluster import ClusterError, cluster_available, start_cluster


# the `slurm` marker is registered in pyproject.toml ([tool.pytest.ini_options])


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running SlurmCluster for the module; stopped (by PID) afterwards.

    Skips with the reason where the cluster cannot run, except in CI
    (CI=true), where that is a failure."""
    ok, reason = cluster_available()
    if not ok:
        if _in_ci():
            pytest.fail(f"SLURM cluster unavailable in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("slurm-cluster")
    t0 = time.monotonic()
    try:
        cluster = start_cluster(workdir)
    except ClusterError as e:
        pytest.fail(f"could not start the SLURM cluster:\n{e}", pytrace=False)
    print(
        f"\n[slurm] cluster start: {time.monotonic() - t0:.1f}s "
        f"(install {cluster.install_seconds}s; steps {cluster.timings}); "
        f"pids {cluster.pids}; logs in {workdir / 'logs'}"
    )
    try:
        yield cluster
    finally:
        t1 = time.monotonic()
        codes = cluster.stop()
        print(f"\n[slurm] cluster stop: {time.monotonic() - t1:.1f}s, exit codes {codes}")
