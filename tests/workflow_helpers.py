"""Fixtures that run the Snakemake workflow on the tiny config in a temp dir.

The workflow files (Snakefile, workflow/, the l2o sources declared as stage
inputs) are copied into the temp dir, so the rerun tests can edit sources
without touching the repository; the code that runs is the installed l2o.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, recursively for dicts.

    >>> merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4})
    {'a': {'b': 1, 'c': 3}, 'd': 4}
    """
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def copy_workflow(dest: Path, config: str = "configs/tiny.yaml", extra: dict | None = None) -> Path:
    """A runnable copy of the workflow in ``dest`` with ``config`` as its config.yaml
    (``extra`` merged into it, recursively)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "l2o", dest / "l2o", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "envs", dest / "envs")
    shutil.copytree(REPO / "profiles", dest / "profiles")
    shutil.copytree(REPO / "configs", dest / "configs")
    shutil.copy(REPO / config, dest / "config.yaml")
    if extra:
        import yaml

        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        (dest / "config.yaml").write_text(yaml.safe_dump(merge(cfg, extra), sort_keys=False))
    return dest


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 600, check=True):
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", **(env or {})}
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> set[str]:
    """Rules of the jobs a dry run would execute."""
    return set(planned_job_counts(workdir, *args))


def planned_job_counts(workdir: Path, *args: str) -> dict[str, int]:
    """``{rule: number of jobs}`` a dry run would execute (from its job stats table)."""
    proc = run_snakemake(workdir, "--dry-run", "--quiet", "rules", *args)
    jobs = {}
    table = False
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
            continue
        if table and len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "all"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def planned_task_jobs(workdir: Path, *args: str) -> dict[tuple[str, str], int]:
    """``{(rule, task): number of jobs}`` a dry run would execute (task ``-`` for rules without one)."""
    import re
    from collections import Counter

    proc = run_snakemake(workdir, "--dry-run", *args)
    jobs: Counter = Counter()
    rule = None
    task = "-"
    for line in (proc.stdout + proc.stderr).splitlines():
        start = re.match(r"^(?:local)?rule (\w+):", line)
        if start:
            if rule is not None:
                jobs[(rule, task)] += 1
            rule, task = start.group(1), "-"
            continue
        found = re.match(r"^\s+wildcards:.*\btask=([\w]+)", line)
        if found and rule is not None:
            task = found.group(1)
    if rule is not None:
        jobs[(rule, task)] += 1
    jobs.pop(("all", "-"), None)
    return dict(jobs)
