"""The report's answer to "what does stopping buy?": accuracy against compute for every task.

One plot per task with a panel per condition (metric against mean steps computed), one
against measured wall time per example, a headline table (compute saved at the full-depth
model's accuracy, accuracy gained at equal mean compute, each mean ± 95% CI over seeds), plain
findings, and every point as ``summary.csv`` rows (:func:`summary_rows`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report.results import TaskResults
from l2o.report.stats import fmt, mean_ci
from l2o.report.tradeoff_points import (
    CURVES,
    POINT_COLUMNS,
    capped_rows,
    depth_points,
    headline_per_seed,
    mean_points,
    oracle_points,
    pareto_mask,
    rule_points,
    stopping_points,
    classical_points,
)

STYLE = {"learned stop": ("tab:red", "o", "-"), "learned stop (sampled)": ("tab:orange", "v", ":"),
         "learned stop + Stage III": ("tab:purple", "D", ""), "AEVB": ("tab:brown", "x", ""),
         "fixed depth": ("tab:blue", ".", "-"), "plain model, fixed depth": ("tab:cyan", ".", "--"),
         "non-learned rule": ("tab:green", "s", "-"), "classical": ("tab:gray", "^", "-"),
         "oracle": ("black", "*", "")}


def prior_lambda(info: dict, config: dict) -> float:
    """The λ a stopping model was trained with (its checkpoint's, else the config's, else 0)."""
    prior = info.get("prior") or {}
    if "lambda" in prior:
        return float(prior["lambda"])
    for section in ("stage2", "stage1"):
        lam = (config.get(section) or {}).get("prior_lambda")
        if lam is not None:
            return float(lam)
    return 0.0


def _variant_lambda(overrides: dict) -> float | None:
    for section in ("stage2", "stage1"):
        lam = (overrides.get(section) or {}).get("prior_lambda")
        if lam is not None:
            return float(lam)
    return None


def gather_points(res: TaskResults) -> pd.DataFrame:
    """Every curve's points for every seed (:data:`l2o.report.tradeoff_points.POINT_COLUMNS`)."""
    m, stop, base = res.metric, res.method("stop"), res.method("baseline")
    rows: list[dict] = []
    for table, curves in zip(res.tables, res.curves):
        seed = int(table.seed.iloc[0])
        if stop not in curves:
            continue
        info = curves[stop]
        rows += stopping_points(table, info, stop, m, seed, f"λ={prior_lambda(info, res.config):g} (main)",
                                "learned stop")
        rows += capped_rows(info, stop, seed)
        rows += depth_points(info, stop, seed, "fixed depth")
        rows += rule_points(info, stop, seed)
        rows += oracle_points(table, info, stop, m, seed)
        if base in curves:
            T = len(curves[base].get("depth_seconds") or [])
            trained_last_only = (res.spec.step_outputs_are_heads
                                 and float((res.config.get("baseline") or {}).get("gamma", 1.0)) == 0.0)
            rows += depth_points(curves[base], base, seed, "plain model, fixed depth",
                                 [T] if trained_last_only and T else None)
        for role, curve in (("stop_ft", "learned stop + Stage III"), ("aevb", "AEVB")):
            method = res.method(role)
            if method in curves:
                rows += stopping_points(table, curves[method], method, m, seed,
                                        f"λ={prior_lambda(curves[method], res.config):g}", curve, sampled=False)
    for name, variant in sorted(res.ablations.items()):
        lam = _variant_lambda(variant.get("overrides", {}))
        if lam is None:
            continue
        for table, curves in zip(variant["tables"], variant.get("curves", [])):
            if stop in curves:
                rows += stopping_points(table, curves[stop], stop, m, int(table.seed.iloc[0]),
                                        f"λ={lam:g} ({name})", "learned stop")
    rows += classical_points(res.classical_table, m)
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


TRADEOFF_PREFIX = "tradeoff/"


def summary_rows(res: TaskResults, points: pd.DataFrame) -> pd.DataFrame:
    """The points averaged over seeds as ``summary.csv`` rows (task, method, condition, metric,
    value, ci95, n_seeds) with the curve, the setting and both compute measures. Their method is
    ``tradeoff/<method>``, so they never mix with a method's own rows; (curve, setting) tell the
    points of one method apart."""
    mp = mean_points(points)
    if mp.empty:
        return mp
    return pd.DataFrame({"task": res.name, "method": TRADEOFF_PREFIX + mp.method, "condition": mp.condition, "metric": res.metric,
                         "value": mp.value, "ci95": mp.ci95, "n_seeds": mp.n_seeds, "curve": mp.curve,
                         "setting": mp.setting, "mean_steps": mp.steps, "seconds_per_example": mp.seconds,
                         "seconds_measured": mp.seconds_measured})


