"""Paired differences between two readings of the same test examples, with 95% intervals.

Two readings (say the learned stop and the last step) score the same N examples; their
difference in the task's metric is exact, and its interval comes from the examples: the
metric is linearised per example (its influence, :meth:`l2o.tasks.base.StoppingTask.influence`:
the value itself for a mean such as PSNR, accuracy or MSE; ``10 log10(e) se_i / mean(se)`` for
NMSE, a ratio of means), and the half-width is ``1.96 sd(psi_a - psi_b) / sqrt(N)``. Pairing
removes what the examples share (their difficulty), which is most of the spread.

This interval is over test examples for one trained model: it says whether the difference is
resolved on this test set, not over training seeds (the report gives seeds separately).
"""

from __future__ import annotations

import math

import numpy as np

from l2o.metrics import ordered_conditions

Z95 = 1.959963984540054


def paired_ci(psi_a: np.ndarray, psi_b: np.ndarray) -> float:
    """Half-width of the normal 95% interval of ``mean(psi_a - psi_b)``; NaN with fewer than 2 examples
    or non-finite values.

    >>> round(paired_ci(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 2.0])), 3)
    0.653
    """
    d = np.asarray(psi_a, dtype=np.float64) - np.asarray(psi_b, dtype=np.float64)
    if len(d) < 2 or not np.isfinite(d).all():
        return float("nan")
    return Z95 * float(d.std(ddof=1)) / math.sqrt(len(d))


def jackknife_ci(task, comps_a: dict[str, np.ndarray], comps_b: dict[str, np.ndarray], groups: int = 50) -> float:
    """The 95% half-width of ``metric(a) - metric(b)`` by the delete-a-group jackknife (``groups``
    contiguous groups of examples left out in turn; normal quantile): for a task whose metric has no
    per-example influence. NaN with fewer than 2 examples."""
    n = len(next(iter(comps_a.values())))
    g = min(groups, n)
    if g < 2:
        return float("nan")
    m = task.metric
    bounds = np.linspace(0, n, g + 1).astype(int)
    values = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        keep = np.r_[0:lo, hi:n]
        values.append(task.summarise({k: v[keep] for k, v in comps_a.items()})[m]
                      - task.summarise({k: v[keep] for k, v in comps_b.items()})[m])
    values = np.asarray(values)
    if not np.isfinite(values).all():
        return float("nan")
    return Z95 * math.sqrt((g - 1) / g * float(((values - values.mean()) ** 2).sum()))


def paired_difference(task, comps_a: dict[str, np.ndarray], comps_b: dict[str, np.ndarray],
                      rows: np.ndarray | None = None) -> tuple[float, float]:
    """``metric(a) - metric(b)`` over the examples ``rows`` (all by default) and its 95% half-width.

    :param task: gives ``summarise`` and ``influence`` (:class:`l2o.tasks.base.StoppingTask`); a task
        without a per-example influence gets the jackknife's interval (:func:`jackknife_ci`).
    :param comps_a: ``{name: (N,)}`` metric components of reading a (one step per example); ``comps_b`` of b.
    """
    if rows is not None:
        comps_a = {k: v[rows] for k, v in comps_a.items()}
        comps_b = {k: v[rows] for k, v in comps_b.items()}
    m = task.metric
    diff = task.summarise(comps_a)[m] - task.summarise(comps_b)[m]
    psi_a, psi_b = task.influence(comps_a), task.influence(comps_b)
    if psi_a is None or psi_b is None:
        return float(diff), jackknife_ci(task, comps_a, comps_b)
    return float(diff), paired_ci(psi_a, psi_b)


def paired_by_condition(task, comps_a: dict[str, np.ndarray], comps_b: dict[str, np.ndarray],
                        conditions: np.ndarray, mixed: bool = True) -> dict[str, tuple[float, float]]:
    """:func:`paired_difference` over all examples (``mixed``) and per condition."""
    out = {}
    if mixed:
        out["mixed"] = paired_difference(task, comps_a, comps_b)
    for cond in ordered_conditions(conditions):
        out[cond] = paired_difference(task, comps_a, comps_b, np.asarray(conditions) == cond)
    return out
