"""Accuracy against compute, gathered for the report: every curve's points per seed, the Pareto
front, and the headline numbers (compute saved at the full-depth model's accuracy, accuracy
gained at equal mean compute).

A point is one row of a tidy frame with the columns of :data:`POINT_COLUMNS`: which curve
(``curve``, ``method``, ``setting``), where (``condition``, ``seed``), how good (``value`` of the
task's metric) and at what cost (``steps``: mean steps computed per example; ``seconds``: wall
seconds per example; ``seconds_measured``: False where the seconds are read off the fixed-depth
timings rather than measured for that method).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

POINT_COLUMNS = ["curve", "method", "setting", "condition", "seed", "value", "steps", "seconds",
                 "seconds_measured"]

#: Curve kinds, in legend order. ``oracle`` needs the label (a ceiling, not a method).
CURVES = ("learned stop", "learned stop (sampled)", "learned stop + Stage III", "AEVB", "fixed depth",
          "plain model, fixed depth", "non-learned rule", "classical", "oracle")
ACHIEVABLE = tuple(c for c in CURVES if c != "oracle")
_BUDGETED = re.compile(r"^([a-z0-9]+)_t(\d+)$")


def _cell(table: pd.DataFrame, method: str, metric: str, condition: str) -> float:
    row = table[(table.method == method) & (table.metric == metric) & (table.condition == condition)]
    return float(row.value.iloc[0]) if not row.empty else float("nan")


def stopping_points(table: pd.DataFrame, info: dict, method: str, metric: str, seed: int, setting: str,
                    curve: str, sampled: bool = True) -> list[dict]:
    """A stopping model's points: the deterministic stop (and, ``sampled``, the sampled one) per
    condition, from its evaluation rows and curves entry."""
    rows = []
    for cond, steps in _mean_stops(table, method).items():
        rows.append({"curve": curve, "method": method, "setting": setting, "condition": cond, "seed": seed,
                     "value": _cell(table, method, metric, cond), "steps": steps,
                     "seconds": info.get("stop_seconds", np.nan), "seconds_measured": True})
    if sampled:
        for cond, steps in (info.get("sampled_mean_stop_by_condition") or {}).items():
            rows.append({"curve": f"{curve} (sampled)", "method": method, "setting": setting, "condition": cond,
                         "seed": seed, "value": _cell(table, method, f"{metric}_sampled", cond), "steps": steps,
                         "seconds": info.get("stop_seconds_sampled", np.nan), "seconds_measured": True})
    return rows


def capped_rows(info: dict, method: str, seed: int) -> list[dict]:
    """The learned stop with its threshold tuned on validation under mean-stop caps (no retraining):
    more points of the "learned stop" curve, each timed with real early exit."""
    rows = []
    for p in info.get("capped_points") or []:
        for cond, value in p["metric"].items():
            rows.append({"curve": "learned stop", "method": method,
                         "setting": f"tau {p['tau']:.3g} (mean stop <= {p['cap']:g})", "condition": cond,
                         "seed": seed, "value": float(value), "steps": p["steps"][cond],
                         "seconds": p.get("seconds", np.nan), "seconds_measured": "seconds" in p})
    return rows


def _mean_stops(table: pd.DataFrame, method: str) -> dict[str, float]:
    sub = table[(table.method == method) & (table.metric == "mean_stop")]
    return dict(zip(sub.condition, sub.value.astype(float)))


def depth_points(info: dict, method: str, seed: int, curve: str, depths: list[int] | None = None) -> list[dict]:
    """A network truncated at each fixed depth (``depths``, 1-based; default all), per condition."""
    per_step = info.get("per_step_by_condition") or {}
    secs = info.get("depth_seconds")
    rows = []
    for cond, values in per_step.items():
        for d in depths or range(1, len(values) + 1):
            rows.append({"curve": curve, "method": method, "setting": f"depth {d}", "condition": cond,
                         "seed": seed, "value": float(values[d - 1]), "steps": float(d),
                         "seconds": float(secs[d - 1]) if secs else np.nan, "seconds_measured": True})
    return rows


def rule_points(info: dict, method: str, seed: int) -> list[dict]:
    """The non-learned rule swept over thresholds (seconds read off the fixed-depth timings)."""
    rows = []
    for p in info.get("rule_curve") or []:
        for cond, value in p["metric"].items():
            rows.append({"curve": "non-learned rule", "method": method, "setting": f"eps {p['eps']:.2g}",
                         "condition": cond, "seed": seed, "value": float(value), "steps": p["steps"][cond],
                         "seconds": p.get("seconds", np.nan), "seconds_measured": False})
    return rows


def oracle_points(table: pd.DataFrame, info: dict, method: str, metric: str, seed: int) -> list[dict]:
    """The oracle's best step per example (needs the label: the ceiling of any stopping rule)."""
    return [{"curve": "oracle", "method": method, "setting": "best step", "condition": cond, "seed": seed,
             "value": _cell(table, method, f"{metric}_oracle", cond), "steps": steps,
             "seconds": info.get("oracle_seconds", np.nan), "seconds_measured": False}
            for cond, steps in (info.get("oracle_steps_by_condition") or {}).items()]


