"""The few-shot part of the report (classification and regression): Tables 4-5's layout with the
paper's numbers beside ours, the stop step per shot count (does the policy take fewer inner
steps for fewer shots?), the skeptic's readings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report.results import TaskResults
from l2o.report.sections import figures_section, findings_section, optional_ablations, optional_tradeoff, skeptic_section
from l2o.report.stats import cell, fmt

# Paper, Table 5 (task-imbalanced) and Table 4 (balanced): accuracy %, mean ± 95% CI over 600 tasks.
PAPER = [
    ("Omniglot 20-way 1–5 shot (Table 5)", "97.96 ± 0.3", "98.45 ± 0.2"),
    ("MiniImagenet 5-way 1–10 shot (Table 5)", "57.20 ± 1.1", "60.67 ± 1.0"),
    ("Omniglot 5-way 1 shot (Table 4)", "98.7 ± 0.4", "99.62 ± 0.22"),
    ("Omniglot 5-way 5 shot (Table 4)", "99.9 ± 0.1 (the paper prints 99.1)", "99.68 ± 0.12"),
    ("Omniglot 20-way 1 shot (Table 4)", "95.8 ± 0.3", "96.05 ± 0.35"),
    ("Omniglot 20-way 5 shot (Table 4)", "98.9 ± 0.2", "98.94 ± 0.10"),
    ("MiniImagenet 5-way 1 shot (Table 4)", "48.70 ± 1.84", "49.56 ± 0.82"),
    ("MiniImagenet 5-way 5 shot (Table 4)", "63.11 ± 0.92", "63.41 ± 0.80"),
]
LABELS = {
    "maml": "MAML (T inner steps)", "maml_stop": "MAML-stop (I+II)", "maml_stop_ft": "MAML-stop (I+II+III)",
    "maml_matched": "MAML, MAML-stop's training budget", "maml_fixed_depth": "fixed steps ≈ mean stop",
    "maml_best_depth": "MAML-stop's network, best fixed steps (validation)",
    "maml_stop_heuristic": "non-learned rule, same cost", "aevb": "AEVB",
    "maml_condition_depth": "MAML-stop's network, best steps per shot count (validation)",
}


def label(method: str) -> str:
    return LABELS.get(method, method)


def shots_of(condition: str) -> int:
    """``shots5`` -> 5."""
    return int(condition.removeprefix("shots"))


def _with_ci(s: pd.DataFrame, method: str, cond: str, metric: str, reading: str = "") -> str:
    """``value ± the 95% interval over tasks`` of one cell (the paper's ±)."""
    v = cell(s, method, cond, metric + reading)[0]
    ci = cell(s, method, cond, f"{metric}_ci95{reading}")[0]
    return fmt(v, ci, digits=2 if metric == "accuracy" else 3)


def results_table(res: TaskResults) -> pd.DataFrame:
    """Methods × (all tasks and each shot count): the metric ± its 95% interval over the test tasks."""
    m, s = res.metric, res.summary
    rows = [(label("maml"), "maml", ""), (label("maml_matched"), "maml_matched", ""),
            (label("maml_best_depth"), "maml_best_depth", ""),
            (label("maml_condition_depth"), "maml_condition_depth", ""),
            (label("maml_fixed_depth"), "maml_fixed_depth", ""),
            (label("maml_stop"), "maml_stop", ""), (label("maml_stop_ft"), "maml_stop_ft", ""),
            ("MAML-stop's network, last step", "maml_stop", "_last"),
            ("honest oracle (chooses on data it is not scored on)", "maml_stop", "_oracle_honest"),
            ("optimistic oracle (chooses on what it is scored on; upper bound)", "maml_stop", "_oracle")]
    out = []
    for name, method, reading in rows:
        if s[(s.method == method) & (s.metric == m + reading)].empty:
            continue
        out.append({"method": name, **{c.replace("shots", "k = ") if c != "mixed" else "all tasks":
                                       _with_ci(s, method, c, m, reading) for c in res.conditions()}})
    return pd.DataFrame(out)


def stop_table(res: TaskResults) -> pd.DataFrame:
    """Per shot count: the learned stop, the oracle's best step, and what each gives."""
    s, m = res.summary, res.metric
    hists = _oracle_histograms(res)
    if hists and "mixed" not in hists:
        hists["mixed"] = np.sum(list(hists.values()), axis=0)
    rows = []
    chosen = res.curves[0].get("maml_stop", {}).get("condition_depths", {}) if res.curves else {}
    for cond in res.conditions():
        rows.append({"shots": "all" if cond == "mixed" else cond.removeprefix("shots"),
                     "mean stop step": fmt(cell(s, "maml_stop", cond, "mean_stop")[0]),
                     "median rule": fmt(cell(s, "maml_stop", cond, "mean_stop_median")[0]),
                     "paper's rule": fmt(cell(s, "maml_stop", cond, "mean_stop_paper")[0]),
                     "best steps for this k (validation)": str(chosen.get(cond, "–")),
                     "oracle's mean best step": fmt(_mean_step(hists[cond]) if cond in hists else float("nan")),
                     f"{m} at stop": _with_ci(s, "maml_stop", cond, m),
                     f"{m} at step T": _with_ci(s, "maml_stop", cond, m, "_last"),
                     f"{m} at the oracle's step": _with_ci(s, "maml_stop", cond, m, "_oracle")})
    return pd.DataFrame(rows)


def findings(res: TaskResults) -> list[str]:
    """Statements: MAML-stop vs MAML and vs the best fixed number of steps, and the stop step by shots."""
    s, m, higher = res.summary, res.metric, res.higher_is_better
    out = []

    def v(method, metric=m, cond="mixed"):
        return cell(s, method, cond, metric)[0]

    stop, ci = v("maml_stop"), v("maml_stop", f"{m}_ci95")
    for other, what in (("maml", "MAML with T steps"), ("maml_best_depth", "the best fixed number of steps "
                                                                           "(chosen on meta-validation)")):
        o, oci = v(other), v(other, f"{m}_ci95")
        if np.isfinite(stop) and np.isfinite(o):
            d = stop - o
            better = d > 0 if higher else d < 0
            overlap = abs(d) <= max(ci, oci) if np.isfinite(ci) and np.isfinite(oci) else True
            verdict = ("ahead of" if better else "behind") + (" (within the 95% intervals over tasks)" if overlap
                                                               else "")
            dg = 2 if m == "accuracy" else 3
            out.append(f"MAML-stop is {verdict} {what}: {fmt(stop, ci, dg)} vs {fmt(o, oci, dg)} ({d:+.{dg}f}).")
    conds = [c for c in res.conditions() if c != "mixed"]
    stops = {shots_of(c): v("maml_stop", "mean_stop", c) for c in conds}
    oracle = _oracle_mean_steps(res)
    for what, by_shots in (("Mean stop step", stops), ("The oracle's mean best step (Stage I network)", oracle)):
        statement = trend_statement(what, by_shots)
        if statement:
            out.append(statement)
    medians = {name: v(method, "mse_task_median" + reading) for name, method, reading in (
        ("MAML", "maml", ""), ("MAML-stop", "maml_stop", ""), ("MAML-stop's network at step T", "maml_stop", "_last"),
        ("the honest oracle", "maml_stop", "_oracle_honest"))}
    if any(np.isfinite(x) for x in medians.values()):
        out.append("Median over the test tasks (robust to a task that blew up): "
                   + ", ".join(f"{k} {x:.3f}" for k, x in medians.items() if np.isfinite(x)) + ".")
    out.append(divergence_finding(v))
    return out


def trend_statement(what: str, by_shots: dict[int, float], min_range: float = 0.5) -> str | None:
    """``what`` per shot count and its direction: a least-squares slope, and 'the same' when the
    values span less than ``min_range`` steps (None with fewer than two shot counts).

    >>> trend_statement("Stop", {1: 9.9, 5: 10.0})
    'Stop by shots: k = 1: 9.90, k = 5: 10.00 — about the same number of steps whatever the shots.'
    """
    by_shots = {k: x for k, x in by_shots.items() if np.isfinite(x)}
    if len(by_shots) < 2:
        return None
    ks = np.array(sorted(by_shots))
    ys = np.array([by_shots[k] for k in ks])
    if np.ptp(ys) < min_range:
        verdict = "about the same number of steps whatever the shots"
    elif np.polyfit(ks, ys, 1)[0] > 0:
        verdict = "more steps for more shots, as 'tasks with less data prefer fewer steps' predicts"
    else:
        verdict = "FEWER steps for more shots, the opposite of 'tasks with less data prefer fewer steps'"
    return f"{what} by shots: " + ", ".join(f"k = {k}: {by_shots[k]:.2f}" for k in ks) + f" — {verdict}."


def _oracle_histograms(res: TaskResults) -> dict[str, np.ndarray]:
    """Condition -> the histogram (T,) of the oracle's best step of MAML-stop's network (seed 0)."""
    hists = res.curves[0].get("maml_stop", {}).get("oracle_histogram_by_condition", {}) if res.curves else {}
    return {c: np.asarray(h, dtype=float) for c, h in hists.items()}


def _mean_step(hist: np.ndarray) -> float:
    """Mean 1-based step of a histogram over steps (T,)."""
    return float((hist * np.arange(1, len(hist) + 1)).sum() / max(hist.sum(), 1.0))


def _oracle_mean_steps(res: TaskResults) -> dict[int, float]:
    """Shot count -> the oracle's mean best step of MAML-stop's network on the test tasks."""
    return {shots_of(c): _mean_step(h) for c, h in _oracle_histograms(res).items() if c.startswith("shots")}


def divergence_finding(v) -> str:
    """How many test tasks' inner loops blew up (their exploding step rejected, the parameters kept);
    ``v(method, metric)`` reads the summary's mixed cell."""
    readings = {"MAML, by step T": v("maml", "diverged_pct"),
                "MAML-stop's network, by step T": v("maml_stop", "diverged_pct_last"),
                "by its stop": v("maml_stop", "diverged_pct")}
    readings = {k: x for k, x in readings.items() if np.isfinite(x)}
    if not readings:
        return "Whether an inner loop blew up was not recorded in this evaluation."
    if not any(x > 0 for x in readings.values()):
        return "No test task's inner loop blew up."
    return ("Test tasks whose inner SGD blew up (the exploding step rejected: the task keeps its parameters, as a "
            "safeguarded SGD would): " + "; ".join(f"{k} {x:.1f}%" for k, x in readings.items()) + ".")


def setting_text(res: TaskResults) -> list[str]:
    cfg, meta = res.config, res.data_meta
    d, model = meta["config"], cfg["model"]
    n_test = d.get("test_tasks")
    if res.name == "few_shot_classification":
        source = {"glyphs": "characters rendered from the fonts matplotlib ships, meta-train / meta-val / meta-test "
                            "split by script (a stand-in for Omniglot: many classes, few printed instances each)",
                  "omniglot": f"Omniglot from {d.get('root')}", "miniimagenet": f"MiniImagenet from {d.get('root')}"}
        classes = meta.get("classes", {})
        what = (f"{d['ways']}-way {d['shots'][0]}–{d['shots'][1]}-shot classification ({d['query_shots']} query "
                f"per class) on {source[d['source']]}; classes per split {classes}; images {d['image_size']} px")
    else:
        what = (f"{d['family']} regression, {d['shots'][0]}–{d['shots'][1]} support points per task, "
                f"{d['query_points']} noisy query points (noise sd {d.get('noise_std')}); the metric is each task's "
                f"noise-free error on {d.get('clean_points', 200)} points of its true function (the 10 noisy points "
                "measure a fit too coarsely to resolve what stopping changes), the paper's noisy query MSE beside it")
    return [
        f"{what}. One shot count per task, drawn uniformly (the released sampler). MAML: "
        f"{model['num_steps']} inner SGD steps, inner lr {model['inner_lr']}, "
        f"{'first' if model.get('first_order') else 'second'}-order; the states are the adapted parameters after "
        f"each step (no 'stop before adapting'). Budget: MAML {cfg['baseline']['iterations']} meta-iterations of "
        f"{cfg['baseline']['batch_size']} tasks (query loss after step T), Stage I {cfg['stage1']['iterations']} "
        f"({cfg['stage1']['loss']}, β = {cfg['stage1']['beta']}, from {cfg['stage1']['init']}), Stage II "
        f"{cfg['stage2']['iterations']}. {n_test} meta-test tasks; ± is the 95% interval over them "
        f"(1.96 sd/√n, the paper's), {res.n_seeds} training seed(s).",
    ]


def sections(res: TaskResults) -> list[tuple[str, list]]:
    m = res.metric
    paper = pd.DataFrame([{"setting": a, "MAML": b, "MAML-stop": c} for a, b, c in PAPER]) \
        if res.name == "few_shot_classification" else None
    ylabel = "query accuracy (%)" if m == "accuracy" else "noise-free MSE"
    what = "Query accuracy" if m == "accuracy" else "Noise-free MSE (each task's true function on a grid)"
    return [
        ("Setting", setting_text(res)),
        findings_section(res, findings(res)),
        *optional_tradeoff(res),
        (f"{what} by shot count (± 95% interval over the meta-test tasks)", [results_table(res)]),
        *([("The paper's numbers (Omniglot / MiniImagenet; not comparable to a stand-in or another size)",
            [paper])] if paper is not None else []),
        ("How many inner steps? Per shot count", [stop_table(res)]),
        *optional_ablations(res),
        skeptic_section(res),
        figures_section(res, label, ylabel, condition="support shots per class" if m == "accuracy" else "support points",
                        condition_label=lambda c: c.removeprefix("shots")),
    ]
