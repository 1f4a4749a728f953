"""Smoke test: Snakemake runs jobs on a real SLURM through the slurm executor.

Run: ``pytest -m slurm tests/slurm -s`` (as root; the cluster is installed
and started by the ``slurm_cluster`` fixture and stopped afterwards).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

SNAKEMAKE_TIMEOUT = 240

OK_SNAKEFILE = textwrap.dedent(
    r'''
    localrules: all

    rule all:
        input: "out/env.txt", "out/venv.txt"

    rule env:
        output: "out/env.txt"
        shell:
            "echo \"SLURM_JOB_ID=${{SLURM_JOB_ID:-}}\" > {output}; "
            "echo \"L2O_PARENT_RUN_ID=${{L2O_PARENT_RUN_ID:-}}\" >> {output}"

    rule venv:
        output: "out/venv.txt"
        shell:
            "python -c 'import sys, os, mlflow; "
            "print(\"PREFIX=\" + sys.prefix); "
            "print(\"MLFLOW=\" + mlflow.__version__); "
            "print(\"SLURM_JOB_ID=\" + os.environ.get(\"SLURM_JOB_ID\", \"\"))' > {output}"
    '''
)

FAIL_SNAKEFILE = textwrap.dedent(
    r'''
    rule fail:
        output: "out/never.txt"
        shell: "echo l2o-deliberate-$((40+2))-failure >&2; exit 1"
    '''
)


def _snakemake_bin() -> str:
    cand = Path(sys.executable).with_name("snakemake")
    return str(cand) if cand.exists() else (shutil.which("snakemake") or "snakemake")


def _run_snakemake(cluster, workdir: Path, jobs: int, extra_env=None):
    cmd = [
        "timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT),
        _snakemake_bin(),
        "--executor", "slurm",
        "--jobs", str(jobs),
        "--default-resources",
        f"slurm_partition={cluster.partition}",
        f"slurm_account={cluster.account}",
        "runtime=5",
        "mem_mb=200",
        "--slurm-init-seconds-before-status-checks", "5",
        "--latency-wait", "5",
    ]
    env = cluster.env()
    # as if the venv were activated: jobs' `python` is the venv's
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env["PATH"]
    env.update(extra_env or {})
    t0 = time.monotonic()
    res = subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True,
        timeout=SNAKEMAKE_TIMEOUT + 30,
    )
    wall = time.monotonic() - t0
    out = res.stdout + res.stderr
    (workdir / "snakemake.out").write_text(f"$ {' '.join(cmd)}\nrc={res.returncode}\n{out}")
    return res.returncode, out, wall


def _kv(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line
    )


def test_snakemake_runs_jobs_on_slurm(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(OK_SNAKEFILE)
    parent = f"l2o-test-{uuid.uuid4().hex[:12]}"
    rc, out, wall = _run_snakemake(
        slurm_cluster, tmp_path, jobs=2, extra_env={"L2O_PARENT_RUN_ID": parent}
    )
    assert rc == 0, f"snakemake failed (rc={rc}):\n{out[-6000:]}"
    n_jobs = 2
    print(
        f"\n[slurm] 2 jobs (parallel, --jobs 2): wall {wall:.1f}s, "
        f"per-job overhead {wall / n_jobs:.1f}s"
    )

    env_out = tmp_path / "out" / "env.txt"
    venv_out = tmp_path / "out" / "venv.txt"
    assert env_out.exists() and venv_out.exists(), out[-4000:]
    env_kv, venv_kv = _kv(env_out), _kv(venv_out)
    # ran inside SLURM jobs
    assert env_kv["SLURM_JOB_ID"].isdigit(), env_kv
    assert venv_kv["SLURM_JOB_ID"].isdigit(), venv_kv
    # --export=ALL: a custom variable reaches the job
    assert env_kv["L2O_PARENT_RUN_ID"] == parent, env_kv
    # the venv's python and packages are used in the job
    assert Path(venv_kv["PREFIX"]).resolve() == Path(sys.prefix).resolve(), venv_kv
    assert venv_kv["MLFLOW"], venv_kv

    # the jobs are in the accounting DB under our account
    ids = f"{env_kv['SLURM_JOB_ID']},{venv_kv['SLURM_JOB_ID']}"
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ids, "-o", "JobID,Account,Partition,State,Elapsed"],
        capture_output=True, text=True, env=slurm_cluster.env(), timeout=30,
    )
    print(f"[slurm] sacct:\n{acct.stdout}")
    rows = [r.split("|") for r in acct.stdout.split()]
    assert len(rows) == 2, acct.stdout + acct.stderr
    for _jid, account, partition, state, _elapsed in rows:
        assert (account, partition, state) == (
            slurm_cluster.account, slurm_cluster.partition, "COMPLETED"
        ), rows


def test_failing_job_fails_snakemake_with_log(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(FAIL_SNAKEFILE)
    rc, out, wall = _run_snakemake(slurm_cluster, tmp_path, jobs=1)
    print(f"\n[slurm] failing job: snakemake rc={rc} after {wall:.1f}s")
    assert rc not in (0, 124, 137), f"expected a failure, not success/timeout:\n{out[-6000:]}"
    assert "Error in rule fail" in out, out[-6000:]
    logs = re.findall(r"\S*slurm_logs\S*\.log", out)
    assert logs, f"no SLURM log mentioned in the output:\n{out[-6000:]}"
    log = Path(logs[0])
    log = log if log.is_absolute() else tmp_path / log
    assert log.exists(), f"{log} mentioned but missing"
    # the job's own stderr (computed in the job, not the echoed command text)
    assert "l2o-deliberate-42-failure" in log.read_text(), log.read_text()[-3000:]
    assert not (tmp_path / "out" / "never.txt").exists()
