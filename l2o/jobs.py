"""Glue between a Snakemake ``script:`` job and the l2o stage functions.

``with snakemake_job(snakemake) as job:`` sends logging and progress bars to
the rule's ``log:`` file, sets torch's threads from ``threads:``, and opens
the job's MLflow child run (params = the rule's params and, under
``config.``, the job's task section; tags = rule, task, wildcards, config
hash, the upstream jobs' run ids, and who runs it: :mod:`l2o.orphans`). The
task section is read from the config for logging only: it is not a rule
param, so editing one stage's settings re-runs only that stage. The run id is
written to ``mlflow_run_id.txt`` beside the job's first output (not a
declared output: it never affects what Snakemake re-runs); downstream jobs
read it from their inputs' folders. A training job (an output named ``model``)
stores its checkpoint in its run (:mod:`l2o.artifacts`), so the run leads to
its model.

The run ends with what happened (:func:`l2o.failures.run_status`): FINISHED,
FAILED with the one-line reason as the ``l2o.reason`` tag, or KILLED on
SIGTERM/SIGINT. A failure's one-line reason is the first thing printed, on
the console and in the log; the traceback follows in the log. A file that
cannot be written (disk full, permission denied, read-only) or a tracking
store that cannot be reached needs no traceback on the console: the job then
exits with that line alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from l2o.artifacts import DEFAULT_MAX_MB, log_checkpoint
from l2o.device import set_threads
from l2o.failures import (Terminated, describe_write_error, ignoring_signals, killing_signal, one_line_reason,
                          run_status, signals_as_exceptions, tracking_store_error, write_error)
from l2o.io import write_text_atomic
from l2o.orphans import RUN_ID_FILE, link_attempts, process_tags
from l2o.tracking import DEFAULT_ORPHAN_AFTER_HOURS, DEFAULT_RETRY_S, NullTracker, config_hash, job_tracker

#: how long a killed job keeps retrying a busy store while it ends (SLURM sends SIGKILL ~30 s after SIGTERM)
KILLED_RETRY_S = 10.0



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


def job_lifetime_s(snakemake, tracking: dict) -> float:
    """The longest this job can live: its ``runtime`` resource (minutes) when SLURM runs it (SLURM
    enforces it), else ``tracking.orphan_after_hours``."""
    runtime = getattr(snakemake.resources, "runtime", None)
    try:
        if os.environ.get("SLURM_JOB_ID") and runtime is not None and float(runtime) > 0:
            return float(runtime) * 60.0
    except (TypeError, ValueError):
        pass
    return float(tracking.get("orphan_after_hours", DEFAULT_ORPHAN_AFTER_HOURS)) * 3600.0


def _exit_code(exc: BaseException) -> int:
    killed = killing_signal(exc)
    if killed is None:
        return 1
    return 128 + killed.signum if isinstance(killed, Terminated) else 130


def _say(line: str, *streams) -> None:
    """Print ``line`` to each stream; a stream that cannot be written (a full disk) is skipped."""
    for stream in dict.fromkeys(streams):  # each once, in order
        with contextlib.suppress(OSError, ValueError):
            print(line, file=stream)


def _best_effort(what: str, call: Callable, *streams) -> None:
    """A tracking call made while the job ends: its failure is reported, never raised
    (the job's own outcome is what matters)."""
    try:
        call()
    except Exception as err:  # noqa: BLE001 - report whatever the store raised
        reason = tracking_store_error(err) or f"{type(err).__name__}: {err}".splitlines()[0]
        _say(f"l2o: could not {what} in MLflow: {reason}", *streams)


@contextlib.contextmanager
def snakemake_job(snakemake) -> Iterator[Job]:
    console = sys.stderr
    log_path = Path(snakemake.log[0]) if len(snakemake.log) else None
    wildcards = dict(snakemake.wildcards.items())
    name = snakemake.rule + "".join(f"/{k}={v}" for k, v in wildcards.items())
    try:
        stream = open(log_path, "w", buffering=1) if log_path else console
    except OSError as err:
        print(f"l2o {name}: {describe_write_error(err, log_path)}", file=console)
        raise SystemExit(1) from None
    sys.stderr = stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    tracking = dict(snakemake.config.get("tracking") or {})
    retry_s = float(tracking.get("retry_seconds", DEFAULT_RETRY_S))
    params = {k: v for k, v in snakemake.params.items()}
    task = wildcards.get("task")
    tracker: Any = NullTracker()
    failure: BaseException | None = None
    reason: str | None = None
    try:
        with signals_as_exceptions():
            set_threads(snakemake.threads)
            output_dir = Path(snakemake.output[0]).parent
            tracker = job_tracker(name, retry_s=retry_s,
                                  tags=process_tags(job_lifetime_s(snakemake, tracking), name, output_dir))
            if tracker.run_id:
                link_attempts(tracker.client, tracker.experiment_id, name, tracker.run_id)
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
            model = getattr(snakemake.output, "model", None)  # a training job's checkpoint
            if tracker.run_id and model is not None:
                max_mb = float(tracking.get("checkpoint_max_mb", DEFAULT_MAX_MB))
                _best_effort("store the checkpoint", lambda: log_checkpoint(tracker, Path(model), max_mb),
                             console, stream)
            if tracker.run_id:
                write_text_atomic(tracker.run_id + "\n", output_dir / RUN_ID_FILE)
    except BaseException as exc:
        failure, reason = exc, one_line_reason(exc)
        line = f"l2o {name}: {reason}"
        killed = run_status(exc) == "KILLED"
        if stream is not console:  # the console first: the log may be on the full disk
            _say(line + (f" (traceback in {log_path})" if log_path and not killed else ""), console)
        _say(line, stream)
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exc(file=stream)
    finally:
        status = run_status(failure)
        with ignoring_signals():  # a second SIGTERM (SLURM, scancel) must not cut the clean-up short
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
            if status == "KILLED" and hasattr(tracker, "client"):
                tracker.client.retry_s = min(tracker.client.retry_s, KILLED_RETRY_S)  # SIGKILL follows soon
            _best_effort(f"mark the run {status}", lambda: tracker.finish(status, reason), console, stream)
            if log_path is not None and status != "KILLED":
                _best_effort("store the log", lambda: tracker.log_artifact(log_path), console, stream)
            root.removeHandler(handler)
            sys.stderr = console
            if stream is not console:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
    if failure is not None:
        if status == "KILLED" or write_error(failure) or tracking_store_error(failure):
            raise SystemExit(_exit_code(failure)) from None  # the one line says it all
        raise failure


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
