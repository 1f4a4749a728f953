"""ISTA/FISTA baselines: tuned on validation per budget (divergence-guarded), evaluated on test,
and timed (seconds per test example at each tuned method's budget).

Its own module so that the ``classical`` rule (minutes at the paper's size)
depends on the classical code alone, not on the learned models' evaluation.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from l2o.algorithms.grid_search import (
    ALGORITHMS,
    ClassicalConfig,
    per_step_errors,
    search,
    tuning_summary,
)
from l2o.algorithms.ista import run_ista
from l2o.config import take_fields
from l2o.io import atomic_path, write_json_atomic
from l2o.metrics import by_condition, condition_rows, db_of, metric_rows, write_table
from l2o.tradeoff import timed_pass

TASK = "sparse_recovery"


def run_classical(*, data: Path, out_table: Path, out_json: Path, classical: dict, device=None,
                  out_showcase: Path | None = None) -> pd.DataFrame:
    """Tune ISTA/FISTA on validation per budget, evaluate chosen and paper settings on test.

    Each tuned method is also timed on the whole test split at its budget (rows
    ``seconds_per_example``); ``out_json`` records per method the coarse grid's best and the
    tuned setting with their validation NMSE (``tuning``).
    (``out_showcase``, arrays for the report, is written empty: this task shows none.)"""
    from l2o.tasks.registry import load_task

    cfg = take_fields(ClassicalConfig, classical, "config section 'classical'")
    task = load_task(TASK, data, device)
    A = task.A
    t0 = time.perf_counter()
    chosen, grid = search(A, task.split("val"), cfg)
    search_seconds = time.perf_counter() - t0
    rows, curves = [], {}
    settings = {name: ("tuned", *lr) for name, lr in chosen.items()}
    settings.update({f"{k}_paper": ("paper", *v) for k, v in cfg.paper_settings.items()})
    for name, (_, L, rho) in settings.items():
        algorithm, budget = name.split("_")[0], int(name.split("_")[1][1:])
        for split, mixed in task.eval_splits().items():
            batch = task.split(split)
            errs = per_step_errors(A, batch, algorithm, L, rho, budget).cpu().numpy()
            energy = batch["x"].pow(2).sum(-1).cpu().numpy()
            comps = {"se": errs[:, -1], "energy": energy}
            rows += condition_rows(TASK, name, by_condition(task.summarise, comps, task.conditions(batch), mixed))
            if mixed:
                rows += metric_rows(TASK, name, "diverged", {"mixed": int((~np.isfinite(errs[:, -1])).sum())})
                curves[name] = [db_of(errs[:, t].mean() / energy.mean()) for t in range(budget)]
    test = task.split("test")
    seconds = {}
    for name, (L, rho) in chosen.items():
        algorithm, budget = name.split("_")[0], int(name.split("_")[1][1:])
        seconds[name] = seconds_per_example(A, test["y"], L, rho, budget, ALGORITHMS[algorithm])
        rows += metric_rows(TASK, name, "seconds_per_example", {"mixed": seconds[name]})
    df = write_table(rows, out_table)
    write_json_atomic(
        {
            "chosen": {k: {"L": v[0], "rho": v[1]} for k, v in chosen.items()},
            "paper": {k: {"L": v[0], "rho": v[1]} for k, v in cfg.paper_settings.items()},
            "grid": grid,
            "curves_nmse_db": curves,
            "search_seconds": search_seconds,
            "tuning": tuning_summary(chosen, grid),
            "seconds_per_example": seconds,
            "config": asdict(cfg),
        },
        out_json,
    )
    if out_showcase is not None:
        with atomic_path(Path(out_showcase)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh)
    return df


def seconds_per_example(A, y, L: float, rho: float, num_steps: int, fast: bool) -> float:
    """Wall-clock seconds per example of ``num_steps`` ISTA/FISTA steps on all of ``y`` at once,
    after one warm-up call (:func:`l2o.tradeoff.timed_pass`)."""
    return timed_pass(lambda b: run_ista(A, b, L, rho, num_steps, fast=fast), [y]) / len(y)
