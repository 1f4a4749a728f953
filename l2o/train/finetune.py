"""Stage III: fine-tune model and policy together from Stages I+II (paper Table 3)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.train.common import file_digest, finish_stage, fingerprint, load_context, work_dir_for
from l2o.train.joint import train_jointly
from l2o.train.loop import OptimConfig, take_fields
from l2o.tracking import NullTracker


def run(
    *,
    data: Path,
    stop_ckpt: Path,
    out: Path,
    finetune: dict,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Fine-tune the Stage II checkpoint jointly; write a ``stopping`` checkpoint."""
    section = {k: v for k, v in finetune.items() if k != "enabled"}
    cfg = take_fields(OptimConfig, section, "config section 'finetune'")
    tracker = tracker or NullTracker()
    ctx = load_context(data, device)
    ckpt = load_checkpoint(stop_ckpt, "stopping", ctx.data_hash)
    net = build_model(ctx.task, ckpt, stop_ckpt, ctx.device)
    pol = build_policy(ckpt, stop_ckpt, ctx.device)
    work = work_dir_for(out)
    result = train_jointly(
        stage="finetune",
        ctx=ctx,
        net=net,
        policy=pol,
        candidates=ckpt["candidate_steps"],
        beta=ckpt["beta"],
        optim=cfg,
        seed=seed,
        work_dir=work,
        fingerprint=fingerprint("finetune", asdict(cfg), seed, ctx.data_hash, file_digest(stop_ckpt)),
        tracker=tracker,
        progress=progress,
    )
    finish_stage(out, stage="finetune", ctx=ctx, net=net, policy=pol, result=result, tracker=tracker,
                 config={"finetune": finetune, "seed": seed}, candidate_steps=ckpt["candidate_steps"],
                 oracle_mass=ckpt.get("oracle_mass"), beta=ckpt["beta"],
                 upstream_run_id=ckpt.get("mlflow_run_id"))
    return {"best_val_nmse_db_expected": result.best_score, "seconds": result.seconds}
