from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.tasks.registry import task_class

with snakemake_job(snakemake) as job:
    meta = task_class(job.task).prepare_data(job.params["data"], Path(snakemake.output.data))
    job.tracker.set_tags({"data_hash": meta["hash"]})
    job.tracker.log_metrics({k: v for k, v in meta.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
