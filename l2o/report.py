"""The report: seeds aggregated (mean +- 95% CI), the paper's tables beside ours,
the skeptic's questions answered, and Fig. 4-style plots.

Writes ``summary.csv`` (tidy: ``task, method, condition, metric, value,
ci95, n_seeds``; the one machine-readable result), ``report.md`` and a
self-contained ``report.html`` (plots embedded), plus PNGs in a folder.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from l2o.io import atomic_path, write_text_atomic

CONDITIONS = ["mixed", "snr20", "snr30", "snr40"]

# Paper, Tables 2 and 3 (NMSE dB: mixed / 20 / 30 / 40 dB).
PAPER = {
    "fista_t100": [-18.96, -16.75, -20.46, -20.97],
    "ista_t100": [-14.66, -13.99, -14.99, -15.07],
    "ista_t20": [-9.17, -9.12, -9.24, -9.16],
    "fista_t20": [-11.12, -10.98, -11.19, -11.19],
    "lista": [-17.53, -16.53, -18.07, -18.20],
    "lista_stop": [-22.41, -20.29, -23.90, -24.21],
    "aevb": [-21.92, -19.92, -23.27, -23.58],
    "lista_stop_ft": [-22.78, -20.59, -24.29, -24.73],
}
LABELS = {
    "lista": "LISTA", "lista_stop": "LISTA-stop (I+II)",
    "lista_stop_ft": "LISTA-stop (I+II+III)", "aevb": "AEVB", "lista_fixed_depth": "fixed depth = mean stop",
    "lista_stop_heuristic": "non-learned rule, same cost",
    "lista_matched": "LISTA, LISTA-stop's training budget",
}


def label(method: str) -> str:
    """Display name: ``fista_t100`` -> ``FISTA (T=100)``, ``ista_t20_paper`` -> ``ISTA (T=20, paper L, rho)``."""
    parts = method.split("_")
    if parts[0] in ("ista", "fista") and len(parts) >= 2:
        extra = ", paper L, ρ" if parts[-1] == "paper" else ""
        return f"{parts[0].upper()} (T={parts[1][1:]}{extra})"
    return LABELS.get(method, method)
STOPPING = ("lista_stop", "lista_stop_ft", "aevb")
MIN_POSSIBLE_GAIN_DB = 0.1  # below this the oracle gain is noise and a share of it means nothing


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
    g = df.groupby(keys, sort=False)["value"]
    out = g.agg(value="mean", sd="std", n_seeds="count").reset_index()
    out["ci95"] = [
        t_quantile_975(int(n) - 1) * sd / math.sqrt(n) if n > 1 and np.isfinite(sd) else float("nan")
        for sd, n in zip(out["sd"], out["n_seeds"])
    ]
    return out.drop(columns="sd")[keys + ["value", "ci95", "n_seeds"]]


def gain_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Share (%) of the oracle's possible gain over the last step that the policy captures, per seed."""
    rows = []
    for method in STOPPING:
        sub = table[table.method == method]
        for cond in sub.condition.unique():
            v = sub[sub.condition == cond].set_index("metric")["value"]
            if {"nmse_db", "nmse_db_last", "nmse_db_oracle"} <= set(v.index):
                possible = v["nmse_db_last"] - v["nmse_db_oracle"]
                captured = v["nmse_db_last"] - v["nmse_db"]
                rows.append({"task": sub.task.iloc[0], "method": method, "condition": cond,
                             "metric": "gain_captured_pct",
                             "value": 100.0 * captured / possible if possible > MIN_POSSIBLE_GAIN_DB else float("nan"),
                             "seed": sub.seed.iloc[0]})
    return pd.DataFrame(rows)


def _cell(summary: pd.DataFrame, method: str, cond: str, metric: str = "nmse_db") -> tuple[float, float]:
    row = summary[(summary.method == method) & (summary.condition == cond) & (summary.metric == metric)]
    if row.empty:
        return float("nan"), float("nan")
    return float(row.value.iloc[0]), float(row.ci95.iloc[0])


