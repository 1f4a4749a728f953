from pathlib import Path

from l2o.evaluate import ROLES, run_models
from l2o.jobs import log_evaluation, snakemake_job

with snakemake_job(snakemake) as job:
    checkpoints = {r: Path(snakemake.input[r]) for r in ROLES if r in snakemake.input.keys()}
    df = run_models(task=job.task, data=Path(snakemake.input.data), checkpoints=checkpoints,
                    out_table=Path(snakemake.output.table), out_json=Path(snakemake.output.curves),
                    out_showcase=Path(snakemake.output.showcase), seed=job.seed,
                    sample_seed=job.params["evaluate"]["sample_seed"],
                    timing_examples=job.params["evaluate"].get("timing_examples", 256),
                    timing_repeats=job.params["evaluate"].get("timing_repeats", 3),
                    equal_cost_baselines="variant" not in snakemake.wildcards.keys())
    log_evaluation(job.tracker, df, Path(snakemake.output.curves))