def headline_table(res: TaskResults, points: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per condition, mean ± 95% CI over seeds of the headline numbers; also the raw means."""
    T = _num_steps(res)
    per_seed = headline_per_seed(points, res.method("stop"), T, res.higher_is_better)
    if per_seed.empty:
        return pd.DataFrame(), {}
    unit = _unit(res.metric)
    rows, raw = [], {}
    for cond, g in per_seed.groupby("condition", sort=False):
        cells = {k: mean_ci(list(g[k].dropna())) + (int(g[k].notna().sum()),) for k in
                 ("full_depth", "stop", "stop_steps", "saved_learned", "saved_fixed", "gain_vs_fixed", "gain_vs_rule")}
        raw[cond] = {**cells, "seeds": len(g), "T": T,
                     "stop_seconds": float(g.stop_seconds.mean()), "full_seconds": float(g.full_seconds.mean())}

        def show(key, digits=2):
            mean, ci, n = cells[key]
            if n == 0:
                return "not reached" if key.startswith("saved") else "–"
            text = fmt(mean, ci, digits)
            return text + (f" ({n}/{len(g)} seeds)" if n < len(g) else "")

        rows.append({"condition": cond, f"same {res.spec.display} at step T": show("full_depth"),
                     "learned stop": show("stop"), "its mean steps": show("stop_steps"),
                     "steps saved at step T's metric: learned stop": show("saved_learned"),
                     "fixed depth": show("saved_fixed"),
                     f"gain at equal mean steps ({unit}) vs fixed depth": show("gain_vs_fixed"),
                     "vs non-learned rule": show("gain_vs_rule")})
    return pd.DataFrame(rows), raw


def _unit(metric: str) -> str:
    from l2o.report.skeptic import metric_unit

    return metric_unit(metric) or metric


def _num_steps(res: TaskResults) -> int:
    info = res.curves[0].get(res.method("stop"), {})
    return len(info.get("per_step_by_condition", {}).get("mixed", [])) or len(info.get("stop_histogram", []))


def findings(res: TaskResults, raw: dict) -> list[str]:
    """Plain statements from the headline numbers (mixed condition, then conditions that differ)."""
    if "mixed" not in raw:
        return ["No accuracy-vs-compute numbers: the evaluation has no per-step timings (re-run it)."]
    r, unit, m = raw["mixed"], _unit(res.metric), res.metric
    T = r["T"]
    out = []
    saved, ci, n = r["saved_learned"]
    ci_text = f" ± {ci:.2f}" if np.isfinite(ci) else " (one seed: no CI)" if r["seeds"] == 1 else ""
    if n == 0 or saved <= 1e-9:
        out.append(f"No saving: no learned-stop point reaches the {m} of the same network at step T "
                   f"({r['full_depth'][0]:.2f}) with fewer than T = {T} steps on average.")
    else:
        out.append(f"At the {m} of the same network at step T ({r['full_depth'][0]:.2f}), the learned stop saves "
                   f"{saved:.2f}{ci_text} of T = {T} steps per example ({100 * saved / T:.0f}%).")
    fixed, fci, fn = r["saved_fixed"]
    if fn and fixed > 1e-9:
        out.append(f"A fixed depth saves {fixed:.2f} steps at that {m} too (an earlier step is as good as the "
                   "last): that saving needs no policy.")
    gain, gci, gn = r["gain_vs_fixed"]
    steps = r["stop_steps"][0]
    if gn:
        sure = ("within noise" if np.isfinite(gci) and abs(gain) <= gci else
                "one seed: no CI" if not np.isfinite(gci) else "beyond the 95% CI")
        if abs(gain) < 0.005:
            out.append(f"At its own mean cost ({steps:.2f} steps) the learned stop equals the best fixed depth "
                       f"of the same network within that cost ({sure}).")
        else:
            word = "better" if gain > 0 else "worse"
            out.append(f"At its own mean cost ({steps:.2f} steps) the learned stop is {abs(gain):.2f} {unit} {word} "
                       f"than the best fixed depth of the same network within that cost ({sure}).")
    rule, rci, rn = r["gain_vs_rule"]
    if rn:
        out.append(f"Against the non-learned rule within the same mean steps: {rule:+.2f} {unit} (positive = the "
                   "learned stop is better).")
    if np.isfinite(r["stop_seconds"]) and np.isfinite(r["full_seconds"]) and r["full_seconds"] > 0:
        ratio = r["stop_seconds"] / r["full_seconds"]
        ideal = T / r["stop_steps"][0]
        out.append(f"Wall time with real early exit: {1e3 * r['stop_seconds']:.3g} ms per example against "
                   f"{1e3 * r['full_seconds']:.3g} ms for the plain model run to T: {1 / ratio:.2f}× as fast, "
                   f"against an ideal of {ideal:.2f}× (T / mean stop; {100 / ratio / ideal:.0f}% of it).")
    for cond, rc in raw.items():
        if cond == "mixed" or not rc["saved_learned"][2]:
            continue
        s = rc["saved_learned"][0]
        if s > 0.5:
            out.append(f"{cond}: the learned stop saves {s:.2f} steps at step T's {m}.")
    return out


def _style(curve: str) -> tuple[str, str, str]:
    return STYLE.get(curve, ("tab:olive", "o", "-"))


def plot_steps(res: TaskResults, mp: pd.DataFrame):
    """Metric against mean steps, one panel per condition; the Pareto front dashed in black."""
    from l2o.report.plots import pyplot, save

    conds = [c for c in res.conditions() if c in set(mp.condition)]
    if not conds:
        return None
    plt = pyplot()
    cols = min(len(conds), 3)
    nrows = -(-len(conds) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
    for ax, cond in zip(axes.flat, conds):
        sub = mp[(mp.condition == cond) & np.isfinite(mp.steps)]
        _draw(ax, sub, "steps", res.higher_is_better)
        if len(sub) and sub.steps.max() > 3 * max(_num_steps(res), 1):
            ax.set_xscale("log")  # classical budgets far past T
        ax.set_title(cond)
        ax.set_xlabel("mean steps computed per example")
        ax.set_ylabel(res.metric)
    for ax in list(axes.flat)[len(conds):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    return save(fig, res.plots_dir / f"{res.name}_accuracy_vs_steps.png")


def plot_seconds(res: TaskResults, mp: pd.DataFrame):
    """Metric against wall seconds per example (all examples), log x; hollow markers = seconds read
    off the fixed-depth timings rather than measured for that method."""
    from l2o.report.plots import pyplot, save

    sub = mp[(mp.condition == "mixed") & np.isfinite(mp.seconds) & (mp.seconds > 0)]  # no zero on a log axis
    if sub.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw(ax, sub, "seconds", res.higher_is_better)
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds per example (2-core CPU unless stated)")
    ax.set_ylabel(res.metric)
    ax.set_title("all examples")
    ax.legend(fontsize=7, loc="best")
    return save(fig, res.plots_dir / f"{res.name}_accuracy_vs_seconds.png")


CLASSICAL_COLORS = ("tab:gray", "tab:olive", "tab:pink", "darkgoldenrod")


def _draw(ax, sub: pd.DataFrame, x: str, higher_is_better: bool):
    for curve in CURVES:
        for i, (method, g) in enumerate(sub[sub.curve == curve].groupby("method", sort=True)):
            g = g.sort_values(x)
            color, marker, line = _style(curve)
            if curve == "classical":
                color = CLASSICAL_COLORS[i % len(CLASSICAL_COLORS)]
            label = curve if curve in ("learned stop", "learned stop (sampled)", "oracle", "non-learned rule",
                                       "fixed depth") else f"{curve}: {method}"
            ax.plot(g[x], g.value, marker=marker, linestyle=line or "none", color=color, label=label, ms=5,
                    mfc=color if g.seconds_measured.all() or x == "steps" else "none")
    ach = sub[sub.curve != "oracle"]
    if len(ach) > 1:
        front = ach[pareto_mask(ach[x].to_numpy(), ach.value.to_numpy(), higher_is_better)].sort_values(x)
        ax.plot(front[x], front.value, color="black", linestyle="--", linewidth=0.8, label="Pareto front")


def tradeoff_section(res: TaskResults) -> tuple[str, list] | None:
    """The report section (None when the evaluation has no stopping model)."""
    points = gather_points(res)
    if points.empty:
        return None
    mp = mean_points(points)
    table, raw = headline_table(res, points)
    figs = [f for f in (plot_steps(res, mp), plot_seconds(res, mp)) if f is not None]
    note = ("Each curve is a way to spend compute on the test set: the learned stop (its rule's threshold, the "
            "thresholds tuned on validation under caps on the mean stop step, and each prior strength λ of an "
            "overlay's sweep, p(t) ∝ exp(−λ·c_t); sampled stops too), the same network truncated at each fixed depth, "
            "the plain model likewise, the non-learned rule (stop when the state's relative change falls below ε) "
            "over thresholds, the classical methods at each budget, and the oracle's best step (needs the label: "
            "a ceiling). Steps saved: T minus the mean steps at which the curve first reaches the network's "
            "step-T metric (linear between its Pareto points; 'not reached' when it never does). Gains: the learned stop against the best "
            "the other curve does with at most its mean steps (its Pareto front, linear between points; positive = "
            "better). Mean ± 95% CI "
            "over seeds. Wall time: the first evaluate.timing_examples test examples; the learned stop with real "
            "early exit (the policy's cost included), each fixed depth computing that step alone (depth T is the plain "
            "model run to T, the baseline of every speed-up here and in bench/); the rule's and the oracle's seconds "
            "are read off the fixed-depth timings (hollow markers). Every point is a summary.csv row (column curve).")
    body = [table if not table.empty else "No headline numbers (no full-depth point).", note,
            "\n".join(f"- {s}" for s in findings(res, raw)), *figs]
    return ("What does stopping buy? Accuracy against compute", body)
