from pathlib import Path

from l2o.classical import run_classical
from l2o.jobs import snakemake_job

with snakemake_job(snakemake) as job:
    df = run_classical(data=Path(snakemake.input.data), out_table=Path(snakemake.output.table),
                       out_json=Path(snakemake.output.info), classical=job.params["classical"])
    mixed = df[(df.condition == "mixed") & (df.metric == "nmse_db")]
    job.tracker.log_metrics({f"test_nmse_db.{m}": v for m, v in zip(mixed.method, mixed.value)})
    job.tracker.log_artifact(Path(snakemake.output.info))
