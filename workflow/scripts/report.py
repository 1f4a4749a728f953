from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.report import build_report

with snakemake_job(snakemake) as job:
    build_report(
        tables=[Path(p) for p in snakemake.input.tables],
        curves=[Path(p) for p in snakemake.input.curves],
        classical=Path(snakemake.input.classical),
        classical_info=Path(snakemake.input.classical_info),
        problem_meta=Path(snakemake.input.problem_meta),
        out_summary=Path(snakemake.output.summary),
        out_markdown=Path(snakemake.output.markdown),
        out_html=Path(snakemake.output.html),
        out_plots=Path(snakemake.output.plots),
        config=job.params["config"],
        tracker=job.tracker,
    )
