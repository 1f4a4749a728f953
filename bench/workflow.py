"""Workflow overhead: the wall time of a ``snakemake`` invocation with nothing to do (tiny
config, temp dir), and what slows every snakemake start (executor plugins, ``scontrol``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.config import REPO, Options
from bench.load import LoadGuard
from bench.timing import summarise


def _workflow_helpers():
    """``tests/workflow_helpers``, importable, with its REPO pointing at this checkout."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import workflow_helpers

    if not (Path(workflow_helpers.REPO) / "Snakefile").is_file():
        workflow_helpers.REPO = REPO  # its parents[2] points above the checkout
    return workflow_helpers


def prepare_tiny_workflow(dest: Path) -> dict:
    """Copy the workflow with the tiny config to ``dest`` and run it to completion once."""
    helpers = _workflow_helpers()
    work = helpers.copy_workflow(dest)
    t0 = time.perf_counter()
    helpers.run_snakemake(work)
    return {"workdir": str(work), "first_run_s": time.perf_counter() - t0}


def measure_snakemake_noop(repeats: int, warmup: int = 1, prepare: Callable[[Path], dict] = prepare_tiny_workflow,
                           command: list[str] | None = None, guard: LoadGuard | None = None) -> dict:
    """Wall time of ``snakemake --cores 2`` when every output is up to date (tiny config, temp dir).

    The invocation is the one a user types (a fresh interpreter each time); each run's
    output must say that nothing is to be done. Only the timed runs are under ``guard``
    (the full first run is not timed).
    """
    command = command or [sys.executable, "-m", "snakemake", "--cores", "2"]
    with tempfile.TemporaryDirectory(prefix="l2o-bench-workflow-") as tmp:
        info = prepare(Path(tmp) / "wf")
        work = Path(info.get("workdir", tmp))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}

        def invoke() -> bool:
            proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"no-op snakemake failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            return "Nothing to be done" in proc.stdout + proc.stderr

        def timed() -> tuple[dict, bool]:
            nothing = [invoke() for _ in range(warmup)]
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                nothing.append(invoke())
                samples.append(time.perf_counter() - t0)
            return {**summarise(samples), "warmup": warmup}, all(nothing)

        timing, nothing = (guard or LoadGuard(Options(allow_loaded=True))).run("snakemake", timed)
    return {**{k: v for k, v in info.items() if k != "workdir"}, "command": " ".join(command[-3:]),
            "timing": timing, "nothing_to_be_done": nothing, "environment": snakemake_environment()}


def snakemake_environment() -> dict:
    """What slows every snakemake start: installed executor plugins (all are imported at start)
    and SLURM's ``scontrol`` (the SLURM plugin runs ``scontrol show config`` on import, which
    takes up to its 10 s timeout when no controller answers)."""
    import importlib.metadata
    import shutil

    plugins = sorted({d.metadata["Name"] for d in importlib.metadata.distributions()
                      if (d.metadata["Name"] or "").lower().startswith("snakemake-executor-plugin")})
    return {"executor_plugins": plugins, "scontrol": shutil.which("scontrol")}
