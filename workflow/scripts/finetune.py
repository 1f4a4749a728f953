from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.train import finetune

with snakemake_job(snakemake) as job:
    summary = finetune.run(data=Path(snakemake.input.data), stop_ckpt=Path(snakemake.input.model),
                           out=Path(snakemake.output.model), task=job.task, seed=job.seed, tracker=job.tracker, **job.params)
    job.tracker.log_metrics(summary)
