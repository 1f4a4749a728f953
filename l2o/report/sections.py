"""Report sections every task can use: findings, the skeptic's table, ablations, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from l2o.report import plots
from l2o.report.ablations import ablation_section
from l2o.report.results import TaskResults
from l2o.report.skeptic import matched_findings, skeptic_note, skeptic_table, stopping_findings


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {s}" for s in lines)


def findings_section(res: TaskResults, first: list[str] | None = None) -> tuple[str, list]:
    """Plain statements: the task's own (``first``), then the stopping and matched-control findings."""
    return ("Findings", [bullets((first or []) + stopping_findings(res) + matched_findings(res))])


def skeptic_section(res: TaskResults) -> tuple[str, list]:
    return ("Is learning to stop worth it? The same trained model, read several ways",
            [skeptic_table(res), skeptic_note(res)])


def figures_section(res: TaskResults, label: Callable[[str], str], ylabel: str, *, condition: str,
                    extra_curves: dict | None = None, log_x: bool = False, more: list[Path] = (),
                    condition_label: Callable[[str], str] = str) -> tuple[str, list]:
    """Fig. 4-style plots (stop histogram, q-weighted metric), the metric per step, the stop step
    per condition, training curves (+ ``more`` figures of the task's own)."""
    figs = [plots.stop_histogram(res, label), plots.q_weighted(res, label, ylabel),
            plots.per_step(res, label, ylabel, extra_curves, log_x),
            plots.stop_by_condition(res, label, condition, condition_label), *more, plots.training_curves(res, label, ylabel)]
    return ("Figures", [f for f in figs if f is not None])


def optional_ablations(res: TaskResults) -> list[tuple[str, list]]:
    section = ablation_section(res)
    return [section] if section else []


def optional_tradeoff(res: TaskResults) -> list[tuple[str, list]]:
    from l2o.report.tradeoff import tradeoff_section

    section = tradeoff_section(res)
    return [section] if section else []


def run_times(bench_dir: Path, results: list[TaskResults]) -> pd.DataFrame:
    """Wall time (and peak memory) per job from Snakemake's ``benchmark:`` files when present,
    else the training time recorded in the checkpoints (display only: not a declared input)."""
    rows = []
    for tsv in sorted(Path(bench_dir).glob("**/*.tsv")) if bench_dir else []:
        b = pd.read_csv(tsv, sep="\t")
        rows.append({"job": str(tsv.relative_to(bench_dir).with_suffix("")), "seconds": f"{b.s.iloc[-1]:.1f}",
                     "peak memory (MB)": f"{b.max_rss.iloc[-1]:.0f}" if "max_rss" in b else "–"})
    if rows:
        return pd.DataFrame(rows)
    for res in results:
        for c in res.curves[0].values():
            if isinstance(c, dict) and c.get("train_seconds") is not None:
                rows.append({"job": f"{res.name}/{c['stage']}", "seconds": f"{c['train_seconds']:.1f}"})
    return pd.DataFrame(rows)
