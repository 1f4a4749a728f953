"""Numbers of the report: seeds aggregated (mean +- 95% CI), paired differences,
and what stopping gains over always running to the last step."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Below this oracle gain over the last step (in the metric's units: dB for NMSE and
#: PSNR), a share of it "captured by the policy" is a ratio of noise: one seed's
#: test set moves such a share by tens of percent, and a policy that loses a little
#: reads as losing thousands of percent. The report then gives the two gains in
#: the metric's units and no percentage.
MIN_POSSIBLE_GAIN = 0.5


def t_quantile_975(dof: int) -> float:
    """Two-sided 95% Student-t quantile (exact from scipy)."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def aggregate(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and 95% CI over seeds per (task, method, condition, metric).

    >>> a = pd.DataFrame({"task": ["s"], "method": ["m"], "condition": ["mixed"], "metric": ["x"], "value": [1.0], "seed": [0]})
    >>> b = a.assign(value=3.0, seed=1)
    >>> aggregate([a, b])[["value", "n_seeds"]].values.tolist()
    [[2.0, 2.0]]
    """
    df = pd.concat(tables, ignore_index=True)
    keys = ["task", "method", "condition", "metric"]
    g = df.groupby(keys, sort=False, dropna=False)["value"]
    out = g.agg(value="mean", sd="std", n_seeds="count").reset_index()
    out["ci95"] = [
        t_quantile_975(int(n) - 1) * sd / math.sqrt(n) if n > 1 and np.isfinite(sd) else float("nan")
        for sd, n in zip(out["sd"], out["n_seeds"])
    ]
    return out.drop(columns="sd")[keys + ["value", "ci95", "n_seeds"]]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and two-sided 95% t half-width (nan with one value).

    >>> mean_ci([1.0, 3.0])[0]
    2.0
    """
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    return float(v.mean()), t_quantile_975(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def seed_values(tables: list[pd.DataFrame], method: str, cond: str = "mixed", metric: str = "nmse_db") -> dict:
    """``{seed: value}`` of one cell across per-seed tables."""
    out = {}
    for t in tables:
        row = t[(t.method == method) & (t.condition == cond) & (t.metric == metric)]
        if not row.empty:
            out[int(row.seed.iloc[0])] = float(row.value.iloc[0])
    return out


def paired_difference(a: dict, b: dict) -> tuple[float, float, int]:
    """Mean ± 95% CI of ``a[seed] - b[seed]`` over the seeds both have, and their number.

    >>> paired_difference({0: -10.0, 1: -12.0}, {0: -9.0, 1: -11.0, 2: 0.0})[::2]
    (-1.0, 2)
    """
    seeds = sorted(set(a) & set(b))
    mean, ci = mean_ci([a[s] - b[s] for s in seeds])
    return mean, ci, len(seeds)


def gain_rows(table: pd.DataFrame, methods: list[str], metric: str, higher_is_better: bool,
              floor: float = MIN_POSSIBLE_GAIN) -> pd.DataFrame:
    """What stopping gains over the last step, per stopping method and condition of one seed's table.

    ``gain_possible``: the honest oracle's step (chosen on data it is not scored on; the optimistic
    oracle's where the task has no honest one) vs the last step; ``gain_possible_optimistic``: the
    oracle that chooses on the scored data itself (an upper bound); ``gain_captured``: the
    learned stop vs the last step (all in the metric's units, positive = better);
    ``gain_captured_pct``: captured / possible in %, NaN when the possible gain is below ``floor``
    (the task's; :data:`MIN_POSSIBLE_GAIN` by default).
    """
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for method in methods:
        sub = table[table.method == method]
        for cond in sub.condition.unique():
            v = sub[sub.condition == cond].set_index("metric")["value"]
            if not {metric, f"{metric}_last", f"{metric}_oracle"} <= set(v.index):
                continue
            optimistic = sign * (v[f"{metric}_oracle"] - v[f"{metric}_last"])
            honest_key = f"{metric}_oracle_honest"
            possible = sign * (v[honest_key] - v[f"{metric}_last"]) if honest_key in v.index else optimistic
            captured = sign * (v[metric] - v[f"{metric}_last"])
            share = 100.0 * captured / possible if possible >= floor else float("nan")
            base = {"task": sub.task.iloc[0], "method": method, "condition": cond, "seed": sub.seed.iloc[0]}
            rows += [{**base, "metric": "gain_possible", "value": possible},
                     {**base, "metric": "gain_possible_optimistic", "value": optimistic},
                     {**base, "metric": "gain_captured", "value": captured},
                     {**base, "metric": "gain_captured_pct", "value": share}]
    return pd.DataFrame(rows)


def cell(summary: pd.DataFrame, method: str, cond: str, metric: str) -> tuple[float, float]:
    """(value, ci95) of one summary cell; NaNs when absent."""
    row = summary[(summary.method == method) & (summary.condition == cond) & (summary.metric == metric)]
    if row.empty:
        return float("nan"), float("nan")
    return float(row.value.iloc[0]), float(row.ci95.iloc[0])


def fmt(value: float, ci: float = float("nan"), digits: int = 2) -> str:
    """``-19.37 ± 0.05``; an en dash for a missing value."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" ± {ci:.{digits}f}" if np.isfinite(ci) else "")


def digits_for(metric: str) -> int:
    """Decimals to print a metric with (SSIM in [0, 1] needs more than dB)."""
    return 3 if metric.startswith("ssim") else 2
