"""End to end on a real SLURM: the tiny config through the slurm profile,
logging to an MLflow tracking server.

One copy of the workflow runs twice on the cluster.  The first invocation
has ``workflow/scripts/stage2.py`` made to fail (inside its MLflow child
run): it must stop with ``Error in rule stage2``, name and show the job's
logs, and keep what finished (data, classical, baseline, stage1, aevb).  The
script is then restored and the second invocation must run only stage2,
finetune, evaluate and report, and succeed.  Its ``results/summary.csv``
must equal that of a plain local run of the same config (started in the
background at the beginning, at the lowest CPU priority so that it does not
slow the cluster jobs), and the server must hold one parent run per
invocation (FAILED, then FINISHED) with their child runs.  Two quick tests check that the profile's
CHANGE_ME placeholders and an unreachable tracking server stop the run
before anything is submitted.

Run: ``pytest -m slurm tests/slurm -s`` (as root; see conftest.py).
Every snakemake call is wrapped in ``timeout -k 10``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import workflow_helpers as wh

from .cluster import job_ids, sacct_jobs, stop_process_group, wait_queue_empty

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]

RUN_TIMEOUT = 240  # one snakemake invocation on the cluster (measured: 90-170 s)
QUICK_TIMEOUT = 90  # an invocation that must fail at start
LOCAL_TIMEOUT = 600  # the local reference run (measured: ~120 s alone, 130-240 s beside the cluster runs)

TRAINING_RULES = ("baseline", "stage1", "stage2", "finetune", "aevb")
RULES = ("data", "classical", *TRAINING_RULES, "evaluate", "report")
FIRST_RULES = {"data", "classical", "baseline", "stage1", "aevb"}
RERUN_RULES = {"stage2", "finetune", "evaluate", "report"}
FIRST_OUTPUTS = (
    "results/data/problem.npz",
    "results/data/problem.json",
    "results/classical/metrics.csv",
    "results/classical/classical.json",
    "results/seed0/baseline/model.pt",
    "results/seed0/stage1/model.pt",
    "results/seed0/aevb/model.pt",
)

# The slurm plugin first checks job status this many seconds after starting (and
# after every check in which a job finished), then backs off by +10 s after each
# check in which none did: with 8, checks come 8, 26, 54 s after a submission;
# with 5, 5, 20, 45 s.  A failed job does not reset the back-off, and the exit
# waits out the current interval.  A job of this workflow takes 14-22 s in SLURM
# (two nested snakemake starts, then the script), so with 5 those over ~19 s
# wait for the 45 s check; with 8 they are seen at 26 s.
STATUS_CHECK_INIT = 8

INJECTED = "injected failure: l2o-slurm-test"
STAGE2_ANCHOR = "with snakemake_job(snakemake) as job:\n"

# summary.csv values (NMSE in dB, mean stop step) of the cluster run vs the
# local run.  Same code, data and seeds: the only difference is the thread
# count (1 per job on the cluster, 2 locally), which only reorders float32
# sums (~1e-7 relative per op); through 30 tiny training steps that stays far
# below 1e-4, while any real difference (another seed, data, or stage
# setting) moves these numbers by >1e-2.
SUMMARY_ATOL = 1e-4

PARENT_RE = re.compile(r"MLflow parent run ([0-9a-f]{32})")
SUBMIT_RE = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


# --------------------------------------------------------------------------
# helpers


# the DAG the cluster test is written for (the matched control would add one job per seed)
EXTRA_CONFIG = {"matched_lista": {"enabled": False}}


def _copy_workflow(dest: Path) -> Path:
    if (wh.REPO / "Snakefile").is_file():
        work = wh.copy_workflow(dest, extra=EXTRA_CONFIG)
    else:
        # tests/workflow_helpers.py takes REPO = parents[2] of itself, which is
        # the folder above the repository: point it at the repository for this copy.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(wh, "REPO", REPO)
            work = wh.copy_workflow(dest, extra=EXTRA_CONFIG)
    if (REPO / "profiles").is_dir() and not (work / "profiles").exists():
        shutil.copytree(REPO / "profiles", work / "profiles")
    return work


def _snakemake_bin() -> str:
    cand = Path(sys.executable).with_name("snakemake")
    return str(cand) if cand.exists() else "snakemake"


def _env(cluster, tracking_uri: str) -> dict[str, str]:
    env = cluster.env()
    # as if the venv were activated: the jobs' `python` is the venv's
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    for var in ("L2O_MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                "MLFLOW_EXPERIMENT_NAME"):
        env.pop(var, None)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _profile(work: Path) -> list[str]:
    """``--profile`` with the copy's slurm profile (top-level ``profiles/``, or
    its former place ``workflow/profiles/``)."""
    for rel in ("profiles/slurm", "workflow/profiles/slurm"):
        if any((work / rel / name).is_file() for name in ("profile.yaml", "config.yaml")):
            return ["--profile", str(work / rel)]
    raise AssertionError(f"no slurm profile in {work} (profiles/slurm/config.yaml)")


def _cluster_args(cluster, work: Path) -> list[str]:
    """The slurm profile plus what a user of this (GPU-less, 2-CPU) cluster overrides."""
    return [
        *_profile(work),
        "--default-resources", f"slurm_account={cluster.account}",
        f"slurm_partition={cluster.partition}", "runtime=5", "mem_mb=500", "cpus_per_task=1",
        # replaces the profile's whole set-resources (gpu=1, cpus_per_gpu, 16 GB, ...):
        # with gpu=0 the plugin adds no --gpus and asks --ntasks=1 --cpus-per-task=1
        "--set-resources", *[f"{rule}:gpu=0" for rule in TRAINING_RULES],
        # torch threads = the one CPU each job gets (the profile asks 4)
        "--set-threads", *[f"{rule}=1" for rule in RULES],
        "--slurm-init-seconds-before-status-checks", str(STATUS_CHECK_INIT),
        "--latency-wait", "5",
        "--jobs", "4",
    ]


@dataclass
class Run:
    name: str
    cmd: list[str]
    rc: int
    out: str
    wall: float
    log: Path

    def submitted(self) -> dict[str, tuple[str, Path]]:
        """{SLURM job id: (rule, SLURM log)} of the jobs this invocation submitted."""
        jobs = {}
        for jid, log in SUBMIT_RE.findall(self.out):
            rule = re.search(r"slurm_logs/rule_([A-Za-z0-9_]+)/", log)
            jobs[jid] = (rule.group(1) if rule else "?", Path(log))
        return jobs

    def submitted_rules(self) -> list[str]:
        return sorted(rule for rule, _ in self.submitted().values())

    def parent_run_id(self) -> str | None:
        m = PARENT_RE.search(self.out)
        return m.group(1) if m else None

    def tail(self, n: int = 8000) -> str:
        return f"$ {' '.join(self.cmd)}\nrc={self.rc} after {self.wall:.1f}s (log {self.log})\n{self.out[-n:]}"


def _run_snakemake(args: list[str], cwd: Path, env: dict, timeout: int, name: str) -> Run:
    """snakemake under `timeout -k 10`; output kept (with arrival times) in ../<name>.out."""
    cmd = ["timeout", "-k", "10", str(timeout), _snakemake_bin(), *args]
    log = cwd.parent / f"snakemake-{name}.out"
    t0 = time.monotonic()
    lines = []
    with open(log, "w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        for line in proc.stdout:
            lines.append(line)
            fh.write(f"[{time.monotonic() - t0:7.1f}s] {line}")
        rc = proc.wait(timeout=60)
        wall = time.monotonic() - t0
        fh.write(f"rc={rc} after {wall:.1f}s\n")
    return Run(name, cmd, rc, "".join(lines), wall, log)


def _job_table(text: str) -> set[str]:
    """Rules in the first ``job count`` table of snakemake's output (``all`` included)."""
    jobs: set[str] = set()
    table = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            if table:
                break
            table = True
            continue
        if not table:
            continue
        if parts and all(set(p) <= {"-"} for p in parts):
            continue
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] != "total":
                jobs.add(parts[0])
            continue
        if jobs:
            break
    return jobs


