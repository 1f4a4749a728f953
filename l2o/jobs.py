"""Glue between a Snakemake ``script:`` job and the l2o stage functions.

``with snakemake_job(snakemake) as job:`` sends logging and progress bars to
the rule's ``log:`` file, sets torch's threads from ``threads:``, and opens
the job's MLflow child run (params = the rule's params and, under
``config.``, the job's task section; tags = rule, task, wildcards, config
hash and the upstream jobs' run ids). The task section is read from the
config for logging only: it is not a rule param, so editing one stage's
settings re-runs only that stage. The run id is written
to ``mlflow_run_id.txt`` beside the job's first output (not a declared
output: it never affects what Snakemake re-runs); downstream jobs read it
from their inputs' folders.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from l2o.device import set_threads
from l2o.tracking import config_hash, job_tracker

RUN_ID_FILE = "mlflow_run_id.txt"


@dataclass
class Job:
    params: dict[str, Any]
    task: str | None
    seed: int
    threads: int
    tracker: Any
    log_path: Path | None


def upstream_run_ids(inputs: list[str]) -> dict[str, str]:
    """``{upstream.<stage folder>: run id}`` from the run-id files beside the job's input files;
    ``upstream.<task>.<stage folder>`` when the inputs come from several tasks (the report).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for t in ("a", "b"):
    ...     f = d / "results" / t / "seed0" / "stage1"
    ...     f.mkdir(parents=True)
    ...     _ = (f / RUN_ID_FILE).write_text(t + "-run")
    >>> upstream_run_ids([str(d / "results/a/seed0/stage1/model.pt")])
    {'upstream.stage1': 'a-run'}
    >>> sorted(upstream_run_ids([str(d / f"results/{t}/seed0/stage1/model.pt") for t in ("a", "b")]))
    ['upstream.a.stage1', 'upstream.b.stage1']
    """
    found = []
    for f in inputs:
        run_file = Path(f).parent / RUN_ID_FILE
        if run_file.is_file():
            parts = Path(f).parts
            at = len(parts) - 1 - parts[::-1].index("results") if "results" in parts else -1
            task = parts[at + 1] if 0 <= at < len(parts) - 2 else ""
            found.append((task, Path(f).parent.name, run_file.read_text().strip()))
    several = len({task for task, _, _ in found}) > 1
    return {f"upstream.{task}.{folder}" if several and task else f"upstream.{folder}": run_id
            for task, folder, run_id in found}


@contextlib.contextmanager
def snakemake_job(snakemake) -> Iterator[Job]:
    log_path = Path(snakemake.log[0]) if len(snakemake.log) else None
    stream = open(log_path, "w", buffering=1) if log_path else sys.stderr
    old_stderr = sys.stderr
    sys.stderr = stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    set_threads(snakemake.threads)
    params = {k: v for k, v in snakemake.params.items()}
    wildcards = dict(snakemake.wildcards.items())
    name = snakemake.rule + "".join(f"/{k}={v}" for k, v in wildcards.items())
    tracker = job_tracker(name)
    status = "FAILED"
    task = wildcards.get("task")
    try:
        tracker.set_tags(
            {"rule": snakemake.rule, "config_hash": config_hash(params),
             **({"task": task} if task else {}),
             **{f"wildcard.{k}": v for k, v in wildcards.items()},
             **upstream_run_ids([str(f) for f in snakemake.input])}
        )
        tracker.log_params(params)
        if task and isinstance(snakemake.config.get(task), dict):
            tracker.log_params({"config": {k: v for k, v in snakemake.config[task].items() if k != "ablations"}})
        yield Job(params, task, int(wildcards.get("seed", 0)), snakemake.threads, tracker, log_path)
        status = "FINISHED"
        if tracker.run_id:
            (Path(snakemake.output[0]).parent / RUN_ID_FILE).write_text(tracker.run_id + "\n")
    except BaseException:
        traceback.print_exc(file=stream)
        raise
    finally:
        stream.flush()
        if log_path is not None:
            tracker.log_artifact(log_path)
        tracker.finish(status)
        root.removeHandler(handler)
        sys.stderr = old_stderr
        if stream is not old_stderr:
            stream.close()


def log_evaluation(tracker, table, curves_path: Path) -> None:
    """Final test metrics (mixed) and the per-step test metric (``step = t``) of an evaluation job."""
    import json

    mixed = table[table.condition == "mixed"]
    tracker.log_metrics({f"test.{m}.{k}": v for m, k, v in zip(mixed.method, mixed.metric, mixed.value)})
    curves = json.loads(Path(curves_path).read_text())
    key = f"{curves.get('metric', 'nmse_db')}_per_step"
    for method, info in curves.items():
        if isinstance(info, dict):
            for t, value in enumerate(info.get(key, []), start=1):
                tracker.log_metrics({f"{key}.{method}": value}, step=t)
    tracker.log_artifact(curves_path)
