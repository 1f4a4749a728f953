from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.tasks.registry import task_classical

with snakemake_job(snakemake) as job:
    run_classical = task_classical(job.task)
    df = run_classical(data=Path(snakemake.input.data), out_table=Path(snakemake.output.table),
                       out_json=Path(snakemake.output.info), out_showcase=Path(snakemake.output.showcase),
                       classical=job.params["classical"])
    mixed = df[df.condition == "mixed"]
    job.tracker.log_metrics({f"test.{m}.{k}": v for m, k, v in zip(mixed.method, mixed.metric, mixed.value)})
    job.tracker.log_artifact(Path(snakemake.output.info))
