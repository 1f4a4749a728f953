"""The tidy metrics table every evaluation writes: ``task, method, condition, metric, value`` [+ ``seed``].

NMSE is the paper's: dB of the ratio of means, over all test examples
(``mixed``) and per SNR block (``snr20`` ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from l2o.io import atomic_path

COLUMNS = ["task", "method", "condition", "metric", "value"]
TASK = "sparse_recovery"


def condition_name(snr: float) -> str:
    return f"snr{int(round(snr))}"


def nmse_by_condition(
    sq_err: np.ndarray, energy: np.ndarray, snr: np.ndarray, mixed: bool = True
) -> dict[str, float]:
    """NMSE (dB, ratio of means) over all examples (``mixed``) and per SNR block.

    >>> nmse_by_condition(np.array([1.0, 1.0]), np.array([10.0, 100.0]), np.array([20.0, 30.0]))
    {'mixed': -17.403626894942438, 'snr20': -10.0, 'snr30': -20.0}
    """
    out = {}
    if mixed:
        out["mixed"] = db_of(sq_err.mean() / energy.mean())
    for level in np.unique(snr):
        sel = snr == level
        out[condition_name(level)] = db_of(sq_err[sel].mean() / energy[sel].mean())
    return out


def db_of(ratio) -> float:
    """``10 log10(ratio)``; ``-inf`` for a ratio of 0."""
    return float(10.0 * np.log10(ratio)) if ratio > 0 else float("-inf")


def metric_rows(method: str, metric: str, values: dict[str, float]) -> list[dict]:
    """One row per condition of ``values`` ({condition: value})."""
    return [
        {"task": TASK, "method": method, "condition": c, "metric": metric, "value": v}
        for c, v in values.items()
    ]


def write_table(rows: list[dict], path: Path, seed: int | None = None) -> pd.DataFrame:
    """Write the rows as CSV atomically (a killed job leaves no partial table)."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    if seed is not None:
        df["seed"] = seed
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return df
