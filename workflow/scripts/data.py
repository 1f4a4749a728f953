from pathlib import Path

from l2o.jobs import snakemake_job
from l2o.tasks.sparse_recovery.data import ProblemConfig, write_problem
from l2o.train.loop import take_fields

with snakemake_job(snakemake) as job:
    cfg = take_fields(ProblemConfig, job.params["problem"], "config section 'problem'")
    meta = write_problem(cfg, Path(snakemake.output.problem), Path(snakemake.output.meta))
    job.tracker.log_metrics({"lambda_max_AtA": meta["lambda_max_AtA"], "cond_A": meta["cond_A"]})
    job.tracker.set_tags({"data_hash": meta["hash"]})
