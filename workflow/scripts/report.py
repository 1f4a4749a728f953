from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.report.build import build_report
from l2o.report.results import TaskInputs

with snakemake_job(snakemake) as job:
    config = job.params["config"]
    tasks = {}
    for task in config["tasks"]:
        files = {k.split("__", 1)[1]: v for k, v in snakemake.input.items() if k.startswith(f"{task}__")}
        variants = config[task].get("ablations", {})
        tables = [Path(p) for p in files.get("ablation_tables", [])]
        ablation_curves = [Path(p) for p in files.get("ablation_curves", [])]
        tasks[task] = TaskInputs(
            tables=[Path(p) for p in files["tables"]],
            curves=[Path(p) for p in files["curves"]],
            showcase=[Path(p) for p in files["showcase"]],
            data_meta=Path(files["data_meta"]),
            classical=Path(files["classical"]) if "classical" in files else None,
            classical_info=Path(files["classical_info"]) if "classical_info" in files else None,
            classical_showcase=Path(files["classical_showcase"]) if "classical_showcase" in files else None,
            ablations={v: {"tables": [p for p in tables if f"/ablations/{v}/" in str(p)],
                           "curves": [p for p in ablation_curves if f"/ablations/{v}/" in str(p)], "overrides": over}
                       for v, over in variants.items()},
        )
    build_report(tasks=tasks, config=config, out_summary=Path(snakemake.output.summary),
                 out_markdown=Path(snakemake.output.markdown), out_html=Path(snakemake.output.html),
                 out_plots=Path(snakemake.output.plots), tracker=job.tracker)