def classical_points(classical: pd.DataFrame | None, metric: str) -> list[dict]:
    """Classical methods: ``<algo>_t<budget>`` rows are a curve over budgets (steps = budget);
    any other method with a seconds row is one point without a step count (BM3D). Settings
    not tuned here (``*_paper``) are left out."""
    if classical is None or classical.empty:
        return []
    rows = []
    for method in classical.method.unique():
        if method.endswith("_paper"):
            continue
        sub = classical[classical.method == method]
        secs = sub[sub.metric.isin(["seconds_per_example", "seconds_per_image"])]
        seconds = float(secs[secs.condition == "mixed"].value.iloc[0]) if (secs.condition == "mixed").any() else (
            float(secs.value.mean()) if not secs.empty else np.nan)
        match = _BUDGETED.match(method)
        if match is None and secs.empty:
            continue
        steps = float(match.group(2)) if match else np.nan
        name = match.group(1) if match else method
        for _, r in sub[sub.metric == metric].iterrows():
            rows.append({"curve": "classical", "method": name, "setting": f"T={int(steps)}" if match else "",
                         "condition": r.condition, "seed": -1, "value": float(r.value), "steps": steps,
                         "seconds": seconds, "seconds_measured": bool(np.isfinite(seconds))})
    return rows


def pareto_mask(steps: np.ndarray, values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Points no other point beats in both cost and metric (ties kept), (N,) -> (N,) bool.

    >>> pareto_mask(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 2.0]), True).tolist()
    [True, False, True]
    """
    v = values if higher_is_better else -values
    ok = np.isfinite(steps) & np.isfinite(v)
    out = np.zeros(len(v), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (steps <= steps[i]) & (v >= v[i]) & ((steps < steps[i]) | (v > v[i]))
        out[i] = not dominated.any()
    return out


def interpolate(steps: np.ndarray, values: np.ndarray, at: float) -> float:
    """The piecewise-linear curve through the points (sorted by cost) read at cost ``at``; NaN
    outside their range.

    >>> interpolate(np.array([1.0, 3.0]), np.array([0.0, 2.0]), 2.0)
    1.0
    """
    order = np.argsort(steps, kind="stable")
    s, v = np.asarray(steps, float)[order], np.asarray(values, float)[order]
    if len(s) == 0 or not (s[0] - 1e-9 <= at <= s[-1] + 1e-9):
        return float("nan")
    return float(np.interp(at, s, v))


def best_within(steps: np.ndarray, values: np.ndarray, at: float, higher_is_better: bool) -> float:
    """The best a curve does with at most ``at`` mean steps: its Pareto front read at ``at``, linear
    between front points (a random mix of two settings reaches any cost between them) and flat
    past the last one; NaN below the cheapest point.

    >>> best_within(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]), 2.5, True)  # step 3 is dominated
    3.0
    """
    s, v = np.asarray(steps, float), np.asarray(values, float)
    mask = pareto_mask(s, v, higher_is_better)
    s, v = s[mask], v[mask]
    if len(s) == 0:
        return float("nan")
    return interpolate(s, v, min(at, float(s.max())))


def cost_to_reach(steps: np.ndarray, values: np.ndarray, target: float, higher_is_better: bool) -> float:
    """The least cost at which the piecewise-linear front through the points reaches ``target``;
    NaN when no point does.

    >>> cost_to_reach(np.array([2.0, 4.0]), np.array([1.0, 3.0]), 2.0, True)
    3.0
    """
    sign = 1.0 if higher_is_better else -1.0
    mask = pareto_mask(np.asarray(steps, float), np.asarray(values, float), higher_is_better)
    s, v = np.asarray(steps, float)[mask], sign * np.asarray(values, float)[mask]
    order = np.argsort(s)
    s, v = s[order], v[order]
    goal = sign * target
    reach = np.flatnonzero(v >= goal - 1e-12)
    if len(reach) == 0:
        return float("nan")
    j = reach[0]
    if j == 0 or v[j - 1] == v[j]:
        return float(s[j])
    return float(s[j - 1] + (goal - v[j - 1]) * (s[j] - s[j - 1]) / (v[j] - v[j - 1]))


def headline_per_seed(points: pd.DataFrame, stop_method: str, T: int, higher_is_better: bool) -> pd.DataFrame:
    """Per seed and condition: the full-depth metric (the stopping model's network at step T), the
    learned stop (the main run's, setting ``... (main)``), the steps the learned stop and the best fixed depth need to
    reach the full-depth metric (saved = T - that), and the learned stop's gain over the best the
    same network truncated at a fixed depth, and the non-learned rule, do with at most its mean
    steps (:func:`best_within`; positive = better)."""
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for (seed, cond), g in points[points.seed >= 0].groupby(["seed", "condition"], sort=False):
        depth = g[(g.curve == "fixed depth") & (g.method == stop_method)]
        full = depth[depth.steps == T]
        main = g[(g.curve == "learned stop") & g.setting.str.endswith("(main)")]
        if full.empty or main.empty:
            continue
        target = float(full.value.iloc[0])
        learned = g[g.curve == "learned stop"]
        rule = g[g.curve == "non-learned rule"]
        stop_steps, stop_value = float(main.steps.iloc[0]), float(main.value.iloc[0])
        rows.append({
            "seed": seed, "condition": cond, "full_depth": target, "stop": stop_value, "stop_steps": stop_steps,
            "saved_learned": T - cost_to_reach(learned.steps.to_numpy(), learned.value.to_numpy(), target,
                                               higher_is_better),
            "saved_fixed": T - cost_to_reach(depth.steps.to_numpy(), depth.value.to_numpy(), target,
                                             higher_is_better),
            "gain_vs_fixed": sign * (stop_value - best_within(depth.steps.to_numpy(), depth.value.to_numpy(),
                                                              stop_steps, higher_is_better)),
            "gain_vs_rule": sign * (stop_value - best_within(rule.steps.to_numpy(), rule.value.to_numpy(),
                                                             stop_steps, higher_is_better)),
            "stop_seconds": float(main.seconds.iloc[0]), "full_seconds": float(full.seconds.iloc[0]),
        })
    return pd.DataFrame(rows)


def mean_points(points: pd.DataFrame) -> pd.DataFrame:
    """Points averaged over seeds per (curve, method, setting, condition): ``value`` with its 95% CI
    (``ci95``), ``n_seeds``, mean ``steps`` and ``seconds``."""
    from l2o.report.stats import mean_ci

    keys = ["curve", "method", "setting", "condition"]
    rows = []
    for key, g in points.groupby(keys, sort=False, dropna=False):
        value, ci = mean_ci(list(g.value))
        rows.append({**dict(zip(keys, key)), "value": value, "ci95": ci, "n_seeds": len(g),
                     "steps": float(g.steps.mean()), "seconds": float(g.seconds.mean()),
                     "seconds_measured": bool(g.seconds_measured.all())})
    return pd.DataFrame(rows)
