"""The same trained stopping network read several ways: the skeptic's questions, as table rows.

From a stopping model's outputs on the test set (and on the validation set, where every
choice is made) this builds the readings the report compares, each a set of metric
components at one step per example:

* the learned stop under each rule (``paper``, ``median``, ``tuned``; the checkpoint's rule is
  the headline), sampled, and expected under ``q_phi``;
* the last step T; the oracles (optimistic: chosen on the scored data; honest: chosen on data
  not scored, the task's :meth:`~l2o.tasks.base.StoppingTask.honest_oracle`);
* the baselines, all chosen on validation: a fixed depth of about the policy's mean cost, the
  best fixed depth at any cost, the best depth per condition (the "look up the condition"
  baseline), and the non-learned relative-change rule at the policy's mean cost;
* paired differences of the learned stop against step T, the best fixed depth and the
  per-condition depth, and of the honest oracle against step T, with 95% intervals over the
  test examples (:mod:`l2o.paired`).

The choices themselves are pure functions of (N, K) tables in :mod:`l2o.stopping.rules`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from l2o.metrics import by_condition, condition_rows, metric_rows, ordered_conditions
from l2o.outputs import SetOutputs
from l2o.paired import paired_by_condition
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.rules import (
    MEDIAN,
    PAPER,
    RULES,
    apply_condition_steps,
    best_fixed_step,
    first_below,
    oracle_index,
    per_condition_steps,
    rule_named,
    stop_index,
    tune_change_rule,
    tune_threshold,
)

#: the mean-stop caps (fractions of T) at which the tuned threshold gives the learned stop's
#: accuracy-vs-compute points (no retraining)
CAP_FRACTIONS = (0.25, 0.5, 0.75)


def value_function(task, components: dict[str, np.ndarray]) -> Callable[[np.ndarray], float]:
    """``index (N,) -> the task's metric`` of the components (N, K) read at one column per example."""
    rows = np.arange(len(next(iter(components.values()))))

    def value_of(idx: np.ndarray) -> float:
        return task.summarise({k: v[rows, idx] for k, v in components.items()})[task.metric]

    return value_of


