"""Fixture: the whole tiny DAG, run once per session in a temp dir."""

import pytest

from workflow_helpers import copy_workflow, run_snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole tiny DAG, run once; yields the work dir."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    run_snakemake(workdir)
    return workdir
