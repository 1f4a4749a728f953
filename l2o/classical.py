"""ISTA/FISTA baselines: tuned on validation per budget (divergence-guarded), evaluated on test.

Its own module so that the ``classical`` rule (minutes at the paper's size)
depends on the classical code alone, not on the learned models' evaluation.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from l2o.algorithms.grid_search import ClassicalConfig, per_step_errors, search
from l2o.io import write_json_atomic
from l2o.metrics import db_of, metric_rows, nmse_by_condition, write_table
from l2o.train.common import load_context
from l2o.train.loop import take_fields


def run_classical(*, data: Path, out_table: Path, out_json: Path, classical: dict, device=None) -> pd.DataFrame:
    """Tune ISTA/FISTA on validation per budget, evaluate chosen and paper settings on test."""
    cfg = take_fields(ClassicalConfig, classical, "config section 'classical'")
    ctx = load_context(data, device)
    A = ctx.task.A
    t0 = time.perf_counter()
    chosen, grid = search(A, ctx.split("val"), cfg)
    search_seconds = time.perf_counter() - t0
    sets = {"test": ctx.split("test")}
    if "extra_y" in ctx.arrays:
        sets["extra"] = ctx.split("extra")
    rows, curves = [], {}
    settings = {name: ("tuned", *lr) for name, lr in chosen.items()}
    settings.update({f"{k}_paper": ("paper", *v) for k, v in cfg.paper_settings.items()})
    for name, (_, L, rho) in settings.items():
        algorithm, budget = name.split("_")[0], int(name.split("_")[1][1:])
        for split, batch in sets.items():
            errs = per_step_errors(A, batch, algorithm, L, rho, budget).cpu().numpy()
            energy = batch["x"].pow(2).sum(-1).cpu().numpy()
            snr = batch["snr"].cpu().numpy()
            rows += metric_rows(name, "nmse_db", nmse_by_condition(errs[:, -1], energy, snr, mixed=split == "test"))
            if split == "test":
                rows += metric_rows(name, "diverged", {"mixed": int((~np.isfinite(errs[:, -1])).sum())})
                curves[name] = [db_of(errs[:, t].mean() / energy.mean()) for t in range(budget)]
    df = write_table(rows, out_table)
    write_json_atomic(
        {
            "chosen": {k: {"L": v[0], "rho": v[1]} for k, v in chosen.items()},
            "paper": {k: {"L": v[0], "rho": v[1]} for k, v in cfg.paper_settings.items()},
            "grid": grid,
            "curves_nmse_db": curves,
            "search_seconds": search_seconds,
            "config": asdict(cfg),
        },
        out_json,
    )
    return df
