"""Many writers at once: ``jobs`` concurrent Snakemake jobs log to one MLflow store.

Each job is a real ``script:`` job run through :func:`l2o.jobs.snakemake_job` (the wrapper
every stage uses): it opens a child run under the invocation's parent run, logs the rule's
``params`` and ``steps`` x ``metric_keys`` metric values (one batch per step), and ends its
run. Afterwards the store's own tables are counted with sqlite3, so a lost or a duplicated
row shows up whatever MLflow's client would have reported::

    python -m bench.tracking_load --store sqlite --jobs 32
    python -m bench.tracking_load --store server --jobs 32 --server-workers 4

``--store server`` starts ``l2o mlflow-server`` on a free loopback port (its own sqlite file
behind it) and stops it afterwards. The figures are printed as JSON; ``--out`` also writes
them to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

EXPERIMENT = "l2o-load"

SNAKEFILE = """\
from l2o.tracking import end_invocation, start_invocation

JOBS = range(config["jobs"])
PARAMS = {{f"p{{k}}": k for k in range(config["params"])}}

onstart:
    start_invocation("{experiment}", run_name="load", tags={{"bench": "tracking_load"}})

onsuccess:
    end_invocation(success=True)

onerror:
    end_invocation(success=False, log_file=log)

rule all:
    input: expand("out/{{i}}.txt", i=JOBS)

rule job:
    output: "out/{{i}}.txt"
    params: **PARAMS
    log: "logs/{{i}}.log"
    threads: 1
    script: "job.py"
"""

JOB_SCRIPT = """\
from pathlib import Path

from l2o.jobs import snakemake_job

with snakemake_job(snakemake) as job:
    i = int(snakemake.wildcards.i)
    keys, steps = snakemake.config["metric_keys"], snakemake.config["steps"]
    for step in range(steps):
        job.tracker.log_metrics({{f"m{{k}}": i + k + step / steps for k in range(keys)}}, step=step)
    Path(snakemake.output[0]).write_text("done\\n")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path, workers: int, timeout_s: float = 120.0) -> Iterator[str]:
    """``l2o mlflow-server`` on a free loopback port, sqlite behind it; yields its URI."""
    port = free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "l2o", "mlflow-server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "server-artifacts"), "--workers", str(workers)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job consumers: starts faster
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def count_rows(db: Path, experiment: str = EXPERIMENT) -> dict:
    """Per-run row counts of one experiment, read from the store's sqlite file itself.

    :return: ``{"runs": {run_id: {"status", "parent", "params", "metrics", "distinct_metrics"}}}``
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        exp = con.execute("SELECT experiment_id FROM experiments WHERE name = ?", (experiment,)).fetchone()
        if exp is None:
            return {"runs": {}}
        runs = {}
        for run_id, status in con.execute("SELECT run_uuid, status FROM runs WHERE experiment_id = ?", exp):
            parent = con.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = 'mlflow.parentRunId'",
                                 (run_id,)).fetchone()
            params = con.execute("SELECT COUNT(*) FROM params WHERE run_uuid = ?", (run_id,)).fetchone()[0]
            metrics = con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0]
            distinct = con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT key, step FROM metrics WHERE run_uuid = ?)",
                                   (run_id,)).fetchone()[0]
            runs[run_id] = {"status": status, "parent": parent[0] if parent else None, "params": params,
                            "metrics": metrics, "distinct_metrics": distinct}
        return {"runs": runs}
    finally:
        con.close()


def check_counts(counts: dict, jobs: int, params: int, metric_keys: int, steps: int) -> dict:
    """Rows written against rows expected; ``problems`` lists every run that is off."""
    runs = counts["runs"]
    parents = [r for r, info in runs.items() if info["parent"] is None]
    children = {r: info for r, info in runs.items() if info["parent"] is not None}
    per_run = metric_keys * steps
    problems = []
    if len(parents) != 1:
        problems.append(f"{len(parents)} parent runs, expected 1")
    if len(children) != jobs:
        problems.append(f"{len(children)} child runs, expected {jobs}")
    for run_id, info in sorted(children.items()):
        if info["status"] != "FINISHED":
            problems.append(f"run {run_id}: status {info['status']}")
        if info["params"] != params:
            problems.append(f"run {run_id}: {info['params']} params, expected {params}")
        if info["metrics"] != per_run or info["distinct_metrics"] != per_run:
            problems.append(f"run {run_id}: {info['metrics']} metric rows ({info['distinct_metrics']} distinct), "
                            f"expected {per_run}")
    statuses: dict[str, int] = {}
    for info in runs.values():
        statuses[info["status"]] = statuses.get(info["status"], 0) + 1
    return {
        "runs_written": len(runs), "runs_expected": jobs + 1,
        "params_written": sum(i["params"] for i in children.values()), "params_expected": jobs * params,
        "metric_rows_written": sum(i["metrics"] for i in children.values()), "metric_rows_expected": jobs * per_run,
        "statuses": statuses, "problems": problems,
    }


def run_load(store: str, jobs: int = 32, params: int = 30, metric_keys: int = 5, steps: int = 20,
             server_workers: int = 4, folder: Path | None = None, timeout_s: int = 1200) -> dict:
    """Run the load once in ``folder`` (a temp dir by default); return the figures."""
    if store not in ("sqlite", "server"):
        raise ValueError(f"store must be 'sqlite' or 'server', not {store!r}")
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l2o-tracking-load-")))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Snakefile").write_text(SNAKEFILE.format(experiment=EXPERIMENT))
        (folder / "job.py").write_text(JOB_SCRIPT.format())
        if store == "server":
            uri = stack.enter_context(mlflow_server(folder, server_workers))
            db = folder / "server.db"
        else:
            db = folder / "mlflow.db"
            uri = f"sqlite:///{db}"
        config = [f"jobs={jobs}", f"params={params}", f"metric_keys={metric_keys}", f"steps={steps}"]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", str(jobs), "--config", *config],
            cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
            timeout=timeout_s,
        )
        wall_s = time.perf_counter() - t0
        out = proc.stdout + proc.stderr
        figures = {
            "store": store, "jobs": jobs, "server_workers": server_workers if store == "server" else None,
            "params_per_job": params, "metric_values_per_job": metric_keys * steps, "wall_s": round(wall_s, 1),
            "snakemake_rc": proc.returncode, "failed_jobs": out.count("Error in rule job"),
            "jobs_that_met_a_locked_store": sum("database is locked" in p.read_text(errors="replace")
                                         for p in (folder / "logs").glob("*.log")),
            **check_counts(count_rows(db), jobs, params, metric_keys, steps),
        }
        if proc.returncode != 0:
            figures["snakemake_tail"] = out[-3000:]
        return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=["sqlite", "server"], default="sqlite")
    p.add_argument("--jobs", type=int, default=32)
    p.add_argument("--params", type=int, default=30)
    p.add_argument("--metric-keys", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--server-workers", type=int, default=4)
    p.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    p.add_argument("--folder", type=Path, default=None, help="run (and keep) the load here; a temp dir by default")
    args = p.parse_args(argv)
    figures = run_load(args.store, args.jobs, args.params, args.metric_keys, args.steps, args.server_workers,
                       folder=args.folder)
    figures["command"] = "python -m bench.tracking_load " + " ".join(argv if argv is not None else sys.argv[1:])
    figures["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    figures["host"] = socket.gethostname()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if not figures["problems"] and figures["snakemake_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
