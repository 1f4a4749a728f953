"""The tidy metrics table every evaluation writes: ``task, method, condition, metric, value`` [+ ``seed``].

Conditions are the task's (``snr20``, ``sigma65``, ...) plus ``mixed`` (all
examples of the main test set).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from l2o.io import atomic_path

COLUMNS = ["task", "method", "condition", "metric", "value"]


def db_of(ratio) -> float:
    """``10 log10(ratio)``; ``-inf`` for a ratio of 0.

    >>> db_of(0.1)
    -10.0
    """
    return float(10.0 * np.log10(ratio)) if ratio > 0 else float("-inf")


def metric_rows(task: str, method: str, metric: str, values: dict[str, float]) -> list[dict]:
    """One row per condition of ``values`` ({condition: value})."""
    return [
        {"task": task, "method": method, "condition": c, "metric": metric, "value": v}
        for c, v in values.items()
    ]


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside names by value: ``shots2`` before ``shots10``.

    >>> sorted(["shots10", "shots2", "snr20"], key=natural_key)
    ['shots2', 'shots10', 'snr20']
    """
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name)))


def ordered_conditions(conditions: np.ndarray) -> list[str]:
    """The distinct conditions, in natural order."""
    return sorted({str(c) for c in conditions}, key=natural_key)


def by_condition(summarise, components: dict[str, np.ndarray], conditions: np.ndarray, mixed: bool = True,
                 weights: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """``{condition: {metric: value}}`` over all examples (``mixed``) and per condition.

    :param summarise: the task's ``summarise(components, weights=None) -> {metric: value}``.
    :param components: ``{name: (N,)}``; ``conditions`` (N,) labels (reported in natural order).

    >>> mean = lambda c, weights=None: {"m": float(c["x"].mean())}
    >>> by_condition(mean, {"x": np.array([1.0, 3.0, 5.0])}, np.array(["a", "a", "b"]))
    {'mixed': {'m': 3.0}, 'a': {'m': 2.0}, 'b': {'m': 5.0}}
    """
    out = {}
    if mixed:
        out["mixed"] = summarise(components, weights=weights)
    for cond in ordered_conditions(conditions):
        sel = conditions == cond
        out[cond] = summarise({k: v[sel] for k, v in components.items()},
                                   weights=None if weights is None else weights[sel])
    return out


def condition_rows(task: str, method: str, per_condition: dict[str, dict[str, float]], suffix: str = "") -> list[dict]:
    """Rows ``metric + suffix`` (``psnr_oracle``) for every condition and metric of :func:`by_condition`."""
    rows = []
    metrics = list(next(iter(per_condition.values()), {}))
    for metric in metrics:
        rows += metric_rows(task, method, metric + suffix, {c: v[metric] for c, v in per_condition.items()})
    return rows


def write_table(rows: list[dict], path: Path, seed: int | None = None) -> pd.DataFrame:
    """Write the rows as CSV atomically (a killed job leaves no partial table)."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    if seed is not None:
        df["seed"] = seed
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return df