def _seconds(elapsed: str) -> float:
    days, _, hms = elapsed.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days) if days else 0) * 86400 + h * 3600 + m * 60 + s


def _benchmark_seconds(work: Path) -> dict[str, float]:
    """{rule: seconds} from the rules' benchmark files (the script's own run time)."""
    out = {}
    for tsv in (work / "benchmarks").rglob("*.tsv"):
        df = pd.read_csv(tsv, sep="\t")
        out[tsv.stem] = float(df["s"].iloc[-1])
    return out


# --------------------------------------------------------------------------
# fixtures


@dataclass
class LocalRun:
    work: Path
    proc: subprocess.Popen
    log: Path
    t0: float
    done: threading.Event = field(default_factory=threading.Event)
    wall: float | None = None

    def wait(self, timeout: float) -> int | None:
        self.done.wait(timeout)
        return self.proc.poll()

    def normal_priority(self) -> None:
        """Back to normal CPU priority (once the cluster runs are over), so that
        other load on the machine cannot starve it."""
        _set_priority(self.proc.pid, 0)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The same tiny config run locally (sqlite tracking), started in the
    background at once, at the lowest CPU priority while the cluster runs go
    on: it uses the CPU the cluster jobs leave idle (they mostly wait on SLURM
    status polls) without slowing them down much.  Normal priority after."""
    work = _copy_workflow(tmp_path_factory.mktemp("local") / "wf")
    log = work.parent / "snakemake-local.out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    for var in ("L2O_MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(var, None)
    cmd = ["timeout", "-k", "10", str(LOCAL_TIMEOUT), "nice", "-n", "19",
           *wh.SNAKEMAKE, "--cores", "2"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    run = LocalRun(work, proc, log, time.monotonic())
    _set_priority(proc.pid, 19)

    def watch():
        proc.wait()
        run.wall = time.monotonic() - run.t0
        run.done.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        yield run
    finally:
        if proc.poll() is None:
            stop_process_group(proc.pid)
        run.done.wait(15)


def _set_priority(session_leader: int, nice: int) -> None:
    """Set the nice value of a session started with ``start_new_session=True``.

    With autogroup scheduling (the Linux default), ``nice`` only ranks the
    processes of one session against each other, and a session competes as an
    equal with every other one (slurmd's jobs, the MLflow server) whatever its
    processes' nice values: set the session's autogroup too."""
    try:
        Path(f"/proc/{session_leader}/autogroup").write_text(str(nice))
    except OSError:
        pass  # no autogroup scheduling here: the process nice values decide
    try:
        os.setpriority(os.PRIO_PGRP, session_leader, nice)
    except OSError:
        pass  # the group is gone


@dataclass
class ClusterRuns:
    work: Path
    first: Run
    plan: Run
    second: Run
    first_outputs: dict[str, int]  # path: mtime_ns right after the first invocation
    stage2_model_after_first: bool
    stage2_log_after_first: str  # the rule's log (the second invocation rewrites it)
    jobs_before: set[str]
    server: object


@pytest.fixture(scope="module")
def cluster_runs(local_reference, mlflow_server, slurm_cluster, tmp_path_factory):
    """Failing first invocation, restore, dry run, second invocation (see module doc)."""
    left = wait_queue_empty(60)
    assert not left, f"jobs of an earlier test still queued:\n{left}"
    work = _copy_workflow(tmp_path_factory.mktemp("cluster") / "wf")
    script = work / "workflow" / "scripts" / "stage2.py"
    original = script.read_text()
    assert STAGE2_ANCHOR in original, "stage2.py changed: update STAGE2_ANCHOR"
    # fail inside snakemake_job, so that the job's MLflow child run ends FAILED
    script.write_text(original.replace(
        STAGE2_ANCHOR, STAGE2_ANCHOR + f"    raise RuntimeError({INJECTED!r})\n", 1))
    env = _env(slurm_cluster, mlflow_server.uri)
    args = _cluster_args(slurm_cluster, work)
    jobs_before = job_ids()

    first = _run_snakemake(args, work, env, RUN_TIMEOUT, "first")
    first_outputs = {p: (work / p).stat().st_mtime_ns for p in FIRST_OUTPUTS if (work / p).exists()}
    stage2_model = (work / "results/seed0/stage2/model.pt").exists()
    stage2_log = work / "logs/seed0/stage2.log"
    stage2_log = stage2_log.read_text(errors="replace") if stage2_log.exists() else ""

    script.write_text(original)
    plan = _run_snakemake([*args, "--dry-run", "--quiet", "rules"], work, env, QUICK_TIMEOUT, "plan")
    second = _run_snakemake(args, work, env, RUN_TIMEOUT, "second")
    local_reference.normal_priority()

    runs = ClusterRuns(work, first, plan, second, first_outputs, stage2_model, stage2_log,
                       jobs_before, mlflow_server)
    _print_overhead(runs)
    return runs


def _print_overhead(runs: ClusterRuns) -> None:
    bench = _benchmark_seconds(runs.work)
    total_wall = total_jobs = 0
    print()
    for run in (runs.first, runs.second):
        submitted = run.submitted()
        acct = sacct_jobs(submitted) if submitted else {}
        elapsed = [_seconds(row["Elapsed"]) for row in acct.values()]
        scripts = [bench[rule] for rule, _ in submitted.values() if rule in bench]
        n = len(submitted)
        total_wall += run.wall
        total_jobs += n
        if n:
            print(
                f"[slurm] {run.name} invocation: rc={run.rc}, wall {run.wall:.1f}s, {n} SLURM jobs "
                f"({', '.join(sorted(r for r, _ in submitted.values()))}): per-job overhead "
                f"(wall/jobs) {run.wall / n:.1f}s; mean SLURM elapsed per job "
                f"{sum(elapsed) / max(len(elapsed), 1):.1f}s; mean script time (benchmark) "
                f"{sum(scripts) / max(len(scripts), 1):.1f}s"
            )
    if total_jobs:
        print(f"[slurm] both invocations: wall {total_wall:.1f}s, {total_jobs} jobs, "
              f"per-job overhead {total_wall / total_jobs:.1f}s")


# --------------------------------------------------------------------------
# the end-to-end run


def test_failed_invocation_names_the_error_and_keeps_finished_outputs(cluster_runs):
    first, work = cluster_runs.first, cluster_runs.work
    assert first.rc not in (0, 124, 137), f"expected a failure, not success/timeout:\n{first.tail()}"
    assert "Error in rule stage2" in first.out, first.tail()
    # the rule's log is named and (show-failed-logs) shown; so is the SLURM log
    assert "logs/seed0/stage2.log" in first.out, first.tail()
    assert INJECTED in first.out, first.tail()
    rule_log = cluster_runs.stage2_log_after_first
    assert INJECTED in rule_log, rule_log[-3000:]
    slurm_logs = re.findall(r"\S*slurm_logs/rule_stage2/\S*\.log", first.out)
    assert slurm_logs, f"no SLURM log of stage2 named:\n{first.tail()}"
    slurm_log = Path(slurm_logs[0])
    slurm_log = slurm_log if slurm_log.is_absolute() else work / slurm_log
    assert slurm_log.is_file(), f"{slurm_log} named but missing"
    assert INJECTED in slurm_log.read_text(), slurm_log.read_text()[-3000:]
    # what ran, what is left
    assert first.submitted_rules() == sorted(FIRST_RULES | {"stage2"}), first.tail()
    missing = sorted(set(FIRST_OUTPUTS) - set(cluster_runs.first_outputs))
    assert not missing, f"outputs of finished jobs missing after the failure: {missing}"
    assert not cluster_runs.stage2_model_after_first


def test_rerun_runs_only_what_did_not_finish(cluster_runs):
    plan, second, work = cluster_runs.plan, cluster_runs.second, cluster_runs.work
    assert plan.rc == 0, plan.tail()
    assert _job_table(plan.out) == RERUN_RULES | {"all"}, plan.tail()
    assert second.rc == 0, f"second invocation failed:\n{second.tail()}"
    assert _job_table(second.out) == RERUN_RULES | {"all"}, second.tail()
    assert second.submitted_rules() == sorted(RERUN_RULES), second.tail()
    redone = [p for p, mtime in cluster_runs.first_outputs.items()
              if (work / p).stat().st_mtime_ns != mtime]
    assert not redone, f"finished outputs were rewritten by the second invocation: {redone}"
    for out in ("results/summary.csv", "results/report.md", "results/report.html",
                "results/seed0/finetune/model.pt"):
        assert (work / out).is_file(), out


def test_jobs_ran_on_slurm_with_the_overrides(cluster_runs, slurm_cluster):
    submitted = {**cluster_runs.first.submitted(), **cluster_runs.second.submitted()}
    assert len(submitted) == len(FIRST_RULES) + 1 + len(RERUN_RULES)
    assert not set(submitted) & cluster_runs.jobs_before
    acct = sacct_jobs(submitted)
    print("\n[slurm] sacct:\n" + "\n".join(
        f"  {jid:>4} {submitted[jid][0]:<9} {row['State']:<10} {row['Elapsed']} {row['ReqTRES']}"
        for jid, row in sorted(acct.items(), key=lambda kv: int(kv[0]))))
    assert set(acct) == set(submitted), acct
    failed_stage2 = next(j for j, (rule, _) in cluster_runs.first.submitted().items()
                         if rule == "stage2")
    for jid, row in acct.items():
        rule = submitted[jid][0]
        assert (row["Account"], row["Partition"]) == (slurm_cluster.account,
                                                      slurm_cluster.partition), row
        assert row["State"] == ("FAILED" if jid == failed_stage2 else "COMPLETED"), (rule, row)
        tres = dict(kv.split("=", 1) for kv in row["ReqTRES"].split(",") if "=" in kv)
        assert tres.get("cpu") == "1" and tres.get("mem") == "500M", (rule, row)
        assert not any("gpu" in k for k in tres), (rule, row)


def test_results_equal_the_local_run(cluster_runs, local_reference):
    local_reference.normal_priority()
    rc = local_reference.wait(LOCAL_TIMEOUT + 30)
    local_out = local_reference.log.read_text(errors="replace")
    assert rc == 0, f"local reference run failed (rc={rc}):\n{local_out[-6000:]}"
    assert cluster_runs.second.rc == 0, cluster_runs.second.tail()
    print(f"\n[local] reference run: {local_reference.wall:.1f}s (nice 19 while the cluster ran)")
    key = ["task", "method", "condition", "metric"]
    local = pd.read_csv(local_reference.work / "results/summary.csv")
    cluster = pd.read_csv(cluster_runs.work / "results/summary.csv")
    assert list(local.columns) == list(cluster.columns)
    assert not local.duplicated(key).any() and not cluster.duplicated(key).any()
    both = local.merge(cluster, on=key, how="outer", suffixes=("_local", "_cluster"),
                       indicator=True)
    only = both[both._merge != "both"]
    assert only.empty, f"rows in one summary only:\n{only[key + ['_merge']]}"
    assert len(both) == len(local) == len(cluster) > 100
    diff = (both.value_local - both.value_cluster).abs()
    assert (both.value_local.isna() == both.value_cluster.isna()).all()
    assert (both.n_seeds_local == both.n_seeds_cluster).all()
    worst = both.loc[diff.idxmax()] if diff.notna().any() else None
    print(f"[results] {len(both)} summary rows; max |local - cluster| = {diff.max():.3g}"
          + (f" ({worst.method}/{worst.condition}/{worst.metric})" if worst is not None else ""))
    bad = both[diff > SUMMARY_ATOL]
    assert bad.empty, f"values differ by more than {SUMMARY_ATOL}:\n{bad[key + ['value_local', 'value_cluster']]}"


def test_mlflow_runs_on_the_server(cluster_runs):
    from mlflow.tracking import MlflowClient

    first, second = cluster_runs.first, cluster_runs.second
    assert second.rc == 0, second.tail()
    client = MlflowClient(tracking_uri=cluster_runs.server.uri)
    exp = client.get_experiment_by_name("l2o")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    by_status = sorted((r.info.status, r.info.run_id) for r in parents)
    assert [s for s, _ in by_status] == ["FAILED", "FINISHED"], by_status
    failed_parent = next(r for r in parents if r.info.status == "FAILED")
    ok_parent = next(r for r in parents if r.info.status == "FINISHED")
    assert failed_parent.info.run_id == first.parent_run_id(), first.tail()
    assert ok_parent.info.run_id == second.parent_run_id(), second.tail()
    for parent in (failed_parent, ok_parent):
        assert parent.data.tags.get("workdir") == str(cluster_runs.work)
    assert failed_parent.data.tags["config_hash"] == ok_parent.data.tags["config_hash"]

    def children(parent):
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        rules = [r.data.tags.get("rule") for r in kids]
        assert len(rules) == len(set(rules)), rules
        return {r.data.tags["rule"]: r for r in kids}

    first_kids, second_kids = children(failed_parent), children(ok_parent)
    assert {rule: r.info.status for rule, r in first_kids.items()} == {
        **{rule: "FINISHED" for rule in FIRST_RULES}, "stage2": "FAILED"}
    assert {rule: r.info.status for rule, r in second_kids.items()} == {
        rule: "FINISHED" for rule in RERUN_RULES}
    assert len(runs) == 2 + len(first_kids) + len(second_kids)

    for rule, run in second_kids.items():
        assert run.data.params, rule
        assert re.fullmatch(r"[0-9a-f]{12}", run.data.tags.get("config_hash", "")), rule
        assert any(k.startswith("upstream.") for k in run.data.tags), rule
    for rule in ("stage2", "finetune", "evaluate"):  # report logs files, not metrics
        assert second_kids[rule].data.metrics, rule
    assert "val_nmse_db_expected" in second_kids["stage2"].data.metrics
    # the same job (same params) in both invocations hashes alike
    assert (first_kids["stage2"].data.tags["config_hash"]
            == second_kids["stage2"].data.tags["config_hash"])

    def upstream(run):
        return {k.removeprefix("upstream."): v for k, v in run.data.tags.items()
                if k.startswith("upstream.")}

    def rid(kids, rule):
        return kids[rule].info.run_id

    # lineage across invocations: the resumed jobs point at the runs that made their inputs
    assert upstream(second_kids["stage2"]) == {"data": rid(first_kids, "data"),
                                               "stage1": rid(first_kids, "stage1")}
    assert upstream(second_kids["finetune"]) == {"data": rid(first_kids, "data"),
                                                 "stage2": rid(second_kids, "stage2")}
    assert upstream(second_kids["evaluate"]) == {
        "data": rid(first_kids, "data"), "baseline": rid(first_kids, "baseline"),
        "aevb": rid(first_kids, "aevb"), "stage2": rid(second_kids, "stage2"),
        "finetune": rid(second_kids, "finetune")}
    assert upstream(second_kids["report"]) == {
        "data": rid(first_kids, "data"), "classical": rid(first_kids, "classical"),
        "evaluation": rid(second_kids, "evaluate")}
    assert upstream(first_kids["stage2"]) == upstream(second_kids["stage2"])


# --------------------------------------------------------------------------
# failing at start


def test_profile_placeholders_fail_at_once(slurm_cluster, tmp_path):
    work = _copy_workflow(tmp_path / "wf")
    before = job_ids()
    env = _env(slurm_cluster, f"sqlite:///{work / 'mlflow.db'}")
    run = _run_snakemake(_profile(work), work, env, QUICK_TIMEOUT, "placeholders")
    print(f"\n[slurm] profile with CHANGE_ME: rc={run.rc} after {run.wall:.1f}s")
    assert run.rc not in (0, 124, 137), run.tail()
    assert "CHANGE_ME" in run.out and "slurm_account" in run.out, run.tail()
    assert "slurm_partition" in run.out, run.tail()
    assert run.wall < 45, run.tail()
    assert "has been submitted" not in run.out
    assert not (work / "results").exists() and not (work / "mlflow.db").exists()
    assert job_ids() == before


def test_unreachable_tracking_server_fails_before_any_job(slurm_cluster, tmp_path):
    work = _copy_workflow(tmp_path / "wf")
    before = job_ids()
    env = _env(slurm_cluster, "http://127.0.0.1:9")
    run = _run_snakemake(_cluster_args(slurm_cluster, work), work, env, QUICK_TIMEOUT,
                         "unreachable")
    print(f"\n[slurm] unreachable MLFLOW_TRACKING_URI: rc={run.rc} after {run.wall:.1f}s")
    assert run.rc not in (0, 124, 137), run.tail()
    assert "cannot be reached" in run.out and "http://127.0.0.1:9" in run.out, run.tail()
    assert run.wall < 45, run.tail()
    assert "has been submitted" not in run.out, run.tail()
    assert not (work / "results").exists()
    assert job_ids() == before, "a job was submitted"
    assert not wait_queue_empty(0)
