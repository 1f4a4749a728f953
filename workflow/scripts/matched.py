from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.train import matched

with snakemake_job(snakemake) as job:
    init = Path(snakemake.input.init) if "init" in snakemake.input.keys() else None
    summary = matched.run(data=Path(snakemake.input.data), init=init, out=Path(snakemake.output.model),
                          task=job.task, seed=job.seed, tracker=job.tracker, **job.params)
    job.tracker.log_metrics(summary)
