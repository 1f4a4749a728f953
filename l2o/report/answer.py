"""The report's first part: what learned stopping buys, one row per task, before any task's details.

Each row reads the learned stop (at the rule its checkpoint was selected for) against the
simpler decisions it must beat, as paired differences on the same test examples with their 95%
intervals (positive = the learned stop is better, in the metric's units): the network's last
step T, the best fixed depth on validation, the best depth per condition on validation (shots,
noise level, SNR: "look the condition up"), and what an honest oracle (one that chooses on data
it is not scored on) could gain over step T. With one seed the intervals are over test examples;
with several, over seeds. The verdict:

* **pays** -- the learned stop is better than both the best fixed depth and the per-condition
  depth, each beyond its interval;
* **does not pay** -- it is worse than one of them beyond the interval, or it is not better and
  there is nothing to capture (the honest oracle's gain over step T is below the task's gain
  floor, beyond its interval), or there is a gain to capture (the honest oracle's, beyond its
  interval) and the interval of the learned stop's gain over step T excludes half of it;
* **not resolved** -- anything else: the intervals do not decide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report.results import TaskResults
from l2o.report.skeptic import metric_unit
from l2o.report.stats import cell

#: (column, summary metric) of the paired differences the row shows, learned stop minus the other
PAIRS = (("vs step T", "diff_vs_last"), ("vs best fixed depth", "diff_vs_best_depth"),
         ("vs per-condition depth", "diff_vs_condition_depth"))


def gain(res: TaskResults, metric: str, method: str | None = None, cond: str = "mixed") -> tuple[float, float]:
    """A paired difference as a gain (positive = better) and its 95% half-width: over seeds with several
    seeds, else over the test examples (the ``<metric>_ci95`` row)."""
    method = method or res.method("stop")
    value, seed_ci = cell(res.summary, method, cond, metric)
    example_ci = cell(res.summary, method, cond, f"{metric}_ci95")[0]
    ci = seed_ci if res.n_seeds > 1 and np.isfinite(seed_ci) else example_ci
    sign = 1.0 if res.higher_is_better else -1.0
    return sign * value, ci


def resolved(value: float, ci: float) -> bool:
    """Whether an interval excludes zero.

    >>> resolved(0.3, 0.1), resolved(0.05, 0.1), resolved(0.3, float("nan"))
    (True, False, False)
    """
    return bool(np.isfinite(value) and np.isfinite(ci) and abs(value) > ci)


def verdict(res: TaskResults) -> tuple[str, str]:
    """``(pays | does not pay | not resolved, the reason in a few words)`` of the mixed condition."""
    best = gain(res, "diff_vs_best_depth")
    cond = gain(res, "diff_vs_condition_depth")
    honest = gain(res, "honest_gain")
    rivals = [("the best fixed depth", best)] + ([("the per-condition depth", cond)] if np.isfinite(cond[0]) else [])
    if not np.isfinite(best[0]):
        return "not resolved", "no validation baselines in this evaluation"
    lost = [name for name, (v, ci) in rivals if resolved(v, ci) and v < 0]
    if lost:
        return "does not pay", f"worse than {' and '.join(lost)}"
    if all(resolved(v, ci) and v > 0 for _, (v, ci) in rivals):
        return "pays", f"better than {' and '.join(name for name, _ in rivals)}"
    if np.isfinite(honest[0]) and np.isfinite(honest[1]) and honest[0] + honest[1] < res.gain_floor:
        return "does not pay", (f"not better than {rivals[0][0]}, and an honest oracle gains at most "
                                f"{honest[0] + honest[1]:.2g} over step T (< {res.gain_floor:g}): nothing to capture")
    captured = gain(res, "diff_vs_last")
    if (resolved(*honest) and honest[0] > 0 and np.isfinite(captured[1])
            and captured[0] + captured[1] < 0.5 * honest[0]):
        # the interval excludes capturing half of a gain that is really there
        return "does not pay", (f"not better than {rivals[0][0]}, and it captures at most "
                                f"{100 * max(captured[0] + captured[1], 0) / honest[0]:.0f}% of the honest "
                                f"oracle's gain over step T")
    return "not resolved", "the intervals include zero"


def _fmt(pair: tuple[float, float], digits: int = 2) -> str:
    value, ci = pair
    if not np.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" + (f" ± {ci:.{digits}f}" if np.isfinite(ci) else "")


def answer_row(res: TaskResults) -> dict:
    """One task's row of the answer table."""
    m, unit = res.metric, metric_unit(res.metric)
    stop = res.method("stop")
    info = res.curves[0].get(stop, {})
    rule = (info.get("rule") or {}).get("name", "paper")
    digits = 3 if m == "mse" else 2
    T = len(info.get("stop_histogram", [])) or None
    steps = cell(res.summary, stop, "mixed", "mean_stop")[0]
    speed = [c[stop]["plain_seconds"] / c[stop]["stop_seconds"] for c in res.curves
             if stop in c and c[stop].get("plain_seconds") and c[stop].get("stop_seconds")]
    honest = gain(res, "honest_gain")
    captured = gain(res, "diff_vs_last")
    share = (100.0 * captured[0] / honest[0] if np.isfinite(honest[0]) and honest[0] >= res.gain_floor
             else float("nan"))
    word, why = verdict(res)
    row = {"task": res.spec.title.split(" (")[0], "metric, rule": f"{m}{f' ({unit})' if unit else ''}, {rule}",
           "learned stop": f"{cell(res.summary, stop, 'mixed', m)[0]:.{digits}f}"}
    for label, metric in PAIRS:
        row[label] = _fmt(gain(res, metric), digits)
    row["honest oracle vs step T"] = _fmt(honest, digits)
    row["share of it captured"] = f"{share:.0f}%" if np.isfinite(share) else "–"
    row["mean steps"] = f"{steps:.2f} of {T}" if T else f"{steps:.2f}"
    row["wall time vs plain model"] = f"{np.mean(speed):.2f}× as fast" if speed else "–"
    row["verdict"] = f"{word} ({why})"
    return row


NOTE = ("Paired differences on the same test examples, learned stop minus the other, as gains (positive = the "
        "learned stop is better) in each task's metric, ± the 95% interval ({what}). The learned stop is read "
        "with the rule its Stage II selected its checkpoint on (stage2.rule; 'tuned': a threshold on π chosen on "
        "validation); every rule's row is in the task's table below. The best fixed depth and the per-condition "
        "depth (the best step for each shot count, noise level or SNR) are chosen on validation. The honest oracle "
        "chooses each example's step on data it is not scored on (few-shot classification: one half of the query "
        "set for the other; regression: the noisy query points, scored on the noise-free function; denoising and "
        "sparse recovery: one half of the pixels or coordinates for the other); 'share captured' is the learned "
        "stop's gain over step T as a share of it, shown where it reaches the task's gain floor. Wall time: "
        "early exit (policy included) against the plain model run to T on the timing examples.")


def answer_section(results: list[TaskResults]) -> tuple[str, list]:
    """The answer table across tasks, its note and one line per task."""
    rows = [answer_row(r) for r in results if r.method("stop") in r.curves[0]]
    if not rows:
        return ("What learned stopping buys", ["No task evaluated a stopping model."])
    what = "over test examples" if all(r.n_seeds == 1 for r in results) else "over seeds where there are several"
    lines = [f"- {row['task']}: {row['verdict']}." for row in rows]
    return ("What learned stopping buys", [pd.DataFrame(rows), NOTE.format(what=what), "\n".join(lines)])
