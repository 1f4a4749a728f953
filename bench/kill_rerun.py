"""What MLflow says after a job is killed mid-training and the same command is re-run.

The tiny workflow's sparse-recovery Stage I (1,000 iterations, a checkpoint every 40) is
started in a temp dir, its whole process group gets ``--signal`` after Stage I's second
checkpoint (Ctrl-C, ``kill -TERM -PGID`` and SLURM do the same), ``snakemake --unlock`` follows
a SIGKILL, and the same target is run again. Every run of the store is printed after the
kill and after the re-run (start order: job, status, reason, links)::

    python -m bench.kill_rerun --signal SIGTERM
    python -m bench.kill_rerun --signal SIGKILL

The procedure is ``tests/workflow/test_kill_and_rerun.py``'s, which asserts what this prints.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from bench.config import REPO


def _helpers():
    """The kill test's module and ``workflow_helpers``, importable from this checkout."""
    for folder in (REPO / "tests", REPO / "tests" / "workflow"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import test_kill_and_rerun
    import workflow_helpers

    return test_kill_and_rerun, workflow_helpers


def run_table(workdir: Path) -> str:
    """One line per run of the work dir's store, oldest first."""
    kill_test, _ = _helpers()
    lines = []
    for run in sorted(kill_test.runs_of(workdir), key=lambda r: r.info.start_time):
        tags = run.data.tags
        lines.append(f"| {run.info.run_name} | {run.info.run_id[:8]} | {run.info.status} | "
                     f"{tags.get('l2o.reason', '')} | {tags.get('l2o.replaced_by', '')[:8]} | "
                     f"{tags.get('l2o.replaces', '')[:8]} |")
    return "| run | id | status | l2o.reason | replaced_by | replaces |\n|---|---|---|---|---|---|\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--signal", choices=["SIGTERM", "SIGINT", "SIGKILL"], default="SIGTERM")
    args = p.parse_args(argv)
    kill_test, helpers = _helpers()
    signum = getattr(signal, args.signal)
    work = helpers.copy_workflow(Path(tempfile.mkdtemp(prefix="l2o-kill-")) / "wf", extra=kill_test.LONG_STAGE1)
    rc = kill_test.kill_mid_training(work, signum)
    print(f"after {args.signal} to the process group (snakemake exit code {rc}):\n\n{run_table(work)}\n")
    if signum == signal.SIGKILL:
        helpers.run_snakemake(work, "--unlock")
    helpers.run_snakemake(work, kill_test.TARGET)
    print(f"after the re-run of the same command:\n\n{run_table(work)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
