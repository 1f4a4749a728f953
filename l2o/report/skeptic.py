"""Is learning to stop worth it? The same trained model read several ways, for any task,
and the findings in plain words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report.results import TaskResults
from l2o.report.stats import cell, digits_for, fmt, paired_difference, seed_values

NOTE = (
    "The learned stop under each rule: the paper's (π > 0.5), the median of q_φ (stop where the survival ∏(1 − π) "
    "first drops to 0.5), and a threshold τ on π tuned on validation; the first row is the rule Stage II selected its "
    "checkpoint on. (a) stopping vs always running to the last step T; (b) the same model at a fixed depth of about "
    "the policy's mean cost (the better on validation of the two whole depths around it), (b') the depth that is "
    "best on validation whatever its cost, i.e. a fixed depth tuned as hard as the policy, (b'') the best depth "
    "for each condition on validation (look the condition up: a policy that cannot beat it has learned nothing "
    "beyond the condition; a condition unseen on validation takes the nearest one's); (c) a non-learned "
    "rule: stop at the first of the policy's candidate steps whose state changed by less than ε "
    "(relative), ε tuned on validation under the policy's mean cost; (d) an honest oracle: each example's step "
    "chosen on data it is not scored on (half of its query set, pixels or coordinates for the other half; "
    "regression: the noisy query points, scored on the noise-free function), its gain over the last step and the "
    "policy's; the share is shown only when the possible gain is at least {floor} {unit}, below which it "
    "is a ratio of noise; (d') the oracle that chooses on the very data it is scored on: an upper bound, "
    "optimistic; (e) what the extra training alone gives: the plain model, and the same network "
    "trained from Stage I's start for Stage I's updates with the plain loss."
)


def metric_unit(metric: str) -> str:
    """``dB`` for NMSE and PSNR, ``%`` for accuracy, nothing else."""
    if metric.endswith("db") or metric.startswith("psnr"):
        return "dB"
    return "%" if metric.startswith("accuracy") else ""


def readings(res: TaskResults) -> list[tuple[str, str, str]]:
    """``(label, method, metric)`` of each reading of the skeptic's table."""
    m, stop = res.metric, res.method("stop")
    unit = metric_unit(m)
    rule = (res.curves[0].get(stop, {}).get("rule") or {}).get("name", "paper")
    rows = [(f"learned stop ({rule} rule)", stop, m)]
    rows += [(label, stop, f"{m}_{name}") for name, label in (
        ("paper", "learned stop, paper's rule (π > 0.5)"), ("median", "learned stop, median of q_φ"),
        ("tuned", "learned stop, τ tuned on validation")) if name != rule]
    rows += [
        ("learned stop, sampled", stop, f"{m}_sampled"),
        ("expected under q_φ", stop, f"{m}_expected"),
        ("(a) last step T", stop, f"{m}_last"),
        ("(b) fixed depth ≈ mean stop", res.method("fixed_depth"), m),
        ("(b') best fixed depth on validation (any cost)", res.method("best_depth"), m),
        ("(b') that depth", res.method("best_depth"), "mean_stop"),
        ("(b'') best depth per condition on validation", res.method("condition_depth"), m),
        ("(b'') its mean depth", res.method("condition_depth"), "mean_stop"),
        ("(c) non-learned rule, same cost", res.method("heuristic"), m),
        ("(d) honest oracle (chooses on data it is not scored on)", stop, f"{m}_oracle_honest"),
        (f"(d) honest oracle's gain over the last step ({unit})".replace(" ()", ""), stop, "gain_possible"),
        (f"(d) learned stop's gain over the last step ({unit})".replace(" ()", ""), stop, "gain_captured"),
        ("(d) share of the honest oracle's gain captured (%)", stop, "gain_captured_pct"),
        ("(d') optimistic oracle (chooses on what it is scored on; upper bound)", stop, f"{m}_oracle"),
        ("(e) plain model (T)", res.method("baseline"), m),
        ("(e) same training as Stage I, plain loss (T)", res.method("matched"), m),
        ("mean stop step", stop, "mean_stop"),
    ]
    rows += [(f"mean stop step, {label}", stop, f"mean_stop_{name}") for name, label in (
        ("paper", "paper's rule"), ("median", "median"), ("tuned", "tuned τ")) if name != rule]
    return rows


def skeptic_table(res: TaskResults) -> pd.DataFrame:
    """The readings by condition (mixed and the task's conditions)."""
    rows = []
    for label, method, metric in readings(res):
        row = {"reading": label}
        for cond in res.conditions():
            row[cond] = fmt(*cell(res.summary, method, cond, metric), digits=digits_for(metric))
        if any(v != "–" for k, v in row.items() if k != "reading"):  # readings this run has
            rows.append(row)
    return pd.DataFrame(rows)


