"""Stage III: fine-tune model and policy together from Stages I+II (paper Table 3).

The prior over steps ``p(t) ∝ exp(-lambda c_t)`` is the Stage II checkpoint's (the lambda Stage II
used, Stage I's costs), restricted to the candidate steps; it enters the joint objective as
``beta KL(q_phi || p)``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.stopping.prior import compute_log_prior, prior_from_checkpoint
from l2o.train.common import file_digest, finish_stage, fingerprint, load_task, work_dir_for
from l2o.train.joint import train_jointly
from l2o.train.loop import OptimConfig, take_fields
from l2o.tracking import NullTracker


def run(
    *,
    data: Path,
    stop_ckpt: Path,
    out: Path,
    finetune: dict,
    task: str = "sparse_recovery",
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Fine-tune the Stage II checkpoint jointly; write a ``stopping`` checkpoint."""
    section = {k: v for k, v in finetune.items() if k != "enabled"}
    cfg = take_fields(OptimConfig, section, "config section 'finetune'")
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    ckpt = load_checkpoint(stop_ckpt, "stopping", job)
    net = build_model(job, ckpt, stop_ckpt)
    pol = build_policy(job, ckpt, stop_ckpt)
    prior = prior_from_checkpoint(ckpt, net.num_steps)
    tracker.log_params({"prior": {"lambda": prior["lambda"], "cost": prior["cost"]}})
    result = train_jointly(
        stage="finetune",
        task=job,
        net=net,
        policy=pol,
        candidates=ckpt["candidate_steps"],
        beta=ckpt["beta"],
        optim=cfg,
        seed=seed,
        work_dir=work_dir_for(out),
        fingerprint=fingerprint("finetune", asdict(cfg), seed, job.data_hash, file_digest(stop_ckpt)),
        tracker=tracker,
        progress=progress,
        log_prior=compute_log_prior(prior["costs"], prior["lambda"], steps=ckpt["candidate_steps"]),
        warm_start=True,  # from Stages I+II: kept if fine-tuning never beats it
    )
    finish_stage(out, stage="finetune", task=job, net=net, policy=pol, result=result, tracker=tracker,
                 config={"finetune": finetune, "seed": seed}, candidate_steps=ckpt["candidate_steps"],
                 oracle_mass=ckpt.get("oracle_mass"), beta=ckpt["beta"], prior=prior,
                 upstream_run_id=ckpt.get("mlflow_run_id"))
    return {f"best_val_{job.metric}_expected": result.best_score, "seconds": result.seconds}
