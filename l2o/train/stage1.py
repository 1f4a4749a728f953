"""Stage I: train the predictive model against the oracle (the soft-min over steps).

From scratch (the paper: LISTA at its ISTA initialisation) or warm-started
from the trained LISTA baseline. Model selection keeps the best validation
best-step NMSE, as the released code does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from l2o.models.lista import LISTAConfig
from l2o.stopping.objectives import STAGE1_LOSSES, stage1_loss
from l2o.stopping.oracle import check_beta
from l2o.train.common import (
    energy,
    file_digest,
    finish_stage,
    fingerprint,
    load_context,
    load_initial_model,
    make_generator,
    predictive_val_metrics,
    step_errors,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker

INITS = ("scratch", "baseline")


@dataclass
class Stage1Config(OptimConfig):
    """Config section ``stage1``."""

    loss: str = "full"
    beta: float = 0.28
    init: str = "scratch"

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in STAGE1_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {STAGE1_LOSSES}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {INITS}")
        check_beta(self.beta)


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    stage1: dict,
    init: Path | None = None,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the predictive model with the oracle loss; write a ``predictive`` checkpoint."""
    cfg = take_fields(Stage1Config, stage1, "config section 'stage1'")
    take_fields(LISTAConfig, {"m": 1, "n": 1, **model}, "config section 'model'")
    tracker = tracker or NullTracker()
    ctx = load_context(data, device)
    task = ctx.task
    init_hash = None
    if cfg.init == "baseline":
        if init is None:
            raise ValueError("stage1.init is 'baseline' but no baseline checkpoint was given (--init)")
        net = load_initial_model(task, init, model, ctx.data_hash, ctx.device, what="baseline checkpoint")
        init_hash = file_digest(init)
    else:
        net = task.build_model(model)
    val = ctx.split("val")
    val_energy = energy(val)
    gen = make_generator(seed, "stage1")

    def loss_fn(batch):
        losses = task.step_losses(net(task.model_inputs(batch)), batch)
        return stage1_loss(cfg.loss, losses, cfg.beta, generator=gen)

    work = work_dir_for(out)
    result = fit(
        stage="stage1",
        modules={"model": net},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(cfg.batch_size, g),
        validate=lambda: predictive_val_metrics(step_errors(task, net, val), val_energy),
        score_key="val_nmse_db_best_step",
        work_dir=work,
        fingerprint=fingerprint("stage1", asdict(cfg), model, seed, ctx.data_hash, init_hash),
        generator=gen,
        tracker=tracker,
        progress=progress,
    )
    finish_stage(out, stage="stage1", ctx=ctx, net=net, result=result, tracker=tracker,
                 config={"model": model, "stage1": stage1, "seed": seed}, beta=cfg.beta)
    return {"best_val_nmse_db_best_step": result.best_score, "best_iteration": result.best_iteration,
            "seconds": result.seconds}