def skeptic_note(res: TaskResults) -> str:
    return NOTE.format(floor=res.gain_floor, unit=metric_unit(res.metric)).replace(" )", ")")


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def stopping_findings(res: TaskResults) -> list[str]:
    """Plain statements about the learned stop, computed from the summary (mixed condition)."""
    m, higher, s = res.metric, res.higher_is_better, res.summary
    unit = metric_unit(m)
    u = f" {unit}" if unit else ""

    def v(method, metric=m, cond="mixed"):
        return cell(s, method, cond, metric)[0]

    out = [headline(res)]
    stop, base = v(res.method("stop")), v(res.method("baseline"))
    name_stop, name_base = f"{res.spec.display}-stop", res.spec.display
    if np.isfinite(stop) and np.isfinite(base):
        verdict = "beats" if _better(stop, base, higher) else "does NOT beat"
        out.append(f"{name_stop} {verdict} the plain {name_base}: {stop:.2f} vs {base:.2f}{u} "
                   f"({stop - base:+.2f}{u}, mixed).")
    fixed, heur, last = v(res.method("fixed_depth")), v(res.method("heuristic")), v(res.method("stop"), f"{m}_last")
    if np.isfinite(stop) and np.isfinite(fixed):
        verdict = "the policy wins" if _better(stop, fixed, higher) else "the policy does not win"
        out.append(f"Against the same model at a fixed depth of about the same mean cost: {stop:.2f} vs {fixed:.2f}{u} "
                   f"({verdict}); against its own last step: {stop:.2f} vs {last:.2f}{u}; against a tuned "
                   f"non-learned rule of the same cost: {heur:.2f}{u}.")
    possible, captured = v(res.method("stop"), "gain_possible"), v(res.method("stop"), "gain_captured")
    if np.isfinite(possible):
        if possible < res.gain_floor:
            out.append(f"An honest oracle's step beats the last step by only {possible:.2f}{u}: there is almost "
                       f"nothing for a stopping policy to capture here; the learned stop changes the result by "
                       f"{captured:+.2f}{u} against the last step.")
        else:
            share = v(res.method("stop"), "gain_captured_pct")
            out.append(f"An honest oracle's step would gain {possible:.2f}{u} over the last step; the learned "
                       f"stop gains {captured:+.2f}{u}, {share:.0f}% of it.")
    info = res.curves[0].get(res.method("stop"), {})
    mass = info.get("oracle_mass")
    if mass:
        mass = np.asarray(mass, dtype=float)
        out.append(f"The oracle (β = {info.get('beta')}, validation set, Stage I model) puts {100 * mass[-1]:.1f}% "
                   f"of its mass on the last step T and {100 * mass[:-1].max():.1f}% at most on any earlier step"
                   + ("; the earlier outputs are no competition for the last, so there is nothing to stop for"
                      if mass[-1] > 0.99 else "") + ".")
    mean_stop = v(res.method("stop"), "mean_stop")
    T = len(res.curves[0].get(res.method("stop"), {}).get("stop_histogram", [])) or None
    if np.isfinite(mean_stop) and T:
        out.append(f"Mean stop step {mean_stop:.2f} of T = {T}.")
    ft = v(res.method("stop_ft"))
    if np.isfinite(ft) and np.isfinite(stop):
        out.append(f"Stage III fine-tuning: {ft:.2f} vs {stop:.2f}{u} ({ft - stop:+.2f}{u}).")
    ae = v(res.method("aevb"))
    if np.isfinite(ae) and np.isfinite(stop):
        verdict = "better" if _better(ae, stop, higher) else "worse"
        out.append(f"AEVB (joint training from scratch): {ae:.2f}{u}, {verdict} than Stages I+II ({stop:.2f}{u}).")
    return out


def headline(res: TaskResults) -> str:
    """The task's answer in one sentence: does the learned stop beat the best fixed depth and the
    per-condition depth (paired, with intervals), and the verdict of :mod:`l2o.report.answer`."""
    from l2o.report.answer import gain, resolved, verdict

    unit = metric_unit(res.metric)
    u = f" {unit}" if unit else ""
    parts = []
    for what, metric in (("the best fixed depth", "diff_vs_best_depth"), ("the best depth per condition",
                                                                           "diff_vs_condition_depth")):
        g, ci = gain(res, metric)
        if not np.isfinite(g):
            continue
        word = ("beats" if g > 0 else "loses to") if resolved(g, ci) else "is not distinguishable from"
        spread = f" ± {ci:.2f}" if np.isfinite(ci) else ""
        parts.append(f"{word} {what} ({g:+.2f}{spread}{u}, positive = better)")
    word, why = verdict(res)
    if not parts:
        return f"Verdict: {word} ({why})."
    return f"The learned stop {' and '.join(parts)}: {word.upper()} ({why})."


def matched_findings(res: TaskResults) -> list[str]:
    """Question (e) at equal training: the stopping model at its last step (and with its learned
    stop) vs the matched-budget control, paired over seeds."""
    m, higher = res.metric, res.higher_is_better
    unit = metric_unit(m)
    u = f" {unit}" if unit else ""
    matched = seed_values(res.tables, res.method("matched"), metric=m)
    if not matched:
        return []
    out = []
    for what, metric in (("at its last step", f"{m}_last"), ("with its learned stop", m)):
        d, ci, n = paired_difference(seed_values(res.tables, res.method("stop"), metric=metric), matched)
        if not n:
            continue
        good = d > 0 if higher else d < 0
        if np.isfinite(ci):
            verdict = ("better" if good else "worse") if abs(d) > ci else "not distinguishable"
            spread = f"± {ci:.2f}{u}, paired 95% CI over {n} seeds"
        else:
            verdict, spread = ("better" if good else "not better"), "one seed: no CI"
        out.append(f"At equal training (same start, updates, optimiser and batches; plain loss): the stopping "
                   f"model {what} vs the matched {res.spec.display}: {d:+.2f}{u} ({spread}): "
                   f"{verdict}.")
    return out
