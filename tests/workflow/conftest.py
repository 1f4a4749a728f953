"""Fixture: the whole tiny DAG, run once per session in a temp dir."""

import pytest

from workflow_helpers import copy_workflow, run_snakemake

# sparse recovery: one variant that re-trains Stage II only, one that re-trains Stages I and II
TINY_ABLATIONS = {"sparse_recovery": {"ablations": {"stage2_map": {"stage2": {"loss": "map"}},
                                                    "beta_2": {"stage1": {"beta": 2.0}}}}}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole tiny DAG, run once; yields the work dir."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"), extra=TINY_ABLATIONS)
    run_snakemake(workdir)
    return workdir
