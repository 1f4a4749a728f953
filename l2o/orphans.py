"""Runs left ``RUNNING`` by a process that died without saying so, and the runs that replace them.

``kill -9``, a lost node or a power cut end a job without its ``finally`` block, so its
MLflow run would say ``RUNNING`` for ever. Every run of this workflow therefore carries
tags that say who is running it (:func:`process_tags`): the host, the machine (machine id,
boot id, pid namespace), the pid and the pid's start (a reused pid has another), the work
dir, the job and its output folder, and a deadline after which it cannot be alive (its
``runtime`` under SLURM, which enforces it, else ``tracking.orphan_after_hours``).

At the next invocation's start (:func:`mark_orphans`, called in ``onstart``) each
``RUNNING`` run of this work dir is checked: its process is gone (same machine and boot,
same pid namespace; an earlier boot of this machine counts as gone), or it is past its
deadline (another host or container, whose processes cannot be seen from here). Such a run is marked ``KILLED`` with the reason and
the invocation that found it, or ``FINISHED`` if its job had written its run-id file (it
died after its work was done). When a job starts it links the earlier attempts of the same
job in the same work dir (:func:`link_attempts`): ``l2o.replaced_by`` on each, and
``l2o.replaces`` on itself; a new invocation's parent run (job ``snakemake``) links the
earlier invocations that failed or were killed in the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST, MACHINE, PID, PID_STARTED = "l2o.host", "l2o.machine", "l2o.pid", "l2o.pid_started"
WORKDIR, JOB, OUTPUT_DIR, DEADLINE = "l2o.workdir", "l2o.job", "l2o.output_dir", "l2o.deadline"
REASON, FOUND_BY, REPLACED_BY, REPLACES = "l2o.reason", "l2o.found_by", "l2o.replaced_by", "l2o.replaces"
RUN_ID_FILE = "mlflow_run_id.txt"
#: how long past its deadline a run on another host is still given (clock skew, slow clean-up)
GRACE_S = 600.0


def process_started(pid: int) -> str | None:
    """When the process started, as a string that differs for a reused pid; None if there is no such
    process (or a zombie); ``"?"`` if it exists but cannot be inspected.

    Linux: its start in clock ticks since boot (``/proc/<pid>/stat``), which a clock change does not
    move; elsewhere psutil's start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return None if fields[0] == "Z" else f"ticks:{fields[19]}"
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except (OSError, IndexError, ValueError):
        return "?"
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else repr(proc.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "?"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine_identity() -> str:
    """``<machine id>/<boot id>/<pid namespace>``: two processes with equal pids are the same only
    on the same machine, in the same boot, in the same pid namespace (containers)."""
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = ""
    return "/".join((_read("/etc/machine-id"), _read("/proc/sys/kernel/random/boot_id"), pidns))


def process_tags(lifetime_s: float, job: str | None = None, output_dir: Path | None = None) -> dict[str, str]:
    """Tags that let a later invocation tell whether this process's run is still alive.

    :param lifetime_s: the longest this process can run (its deadline is now + lifetime_s).
    """
    pid = os.getpid()
    tags = {HOST: socket.gethostname(), MACHINE: machine_identity(), PID: str(pid),
            PID_STARTED: str(process_started(pid)), WORKDIR: str(Path.cwd().resolve()),
            DEADLINE: repr(time.time() + float(lifetime_s))}
    if job is not None:
        tags[JOB] = job
    if output_dir is not None:
        tags[OUTPUT_DIR] = str(Path(output_dir).resolve())
    return tags


def process_state(tags: dict[str, str], host: str | None = None) -> str:
    """``alive``, ``gone`` or ``unknown`` (no l2o tags, another host, or another container) for a
    run's tags. A process that exists but cannot be inspected counts as alive."""
    host = host or socket.gethostname()
    if tags.get(HOST) != host or PID not in tags:
        return "unknown"
    if MACHINE in tags and tags[MACHINE] != machine_identity():
        theirs, ours = tags[MACHINE].split("/"), machine_identity().split("/")
        if theirs[0] and theirs[0] == ours[0] and theirs[1] != ours[1]:
            return "gone"  # this machine, an earlier boot
        return "unknown"
    started = process_started(int(tags[PID]))
    if started is None:
        return "gone"
    if started == "?":
        return "alive"
    recorded = tags.get(PID_STARTED)
    if recorded and recorded != "?" and recorded != started:
        return "gone"  # the pid was reused by another process
    return "alive"


def _finished_its_work(tags: dict[str, str], run_id: str) -> bool:
    """The job wrote its run-id file (only done once its outputs are complete)."""
    out = tags.get(OUTPUT_DIR)
    if not out:
        return False
    try:
        return (Path(out) / RUN_ID_FILE).read_text().strip() == run_id
    except OSError:
        return False


def orphan_verdict(run_id: str, tags: dict[str, str], start_ms: int, now: float, max_age_s: float,
                   host: str | None = None) -> tuple[str, str] | None:
    """``(status, reason)`` for a RUNNING run nobody is running any more, None if it may be alive.

    ``start_ms`` is the run's start (MLflow's milliseconds); runs without a deadline tag get
    ``max_age_s`` from their start.
    """
    state = process_state(tags, host)
    who = f"process {tags.get(PID, '?')} on {tags.get(HOST, 'an unknown host')}"
    if state == "alive":
        return None
    if state == "gone":
        reason = f"orphaned: {who} is gone"
    else:
        try:
            deadline = float(tags[DEADLINE]) + GRACE_S
        except (KeyError, ValueError):
            deadline = start_ms / 1000.0 + max_age_s
        if now <= deadline:
            return None
        reason = f"orphaned: {who} cannot be seen from here and is past its deadline"
    if _finished_its_work(tags, run_id):
        return "FINISHED", reason + " after its outputs were complete"
    return "KILLED", reason


def _running_runs(client, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def mark_orphans(client, experiment_id: str, found_by: str, max_age_s: float,
                 workdir: Path | None = None) -> list[tuple[str, str, str]]:
    """Mark this work dir's orphaned RUNNING runs (see :func:`orphan_verdict`); skip ``found_by``.

    :return: ``[(run_id, status, reason)]`` of the runs marked.
    """
    workdir = str((workdir or Path.cwd()).resolve())
    now, marked = time.time(), []
    for run in _running_runs(client, experiment_id):
        tags = run.data.tags
        if run.info.run_id == found_by or tags.get(WORKDIR, tags.get("workdir")) != workdir:
            continue
        verdict = orphan_verdict(run.info.run_id, tags, run.info.start_time or 0, now, max_age_s)
        if verdict is None:
            continue
        status, reason = verdict
        for key, value in {REASON: reason, FOUND_BY: found_by}.items():
            client.set_tag(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status=status)
        marked.append((run.info.run_id, status, reason))
        log.warning("MLflow run %s (%s) was still RUNNING: %s; marked %s", run.info.run_id,
                    tags.get(JOB, tags.get("mlflow.runName", "?")), reason, status)
    return marked


def link_attempts(client, experiment_id: str, job: str, run_id: str, workdir: Path | None = None) -> list[str]:
    """Link the earlier FAILED/KILLED attempts of ``job`` in this work dir to ``run_id``.

    :return: the run ids now marked as replaced by ``run_id``.
    """
    workdir = str((workdir or Path.cwd()).resolve())
    # MLflow's filter strings do not unescape quotes: quote the job with a kind it does not contain
    # (job names come from wildcards, so there always is one); the job is compared here as well
    quote = next((q for q in ('"', "'") if q not in job), None)
    by_job = f" and tags.`{JOB}` = {quote}{job}{quote}" if quote else ""
    earlier = client.search_runs([experiment_id], filter_string=f"attributes.status != 'FINISHED'{by_job}",
                                 max_results=5000)
    replaced = [r.info.run_id for r in earlier
                if r.info.run_id != run_id and r.info.status in ("FAILED", "KILLED") and r.data.tags.get(JOB) == job
                and r.data.tags.get(WORKDIR) == workdir and REPLACED_BY not in r.data.tags]
    for old in replaced:
        client.set_tag(old, REPLACED_BY, run_id)
    if replaced:
        client.set_tag(run_id, REPLACES, ",".join(replaced))
    return replaced
