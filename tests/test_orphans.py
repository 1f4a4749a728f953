"""Runs left RUNNING by a dead process: found, marked and linked to their re-runs (l2o/orphans.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from l2o.orphans import (DEADLINE, FOUND_BY, HOST, JOB, MACHINE, OUTPUT_DIR, PID, PID_STARTED, REASON, REPLACED_BY,
                         REPLACES, RUN_ID_FILE, WORKDIR, link_attempts, machine_identity, mark_orphans, orphan_verdict,
                         process_state, process_tags)

NOW = time.time()


def dead_pid_tags() -> dict[str, str]:
    """This host's tags for a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return {**process_tags(3600.0), PID: str(proc.pid)}


def test_this_process_is_alive_and_an_exited_one_is_gone():
    assert process_state(process_tags(60.0)) == "alive"
    assert process_state(dead_pid_tags()) == "gone"


def test_a_reused_pid_is_gone():
    tags = {**process_tags(60.0), PID_STARTED: repr(time.time() - 10_000)}  # our pid, another start time
    assert process_state(tags) == "gone"


def test_another_host_is_unknown_until_its_deadline():
    tags = {**process_tags(60.0), HOST: "node-that-is-not-here"}
    assert process_state(tags) == "unknown"
    assert orphan_verdict("r1", tags, start_ms=0, now=NOW, max_age_s=1e9) is None
    status, reason = orphan_verdict("r1", tags, start_ms=0, now=float(tags[DEADLINE]) + 3600, max_age_s=1e9)
    assert status == "KILLED" and "past its deadline" in reason


def test_runs_without_l2o_tags_are_judged_by_age():
    start_ms = int((NOW - 7200) * 1000)
    assert orphan_verdict("r1", {}, start_ms, NOW, max_age_s=3 * 3600) is None
    assert orphan_verdict("r1", {}, start_ms, NOW, max_age_s=3600)[0] == "KILLED"


def test_a_dead_job_that_had_written_its_run_id_is_finished(tmp_path):
    tags = {**dead_pid_tags(), OUTPUT_DIR: str(tmp_path)}
    assert orphan_verdict("r1", tags, 0, NOW, 1e9)[0] == "KILLED"
    (tmp_path / RUN_ID_FILE).write_text("r1\n")
    status, reason = orphan_verdict("r1", tags, 0, NOW, 1e9)
    assert status == "FINISHED" and reason.endswith("after its outputs were complete")


def test_mark_orphans_marks_only_dead_runs_of_this_workdir(mlflow_store, tmp_path):
    client = mlflow_store.client()
    exp = mlflow_store.experiment_id
    dead = client.create_run(exp, tags=dead_pid_tags()).info.run_id  # a parent run (no parentRunId)
    alive = client.create_run(exp, tags=process_tags(3600.0)).info.run_id
    elsewhere = client.create_run(exp, tags={**dead_pid_tags(), WORKDIR: str(tmp_path)}).info.run_id
    finished = client.create_run(exp, tags=dead_pid_tags()).info.run_id
    client.set_terminated(finished, "FINISHED")
    new_parent = client.create_run(exp, tags=process_tags(3600.0)).info.run_id

    marked = mark_orphans(client, exp, found_by=new_parent, max_age_s=1e9)

    assert [(r, s) for r, s, _ in marked] == [(dead, "KILLED")]
    run = client.get_run(dead)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert run.data.tags[REASON].startswith("orphaned: process ") and run.data.tags[FOUND_BY] == new_parent
    assert {client.get_run(r).info.status for r in (alive, elsewhere, new_parent)} == {"RUNNING"}
    client.set_terminated(alive, "FINISHED")


def test_link_attempts_links_earlier_failed_and_killed_runs_of_the_same_job(mlflow_store):
    client = mlflow_store.client()
    exp = mlflow_store.experiment_id
    job = "stage1/task=sparse_recovery/seed=0"

    def run(status, job_name=job):
        run_id = client.create_run(exp, tags={**process_tags(60.0, job_name)}).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    killed, failed, done = run("KILLED"), run("FAILED"), run("FINISHED")
    other_job = run("KILLED", "stage1/task=sparse_recovery/seed=1")
    new = run("RUNNING")

    replaced = link_attempts(client, exp, job, new)

    assert sorted(replaced) == sorted([killed, failed])
    assert client.get_run(new).data.tags[REPLACES] in (f"{killed},{failed}", f"{failed},{killed}")
    for r in (killed, failed):
        assert client.get_run(r).data.tags[REPLACED_BY] == new
    for r in (done, other_job):
        assert REPLACED_BY not in client.get_run(r).data.tags
    newer = run("RUNNING")
    assert link_attempts(client, exp, job, newer) == []  # each attempt is replaced once
    assert client.get_run(killed).data.tags[JOB] == job


def test_process_tags_say_who_runs_it(tmp_path):
    tags = process_tags(120.0, "evaluate/task=denoising/seed=0", tmp_path)
    assert tags[PID] == str(os.getpid()) and tags[JOB] == "evaluate/task=denoising/seed=0"
    assert tags[OUTPUT_DIR] == str(tmp_path.resolve()) and tags[WORKDIR] == str(Path.cwd().resolve())
    assert abs(float(tags[DEADLINE]) - (time.time() + 120.0)) < 5


def test_another_container_is_unknown_and_an_earlier_boot_is_gone():
    machine_id, boot, pidns = machine_identity().split("/")
    alive = process_tags(60.0)  # this very process
    assert process_state({**alive, MACHINE: f"{machine_id}/{boot}/4026531999"}) == "unknown"  # another pid namespace
    assert process_state({**alive, MACHINE: f"other-machine/{boot}/{pidns}"}) == "unknown"
    if machine_id:
        assert process_state({**alive, MACHINE: f"{machine_id}/an-earlier-boot/{pidns}"}) == "gone"


def test_a_process_that_cannot_be_inspected_counts_as_alive(monkeypatch):
    import l2o.orphans as orphans

    monkeypatch.setattr(orphans, "process_started", lambda pid: "?")
    assert process_state(dead_pid_tags()) == "alive"
