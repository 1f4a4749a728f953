from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.train import stage2

with snakemake_job(snakemake) as job:
    summary = stage2.run(data=Path(snakemake.input.data), model_ckpt=Path(snakemake.input.model),
                         out=Path(snakemake.output.model), task=job.task, seed=job.seed, tracker=job.tracker, **job.params)
    job.tracker.log_metrics({k: v for k, v in summary.items() if k != "candidate_steps"})
