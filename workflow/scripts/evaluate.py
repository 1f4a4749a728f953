from pathlib import Path

from l2o.jobs import log_evaluation, snakemake_job
from l2o.evaluate import run_models

METHODS = ("lista", "lista_matched", "lista_stop", "lista_stop_ft", "aevb")

with snakemake_job(snakemake) as job:
    checkpoints = {m: Path(snakemake.input[m]) for m in METHODS if m in snakemake.input.keys()}
    df = run_models(data=Path(snakemake.input.data), checkpoints=checkpoints,
                    out_table=Path(snakemake.output.table), out_json=Path(snakemake.output.curves),
                    seed=job.seed, sample_seed=job.params["evaluate"]["sample_seed"])
    log_evaluation(job.tracker, df, Path(snakemake.output.curves))