def at_index(components: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.arange(len(idx))
    return {k: v[rows, idx] for k, v in components.items()}


def rule_records(task, val: SetOutputs, candidates: list[int], checkpoint_rule: dict | None) -> dict[str, dict]:
    """Each rule with its threshold: ``{name: {"rule": StopRule, "tau": float | None}}``. The tuned
    threshold is the checkpoint's (chosen with the model) or, for a checkpoint of another rule,
    tuned here on validation."""
    out = {"paper": {"rule": PAPER, "tau": 0.5}, "median": {"rule": MEDIAN, "tau": None}}
    tau = (checkpoint_rule or {}).get("tau") if (checkpoint_rule or {}).get("name") == "tuned" else None
    if tau is None:
        value_of = value_function(task, val.at_candidates(candidates))
        tau = tune_threshold(val.logits, value_of, task.higher_is_better, candidates)[0]
    out["tuned"] = {"rule": rule_named("tuned", tau), "tau": float(tau)}
    return out


def stopping_readings(task, out: SetOutputs, candidates: list[int], rules: dict[str, dict], main_rule: str,
                      uniforms: torch.Tensor) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The readings of a stopping model on one set: ``({suffix: components (N,)}, {suffix: stop steps (N,)})``.

    Suffixes: ``""`` (the main rule), ``_<rule>`` for every rule, ``_sampled``, ``_expected``,
    ``_last``, ``_oracle`` (optimistic), ``_oracle_honest`` (when the task has one).
    """
    cand = out.at_candidates(candidates)
    steps = np.asarray(candidates)
    q = stop_log_distribution(out.logits).exp().numpy()
    readings, stops = {}, {}
    for name, rec in rules.items():
        idx = stop_index(out.logits, rule=rec["rule"]).numpy()
        readings[f"_{name}"], stops[f"_{name}"] = at_index(cand, idx), steps[idx]
    readings[""], stops[""] = readings[f"_{main_rule}"], stops[f"_{main_rule}"]
    samp = stop_index(out.logits, uniforms).numpy()
    readings["_sampled"], stops["_sampled"] = at_index(cand, samp), steps[samp]
    readings["_expected"] = {k: (q * v).sum(axis=1) for k, v in cand.items()}
    readings["_last"] = {k: v[:, -1] for k, v in out.components.items()}
    best = oracle_index(out.oracle_losses.numpy())
    readings["_oracle"], stops["_oracle"] = out.at(best), best + 1
    honest = task.honest_oracle(out.components)
    if honest is not None:
        readings["_oracle_honest"] = honest
    return readings, stops


def reading_rows(task, method: str, readings: dict[str, dict], stops: dict[str, np.ndarray],
                 conditions: np.ndarray, mixed: bool) -> list[dict]:
    """Table rows: ``<metric><suffix>`` for every reading and ``mean_stop<suffix>`` where there are stops."""
    rows = []
    for suffix, comps in readings.items():
        rows += condition_rows(task.name, method, by_condition(task.summarise, comps, conditions, mixed), suffix)
    for suffix, st in stops.items():
        rows += metric_rows(task.name, method, f"mean_stop{suffix}", mean_over(st.astype(float), conditions, mixed))
    return rows


def mean_over(values: np.ndarray, conditions: np.ndarray, mixed: bool = True) -> dict[str, float]:
    """Mean of ``values`` (N,) over all examples (``mixed``) and per condition.

    >>> mean_over(np.array([1.0, 3.0, 5.0]), np.array(["a", "a", "b"]))
    {'mixed': 3.0, 'a': 2.0, 'b': 5.0}
    """
    res = {"mixed": float(np.mean(values))} if mixed else {}
    for cond in ordered_conditions(conditions):
        res[cond] = float(np.mean(values[conditions == cond]))
    return res


def validation_baselines(task, val: SetOutputs, test: SetOutputs, candidates: list[int],
                         mean_stop: float) -> tuple[dict[str, dict], dict[str, np.ndarray], dict]:
    """The baselines chosen on validation, read on test: ``({name: components (N,)}, {name: stop
    steps (N,)}, {what was chosen})``. Names: ``fixed_depth`` (the better on validation of the two
    whole depths around the policy's mean stop: a depth whose output was never trained would
    make a straw man), ``best_depth`` (any cost), ``condition_depth`` (the best depth per
    condition; a condition unseen on validation takes the nearest seen one's), ``heuristic``
    (stop at the first of the policy's candidates whose state changed by less than eps,
    eps tuned at the policy's mean cost)."""
    T = test.losses.shape[1]
    m, higher = task.metric, task.higher_is_better

    def at_depth(comps, d):  # d 1-based
        return {k: v[:, d - 1] for k, v in comps.items()}

    def val_depth(d: int, rows=None) -> float:
        comps = at_depth(val.components, d)
        if rows is not None:
            comps = {k: v[rows] for k, v in comps.items()}
        return task.summarise(comps)[m]

    around = sorted({int(min(max(math.floor(mean_stop), 1), T)), int(min(max(math.ceil(mean_stop), 1), T))})
    fixed = around[best_fixed_step(lambda i: val_depth(around[i]), len(around), higher)]
    best = best_fixed_step(lambda k: val_depth(k + 1), T, higher) + 1
    by_cond = {c: k + 1 for c, k in per_condition_steps(val.conditions, lambda k, rows: val_depth(k + 1, rows), T,
                                                        higher).items()}
    cond_steps = apply_condition_steps(test.conditions, by_cond, best)
    cols = np.asarray([t - 1 for t in candidates])
    eps = tune_change_rule(val.change[:, cols], value_function(task, {k: v[:, cols] for k, v in val.components.items()}),
                           higher, mean_stop, steps=np.asarray(candidates))
    heur = cols[first_below(test.change[:, cols], eps)]
    N = len(test.conditions)
    readings = {"fixed_depth": at_depth(test.components, fixed), "best_depth": at_depth(test.components, best),
                "condition_depth": test.at(cond_steps - 1), "heuristic": test.at(heur)}
    stops = {"fixed_depth": np.full(N, fixed), "best_depth": np.full(N, best), "condition_depth": cond_steps,
             "heuristic": heur + 1}
    chosen = {"fixed_depth": fixed, "best_depth": best, "condition_depths": by_cond, "heuristic_eps": eps}
    return readings, stops, chosen


#: paired differences of the report's answer table: (metric name, reading a, reading b)
PAIRS = (("diff_vs_last", "", "_last"), ("diff_vs_best_depth", "", "best_depth"),
         ("diff_vs_condition_depth", "", "condition_depth"), ("diff_vs_fixed_depth", "", "fixed_depth"),
         ("honest_gain", "_oracle_honest", "_last"), ("oracle_gain", "_oracle", "_last"))


def paired_rows(task, method: str, readings: dict[str, dict], conditions: np.ndarray) -> list[dict]:
    """``<pair>`` and ``<pair>_ci95`` rows (reading a minus reading b, metric units, 95% interval over
    the test examples) for each pair of :data:`PAIRS` both of whose readings exist."""
    rows = []
    for name, a, b in PAIRS:
        if a not in readings or b not in readings:
            continue
        diffs = paired_by_condition(task, readings[a], readings[b], conditions)
        rows += metric_rows(task.name, method, name, {c: d for c, (d, _) in diffs.items()})
        rows += metric_rows(task.name, method, f"{name}_ci95", {c: ci for c, (_, ci) in diffs.items()})
    return rows


def capped_points(task, val: SetOutputs, test: SetOutputs, candidates: list[int], T: int) -> list[dict]:
    """The learned stop at mean-stop caps (fractions :data:`CAP_FRACTIONS` of T): the threshold tuned on
    validation under each cap, read on test. Each ``{"cap", "tau", "steps": {cond: mean stop},
    "metric": {cond: value}}`` -- the learned stop's accuracy-vs-compute curve without retraining."""
    value_of = value_function(task, val.at_candidates(candidates))
    cand, steps = test.at_candidates(candidates), np.asarray(candidates)
    points, seen = [], set()
    for frac in CAP_FRACTIONS:
        cap = frac * T
        tau = tune_threshold(val.logits, value_of, task.higher_is_better, candidates, max_mean_stop=cap)[0]
        idx = stop_index(test.logits, rule=rule_named("tuned", tau)).numpy()
        if idx.tobytes() in seen:
            continue
        seen.add(idx.tobytes())
        comps = at_index(cand, idx)
        points.append({"cap": cap, "tau": tau, "steps": mean_over(steps[idx].astype(float), test.conditions),
                       "metric": {c: v[task.metric] for c, v in by_condition(task.summarise, comps,
                                                                            test.conditions, True).items()}})
    return points


__all__ = ["RULES", "CAP_FRACTIONS", "value_function", "rule_records", "stopping_readings", "reading_rows",
           "validation_baselines", "paired_rows", "capped_points", "mean_over"]
