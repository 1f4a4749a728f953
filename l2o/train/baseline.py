"""Plain LISTA, trained with deep supervision ``sum_t gamma^(T-t) l_t`` (normalised weights).

The released code uses gamma = 1: every step weighted equally. Model
selection keeps the best validation NMSE at the last step.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.models.lista import LISTAConfig
from l2o.train.common import (
    energy,
    finish_stage,
    fingerprint,
    load_context,
    make_generator,
    predictive_val_metrics,
    step_errors,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker

log = logging.getLogger("l2o")


@dataclass
class BaselineConfig(OptimConfig):
    """Config section ``baseline``: Adam settings and the deep-supervision decay gamma."""

    gamma: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")


def step_weights(T: int, gamma: float) -> torch.Tensor:
    """``gamma^(T-t)`` for t = 1..T, normalised to sum to one, (T,).

    >>> step_weights(3, 1.0)
    tensor([0.3333, 0.3333, 0.3333])
    """
    w = gamma ** torch.arange(T - 1, -1, -1, dtype=torch.float32)
    return w / w.sum()


def train_deep_supervision(stage: str, net, cfg: BaselineConfig, ctx, out: Path, *, fingerprint: str,
                           generator: torch.Generator, tracker, progress: bool):
    """Fit ``net`` (in place) with the deep-supervision loss; keep the best validation last-step NMSE.

    Shared by the baseline and the matched-budget control (:mod:`l2o.train.matched`),
    which differ only in their start, settings and random stream.
    """
    task = ctx.task
    weights = step_weights(net.num_steps, cfg.gamma).to(ctx.device)
    val = ctx.split("val")
    val_energy = energy(val)

    def loss_fn(batch):
        losses = task.step_losses(net(task.model_inputs(batch)), batch)  # (B, T)
        return (losses * weights).sum(dim=1).mean()

    return fit(
        stage=stage,
        modules={"model": net},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(cfg.batch_size, g),
        validate=lambda: predictive_val_metrics(step_errors(task, net, val), val_energy),
        score_key="val_nmse_db_last",
        work_dir=work_dir_for(out),
        fingerprint=fingerprint,
        generator=generator,
        tracker=tracker,
        progress=progress,
    )


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    baseline: dict,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train plain LISTA and write its checkpoint to ``out``; returns a summary."""
    cfg = take_fields(BaselineConfig, baseline, "config section 'baseline'")
    take_fields(LISTAConfig, {"m": 1, "n": 1, **model}, "config section 'model'")
    tracker = tracker or NullTracker()
    ctx = load_context(data, device)
    net = ctx.task.build_model(model)
    result = train_deep_supervision(
        "baseline", net, cfg, ctx, out,
        fingerprint=fingerprint("baseline", asdict(cfg), model, seed, ctx.data_hash),
        generator=make_generator(seed, "baseline"), tracker=tracker, progress=progress,
    )
    finish_stage(out, stage="baseline", ctx=ctx, net=net, result=result, tracker=tracker,
                 config={"model": model, "baseline": baseline, "seed": seed})
    return {"best_val_nmse_db_last": result.best_score, "best_iteration": result.best_iteration,
            "seconds": result.seconds}