def _fmt(value: float, ci: float = float("nan"), digits: int = 2) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" ± {ci:.{digits}f}" if np.isfinite(ci) else "")


def paper_table(summary: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Ours (mean ± CI) | paper | difference, per condition."""
    rows = []
    for m in methods:
        if summary[summary.method == m].empty:
            continue
        row = {"method": label(m)}
        for i, cond in enumerate(CONDITIONS):
            v, ci = _cell(summary, m, cond)
            p = PAPER.get(m, [float("nan")] * 4)[i]
            row[f"{cond} ours"] = _fmt(v, ci)
            row[f"{cond} paper"] = _fmt(p)
            row[f"{cond} diff"] = _fmt(v - p) if np.isfinite(p) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def skeptic_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The same trained model read in different ways (mixed and per SNR)."""
    spec = [
        ("learned stop (π > 0.5)", "lista_stop", "nmse_db"),
        ("learned stop, sampled", "lista_stop", "nmse_db_sampled"),
        ("expected under q_φ", "lista_stop", "nmse_db_expected"),
        ("(a) last step T", "lista_stop", "nmse_db_last"),
        ("(b) fixed depth = mean stop", "lista_fixed_depth", "nmse_db"),
        ("(c) non-learned rule, same cost", "lista_stop_heuristic", "nmse_db"),
        ("(d) oracle best step (upper bound)", "lista_stop", "nmse_db_oracle"),
        ("(d) share of oracle gain captured (%)", "lista_stop", "gain_captured_pct"),
        ("(e) plain LISTA (T)", "lista", "nmse_db"),
        ("(e) LISTA, same training as Stage I but its own loss (T)", "lista_matched", "nmse_db"),
        ("mean stop step", "lista_stop", "mean_stop"),
    ]
    rows = []
    for label, method, metric in spec:
        row = {"reading": label}
        for cond in CONDITIONS:
            row[cond] = _fmt(*_cell(summary, method, cond, metric))
        rows.append(row)
    return pd.DataFrame(rows)


def matched_findings(tables: list[pd.DataFrame]) -> list[str]:
    """Question (e) at equal training: the LISTA-stop model at its last step (and with its learned
    stop) vs the matched-budget LISTA, paired over seeds."""
    matched = seed_values(tables, "lista_matched")
    if not matched:
        return []
    out = []
    for what, metric in (("at its last step", "nmse_db_last"), ("with its learned stop", "nmse_db")):
        d, ci, n = paired_difference(seed_values(tables, "lista_stop", metric=metric), matched)
        if not n:
            continue
        if np.isfinite(ci):
            verdict = ("better" if d < 0 else "worse") if abs(d) > ci else "not distinguishable"
            spread = f"± {ci:.2f} dB, paired 95% CI over {n} seeds"
        else:
            verdict, spread = ("better" if d < 0 else "not better"), "one seed: no CI"
        out.append(f"At equal training (same start, updates, optimiser and batches; plain loss): the LISTA-stop "
                   f"model {what} vs the matched LISTA: {d:+.2f} dB ({spread}): {verdict}.")
    return out


def classical_findings(summary: pd.DataFrame) -> list[str]:
    """Tuned (L, ρ) vs the paper's, per algorithm and budget: which is stronger, by how much."""
    out = []
    paper_rows = sorted(m for m in summary.method.unique() if m.endswith("_paper"))
    for paper in paper_rows:
        tuned_name = paper[: -len("_paper")]
        tuned, ours = _cell(summary, tuned_name, "mixed")[0], _cell(summary, paper, "mixed")[0]
        if np.isfinite(tuned) and np.isfinite(ours):
            if abs(tuned - ours) < 0.005:
                verdict = "as strong as"
            else:
                verdict = "stronger than" if tuned < ours else "WEAKER than"
            out.append(f"{label(tuned_name)} with (L, ρ) tuned on validation is {verdict} at the paper's "
                       f"(L, ρ): {tuned:.2f} vs {ours:.2f} dB ({tuned - ours:+.2f} dB, mixed test).")
    return out


def findings(summary: pd.DataFrame, T: int) -> list[str]:
    """Plain statements of who beats whom (mixed NMSE), computed from the table."""
    out = []

    def v(m, metric="nmse_db"):
        return _cell(summary, m, "mixed", metric)[0]

    lista = v("lista")
    for other in (f"fista_t{T}", f"ista_t{T}"):
        o = v(other)
        if np.isfinite(lista) and np.isfinite(o):
            verdict = "beats" if lista < o else "does NOT beat"
            out.append(f"LISTA (T={T}) {verdict} {label(other)}: {lista:.2f} vs {o:.2f} dB (mixed).")
    stop = v("lista_stop")
    if np.isfinite(stop) and np.isfinite(lista):
        verdict = "beats" if stop < lista else "does NOT beat"
        out.append(f"LISTA-stop {verdict} LISTA (T={T}): {stop:.2f} vs {lista:.2f} dB "
                   f"(difference {stop - lista:+.2f} dB; paper: -4.88 dB).")
    fixed, heur, last = v("lista_fixed_depth"), v("lista_stop_heuristic"), v("lista_stop", "nmse_db_last")
    if np.isfinite(stop) and np.isfinite(fixed):
        out.append(f"Against the same model at a fixed depth of the same mean cost: {stop:.2f} vs {fixed:.2f} dB "
                   f"({'the policy wins' if stop < fixed else 'the policy does not win'}); against its own last "
                   f"step: {stop:.2f} vs {last:.2f} dB; against a tuned non-learned rule: {heur:.2f} dB.")
    gain = v("lista_stop", "gain_captured_pct")
    if np.isfinite(gain):
        out.append(f"The policy captures {gain:.0f}% of the gain the oracle's best step would give over the last step.")
    ft = v("lista_stop_ft")
    if np.isfinite(ft) and np.isfinite(stop):
        out.append(f"Stage III fine-tuning: {ft:.2f} vs {stop:.2f} dB ({ft - stop:+.2f} dB; paper: -0.37 dB).")
    ae = v("aevb")
    if np.isfinite(ae) and np.isfinite(stop):
        out.append(f"AEVB (joint from scratch): {ae:.2f} dB vs Stages I+II {stop:.2f} dB (paper: AEVB worse by 0.49 dB).")
    return out


# --- ablations -----------------------------------------------------------------
ABLATION_PREFIX = "ablation/"


def ablation_rows(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """A variant's per-seed evaluation as summary rows: its ``lista_stop`` rows renamed
    ``ablation/<name>`` (the fixed-depth and rule rows of the variant are dropped)."""
    return table[table.method == "lista_stop"].assign(method=ABLATION_PREFIX + name)


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


def _overrides_text(overrides: dict) -> str:
    return ", ".join(f"{sec}.{k}={v}" for sec, over in sorted(overrides.items()) for k, v in sorted(over.items()))


def ablation_stats(main_tables: list[pd.DataFrame], ablations: dict, config: dict) -> list[dict]:
    """Numbers per variant of the stopping pipeline (and the main run's Stage III and AEVB):
    mixed and per-SNR NMSE over seeds, the paired difference to the main Stage I+II model (same
    seeds, same data), the model at its last step and at the oracle's best step, the mean stop.

    ``ablations`` maps a variant name to ``{"tables": [per-seed DataFrames], "overrides": {...}}``."""
    def setting(section, key):
        return config.get(section, {}).get(key, "default")

    main_desc = (f"stage1.loss={setting('stage1', 'loss')}, stage1.beta={setting('stage1', 'beta')}, "
                 f"stage2.loss={setting('stage2', 'loss')}")
    entries = [("main: Stages I+II", main_desc, main_tables, "lista_stop"),
               ("main + Stage III", "Stage III fine-tuning", main_tables, "lista_stop_ft"),
               ("AEVB", "joint training from scratch", main_tables, "aevb")]
    entries += [(name, _overrides_text(spec["overrides"]), spec["tables"], "lista_stop")
                for name, spec in sorted(ablations.items())]
    reference = seed_values(main_tables, "lista_stop")
    stats = []
    for i, (name, what, tables, method) in enumerate(entries):
        mixed = seed_values(tables, method)
        if not mixed:
            continue
        row = {"variant": name, "settings": what, "is_main": i == 0, "seeds": len(mixed)}
        row["mixed"], row["mixed_ci"] = mean_ci(list(mixed.values()))
        row["delta"], row["delta_ci"], _ = paired_difference(mixed, reference)
        for cond in CONDITIONS[1:]:
            row[cond] = mean_ci(list(seed_values(tables, method, cond).values()))[0]
        for metric in ("nmse_db_last", "nmse_db_oracle", "mean_stop"):
            row[metric] = mean_ci(list(seed_values(tables, method, "mixed", metric).values()))[0]
        stats.append(row)
    return stats


def ablation_table(stats: list[dict]) -> pd.DataFrame:
    """:func:`ablation_stats` as a display table."""
    return pd.DataFrame([{
        "variant": r["variant"], "settings": r["settings"], "mixed": _fmt(r["mixed"], r["mixed_ci"]),
        "Δ vs main (paired)": "–" if r["is_main"] else _fmt(r["delta"], r["delta_ci"]),
        **{c: _fmt(r[c]) for c in CONDITIONS[1:]},
        "last step": _fmt(r["nmse_db_last"]), "oracle best": _fmt(r["nmse_db_oracle"]),
        "mean stop": _fmt(r["mean_stop"]), "seeds": r["seeds"],
    } for r in stats])


def ablation_findings(stats: list[dict]) -> list[str]:
    """Which variants differ from the main model beyond their paired 95% CI."""
    out = []
    for r in stats:
        if r["is_main"] or not np.isfinite(r["delta"]):
            continue
        d, ci = r["delta"], r["delta_ci"]
        if not np.isfinite(ci):
            out.append(f"{r['variant']} ({r['settings']}): {d:+.2f} dB vs the main model (one seed: no CI).")
        elif abs(d) > ci:
            out.append(f"{r['variant']} ({r['settings']}) is {'better' if d < 0 else 'worse'} than the main "
                       f"Stages I+II model by {abs(d):.2f} dB (paired 95% CI ± {ci:.2f}, {r['seeds']} seeds).")
        else:
            out.append(f"{r['variant']} ({r['settings']}) is not distinguishable from the main model: "
                       f"{d:+.2f} ± {ci:.2f} dB (paired, {r['seeds']} seeds).")
    return out


# --- plots ---------------------------------------------------------------------
def _plots(curves: list[dict], classical_info: dict, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    first = curves[0]
    stopping = [m for m in STOPPING if m in first]

    # Fig. 4a: stop-time distribution averaged over the test set
    if stopping:
        fig, axes = plt.subplots(1, len(stopping), figsize=(4.2 * len(stopping), 3.2), squeeze=False)
        for ax, m in zip(axes[0], stopping):
            steps = first[m]["candidate_steps"]
            q = np.mean([c[m]["q_mean"] for c in curves], axis=0)
            ax.bar(steps, q, color="tab:blue", alpha=0.8, label="mean q_φ(t)")
            hist = np.mean([c[m]["stop_histogram"] for c in curves], axis=0)
            T = len(hist)
            ax.step(np.arange(1, T + 1), hist / max(hist.sum(), 1), where="mid", color="tab:red",
                    label="deterministic stops")
            ax.set_title(label(m))
            ax.set_xlabel("stop step t")
            ax.set_xlim(0.5, T + 0.5)
        axes[0][0].set_ylabel("fraction of test examples")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        paths["stop_histogram"] = out_dir / "stop_histogram.png"
        fig.savefig(paths["stop_histogram"], dpi=110)
        plt.close(fig)

        # Fig. 4b: q-weighted NMSE per step
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for m in stopping:
            steps = first[m]["candidate_steps"]
            ax.plot(steps, np.mean([c[m]["q_weighted_nmse_db"] for c in curves], axis=0), "o-", label=label(m))
        ax.set_xlabel("step t")
        ax.set_ylabel("q-weighted NMSE (dB)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths["q_weighted_nmse"] = out_dir / "q_weighted_nmse.png"
        fig.savefig(paths["q_weighted_nmse"], dpi=110)
        plt.close(fig)

    # NMSE per step of every model, with ISTA/FISTA
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, info in first.items():
        if isinstance(info, dict) and "nmse_db_per_step" in info:
            y = np.mean([c[m]["nmse_db_per_step"] for c in curves], axis=0)
            ax.plot(np.arange(1, len(y) + 1), y, label=label(m))
    for name, y in classical_info.get("curves_nmse_db", {}).items():
        if name in (f"ista_t{max(classical_info['config']['budgets'])}", f"fista_t{max(classical_info['config']['budgets'])}"):
            ax.plot(np.arange(1, len(y) + 1), y, "--", label=label(name))
    ax.set_xscale("log")
    ax.set_xlabel("step t (log scale)")
    ax.set_ylabel("test NMSE (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths["nmse_per_step"] = out_dir / "nmse_per_step.png"
    fig.savefig(paths["nmse_per_step"], dpi=110)
    plt.close(fig)

    # training curves: validation metric by iteration, first seed
    stages = [(m, info) for m, info in first.items() if isinstance(info, dict) and info.get("history")]
    if stages:
        fig, axes = plt.subplots(1, len(stages), figsize=(3.6 * len(stages), 3), squeeze=False)
        for ax, (m, info) in zip(axes[0], stages):
            hist = pd.DataFrame(info["history"])
            for col in [c for c in hist.columns if c.startswith("val_nmse_db")]:
                ax.plot(hist.iteration, hist[col], label=col.replace("val_nmse_db_", ""))
            ax.set_title(f"{label(m)} ({info['stage']})", fontsize=9)
            ax.set_xlabel("iteration")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("validation NMSE (dB)")
        fig.tight_layout()
        paths["training_curves"] = out_dir / "training_curves.png"
        fig.savefig(paths["training_curves"], dpi=110)
        plt.close(fig)
    return paths


def run_times(bench_dir: Path, curves: dict, classical_info: dict) -> pd.DataFrame:
    """Wall time (and peak memory) per job from Snakemake's ``benchmark:`` files when present,
    else the training time recorded in the checkpoints (display only: not a declared input)."""
    rows = []
    for tsv in sorted(Path(bench_dir).glob("**/*.tsv")):
        b = pd.read_csv(tsv, sep="\t")
        rows.append({"job": str(tsv.relative_to(bench_dir).with_suffix("")), "seconds": f"{b.s.iloc[-1]:.1f}",
                     "peak memory (MB)": f"{b.max_rss.iloc[-1]:.0f}" if "max_rss" in b else "–"})
    if rows:
        return pd.DataFrame(rows)
    for c in curves.values():
        if isinstance(c, dict) and c.get("train_seconds") is not None:
            rows.append({"job": c["stage"], "seconds": f"{c['train_seconds']:.1f}"})
    rows.append({"job": "classical grid search", "seconds": f"{classical_info['search_seconds']:.1f}"})
    return pd.DataFrame(rows)


# --- rendering ---------------------------------------------------------------
def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(x) for x in r.values) + " |")
    return "\n".join(lines)


def build_report(
    *,
    tables: list[Path],
    curves: list[Path],
    classical: Path,
    classical_info: Path,
    problem_meta: Path,
    out_summary: Path,
    out_markdown: Path,
    out_html: Path,
    out_plots: Path,
    config: dict,
    ablations: dict | None = None,
    tracker=None,
) -> pd.DataFrame:
    """Aggregate the seeds and write summary.csv, report.md, report.html and the plots.

    ``ablations`` maps a variant name to ``{"tables": [per-seed metrics.csv], "overrides": {...}}``."""
    import yaml

    main_tables = [pd.read_csv(p) for p in tables]
    variants = {name: {"tables": [pd.read_csv(p) for p in spec["tables"]], "overrides": spec["overrides"]}
                for name, spec in (ablations or {}).items()}
    seed_tables = main_tables + [gain_rows(t) for t in main_tables]
    seed_tables += [ablation_rows(name, t) for name, spec in variants.items() for t in spec["tables"]]
    learned = aggregate([t for t in seed_tables if not t.empty])
    classic = pd.read_csv(classical).assign(ci95=float("nan"), n_seeds=1)
    summary = pd.concat([classic, learned], ignore_index=True)
    with atomic_path(out_summary) as tmp:
        summary.to_csv(tmp, index=False)

    curve_data = [json.loads(Path(p).read_text()) for p in curves]
    info = json.loads(Path(classical_info).read_text())
    meta = json.loads(Path(problem_meta).read_text())
    plots = _plots(curve_data, info, Path(out_plots))

    stats = ablation_stats(main_tables, variants, config)
    pcfg = meta["config"]
    T = int(config["model"]["T"])
    budgets = info["config"]["budgets"]
    n_seeds = len(tables)
    settings = pd.DataFrame(
        [{"method": k, "tuned L": v["L"], "tuned ρ": v["rho"],
          "paper L": info["paper"].get(k, {}).get("L", "–"), "paper ρ": info["paper"].get(k, {}).get("rho", "–"),
          "tuned NMSE": _fmt(_cell(summary, k, "mixed")[0]),
          "paper-setting NMSE": _fmt(_cell(summary, f"{k}_paper", "mixed")[0])}
         for k, v in info["chosen"].items()]
    )
    extra = sorted({c for c in summary.condition.unique() if c not in CONDITIONS})
    gen = pd.DataFrame(
        [{"method": label(m), **{c: _fmt(*_cell(summary, m, c)) for c in extra}}
         for m in [f"{a}_t{b}" for b in budgets for a in ("ista", "fista")]
         + ["lista", "lista_matched", "lista_stop", "lista_stop_ft", "aevb"]
         if not summary[summary.method == m].empty]
    ) if extra else None
    times = run_times(Path(out_summary).resolve().parent.parent / "benchmarks", curve_data[0], info)

    sections: list[tuple[str, list]] = [
        ("Setting", [
            f"Sparse recovery, A ∈ R^{pcfg['m']}×{pcfg['n']} (cond {pcfg['cond']:g}, λmax(AᵀA) = "
            f"{meta['lambda_max_AtA']:.2f}), sparsity {pcfg['sparsity']}, SNR {pcfg['snr_db']} dB, "
            f"T = {config['model']['T']}; {n_seeds} training seed(s); test set {pcfg['n_test_per_snr']} "
            f"examples per SNR. NMSE in dB, ratio of means (the paper's definition); ± is the 95% CI "
            "over seeds (t distribution). The paper's problem is 250×500 trained for 50k-100k iterations; "
            "a different size or budget is not expected to match its numbers.",
            *([f"Stage I was warm-started from the trained LISTA: the LISTA-stop model had "
               f"{config['baseline']['iterations']} + {config['stage1']['iterations']} updates, plain LISTA "
               f"{config['baseline']['iterations']}. Plain LISTA therefore mixes the effect of the oracle "
               "objective with that of longer training"
               + ("; the matched LISTA (Stage I's start, number of updates, optimiser and training batches, "
                  "but the plain loss, and like plain LISTA kept at its best validation last-step NMSE while "
                  "Stage I keeps its best best-step NMSE) separates the two"
                  + (" (with stage1.loss: sampled, Stage I also draws its step samples from that stream, so "
                     "the batches agree only at the first step)" if config["stage1"].get("loss") == "sampled"
                     else "") + "."
                  if not summary[summary.method == "lista_matched"].empty else ".")]
              if config["stage1"].get("init") == "baseline" else []),
        ]),
        ("Findings", ["\n".join(f"- {s}" for s in findings(summary, T) + matched_findings(main_tables))]),
        ("Table 2: NMSE (dB), ours vs the paper", [paper_table(
            summary, [f"{a}_t{b}" for b in sorted(budgets, reverse=True) for a in ("fista", "ista")]
            + ["lista", "lista_matched", "lista_stop"])]),
        ("Table 3: the training stages", [paper_table(summary, ["aevb", "lista_stop", "lista_stop_ft"])]),
        ("Ablations: variants of the stopping pipeline, same seeds and data", [
            ablation_table(stats),
            "Δ is the variant minus the main Stages I+II model, seed by seed, averaged (± 95% CI over "
            "seeds); negative is better. A variant re-trains only what its overrides touch (a Stage II "
            "override re-uses the main Stage I model).",
            "\n".join(f"- {s}" for s in ablation_findings(stats)),
        ]),
        ("Is learning to stop worth it? The same trained model, read six ways", [
            skeptic_table(summary),
            "(a) stopping vs always running to T; (b) a fixed depth with the same mean cost; (c) stop when "
            "‖x_t − x_{t−1}‖/‖x_t‖ < ε, ε tuned on validation under the policy's mean cost; (d) the oracle's "
            "best step, and the share of its gain over the last step that the policy captures; (e) what "
            "Stage I's training alone gives: the LISTA-stop model at its last step vs plain LISTA.",
        ]),
        ("Honest classical baselines: (L, ρ) tuned on validation vs the paper's", [
            settings, "\n".join(f"- {s}" for s in classical_findings(summary))]),
    ]
    if gen is not None:
        sections.append(("Generalisation to SNR levels not seen in training", [gen]))
    sections += [
        ("Figures", [plots[k] for k in ("stop_histogram", "q_weighted_nmse", "nmse_per_step", "training_curves") if k in plots]),
        ("Run time per stage", [times]),
        ("Config", ["```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```"]),
    ]
    write_text_atomic(_render_md(sections, Path(out_markdown)), Path(out_markdown))
    write_text_atomic(_render_html(sections), Path(out_html))
    if tracker is not None:
        for p in [out_summary, out_markdown, out_html, *plots.values()]:
            tracker.log_artifact(p)
    return summary


def _render_md(sections, md_path: Path) -> str:
    parts = ["# l2o report: learning to stop on sparse recovery\n"]
    for title, items in sections:
        parts.append(f"## {title}\n")
        for it in items:
            if isinstance(it, pd.DataFrame):
                parts.append(_md_table(it) + "\n")
            elif isinstance(it, Path):
                rel = Path(it).resolve().relative_to(md_path.parent.resolve()) if Path(it).resolve().is_relative_to(md_path.parent.resolve()) else it
                parts.append(f"![{Path(it).stem}]({rel})\n")
            else:
                parts.append(str(it) + "\n")
    return "\n".join(parts)


def _render_html(sections) -> str:
    body = ["<h1>l2o report: learning to stop on sparse recovery</h1>"]
    for title, items in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for it in items:
            if isinstance(it, pd.DataFrame):
                body.append(it.to_html(index=False, border=0, classes="t", escape=True))
            elif isinstance(it, Path):
                data = base64.b64encode(Path(it).read_bytes()).decode()
                body.append(f'<img alt="{html.escape(it.stem)}" src="data:image/png;base64,{data}"/>')
            elif str(it).startswith("```"):
                body.append(f"<pre>{html.escape(str(it).strip('`').removeprefix('yaml'))}</pre>")
            elif str(it).startswith("- "):
                body.append("<ul>" + "".join(f"<li>{html.escape(s[2:])}</li>" for s in str(it).splitlines()) + "</ul>")
            else:
                body.append(f"<p>{html.escape(str(it))}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>l2o report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
