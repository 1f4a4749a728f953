"""The report: every task's results aggregated over seeds, one ``summary.csv``, and a
Markdown and a self-contained HTML page with a part per task."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from l2o.io import atomic_path, write_text_atomic
from l2o.report.answer import answer_section
from l2o.report.render import render_html, render_markdown
from l2o.report.results import TaskInputs, load_task_results
from l2o.report.sections import (
    figures_section,
    findings_section,
    optional_ablations,
    optional_tradeoff,
    run_times,
    skeptic_section,
)
from l2o.report.tradeoff import gather_points, summary_rows
from l2o.tasks.registry import task_spec

TITLE = "l2o report: learning to stop while learning to predict"


def generic_sections(res) -> list:
    """The report part of a task without a report module of its own."""
    return [findings_section(res), *optional_tradeoff(res), skeptic_section(res), *optional_ablations(res),
            figures_section(res, str, res.metric, condition="condition")]


def build_report(
    *,
    tasks: dict[str, TaskInputs],
    config: dict,
    out_summary: Path,
    out_markdown: Path,
    out_html: Path,
    out_plots: Path,
    bench_dir: Path | None = None,
    tracker=None,
) -> pd.DataFrame:
    """Aggregate each task's seeds and write summary.csv, report.md, report.html and the plots.

    :param tasks: ``{task name: its files}`` in report order.
    :param config: the run's config (each task's section is shown and used for labels).
    """
    import yaml

    out_plots = Path(out_plots)
    out_plots.mkdir(parents=True, exist_ok=True)
    bench_dir = Path(bench_dir) if bench_dir else Path(out_summary).resolve().parent.parent / "benchmarks"
    results = [load_task_results(task_spec(name), inputs, config.get(name, {}), out_plots, bench_dir)
               for name, inputs in tasks.items()]
    summary = pd.concat([r.summary for r in results] + [summary_rows(r, gather_points(r)) for r in results],
                        ignore_index=True)
    with atomic_path(out_summary) as tmp:
        summary.to_csv(tmp, index=False)

    parts = [(None, [answer_section(results)])]
    for res in results:
        module = importlib.import_module(res.spec.report) if res.spec.report else None
        parts.append((res.spec.title, module.sections(res) if module else generic_sections(res)))
    parts.append(("The run", [("Run time per job", [run_times(bench_dir, results)]),
                              ("Config", ["```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```"])]))
    write_text_atomic(render_markdown(TITLE, parts, Path(out_markdown)), Path(out_markdown))
    write_text_atomic(render_html(TITLE, parts), Path(out_html))
    if tracker is not None:
        for p in [out_summary, out_markdown, out_html, *sorted(out_plots.glob("*.png"))]:
            tracker.log_artifact(p)
    return summary
