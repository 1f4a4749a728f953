from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.report import build_report

with snakemake_job(snakemake) as job:
    variants = job.params["config"].get("ablations", {})
    ablation_tables = {v: [Path(p) for p in snakemake.input.ablation_tables if f"/ablations/{v}/" in p]
                       for v in variants}
    build_report(
        ablations={v: {"tables": ablation_tables[v], "overrides": variants[v]} for v in variants},
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
