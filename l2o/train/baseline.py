"""The predictive model alone, trained with deep supervision ``sum_t gamma^(T-t) l_t``
(normalised weights): plain LISTA, plain DnCNN, ...

The released LISTA code uses gamma = 1 (every step weighted equally); the
plain DnCNN is trained on its last output only, gamma = 0 (then only the last
step is computed). Model selection keeps the best validation metric at the
last step.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.train.common import (
    collect,
    finish_stage,
    fingerprint,
    load_task,
    make_generator,
    predictive_val_metrics,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker

log = logging.getLogger("l2o")


@dataclass
class BaselineConfig(OptimConfig):
    """Config section ``baseline``: Adam settings and the deep-supervision decay gamma
    (0: the last step only)."""

    gamma: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


def step_weights(T: int, gamma: float) -> torch.Tensor:
    """``gamma^(T-t)`` for t = 1..T, normalised to sum to one, (T,); gamma = 0 keeps the last step.

    >>> step_weights(3, 1.0)
    tensor([0.3333, 0.3333, 0.3333])
    >>> step_weights(3, 0.0)
    tensor([0., 0., 1.])
    """
    w = gamma ** torch.arange(T - 1, -1, -1, dtype=torch.float32)
    return w / w.sum()


def train_deep_supervision(stage: str, net, cfg: BaselineConfig, task, out: Path, *, fingerprint: str,
                           generator: torch.Generator, tracker, progress: bool, warm_start: bool = False):
    """Fit ``net`` (in place) with the deep-supervision loss; keep the best validation last-step metric.

    Shared by the baseline and the matched-budget control (:mod:`l2o.train.matched`),
    which differ only in their start, settings and random stream. ``warm_start``: ``net`` starts
    from a trained model, which is then validated too (and kept if training never beats it).
    """
    T = net.num_steps
    steps = None if cfg.gamma > 0 else [T]  # gamma = 0: only the last step is computed
    weights = step_weights(T, cfg.gamma).to(task.device)
    if steps is not None:
        weights = weights[-1:]

    def loss_fn(batch):
        losses = task.step_losses(net(task.model_inputs(batch), steps), batch)  # (B, K)
        return (losses * weights).sum(dim=1).mean()

    return fit(
        stage=stage,
        modules={"model": net},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(cfg.batch_size, g),
        validate=lambda: predictive_val_metrics(task, collect(task, net, "val")),
        score_key=f"val_{task.metric}_last",
        higher_is_better=task.higher_is_better,
        work_dir=work_dir_for(out),
        fingerprint=fingerprint,
        generator=generator,
        tracker=tracker,
        progress=progress,
        validate_at_start=warm_start,
    )


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    baseline: dict,
    task: str = "sparse_recovery",
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the task's model alone and write its checkpoint to ``out``; returns a summary."""
    cfg = take_fields(BaselineConfig, baseline, "config section 'baseline'")
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    model_args = job.model_args(model)
    torch.manual_seed(seed)  # the model's random initialisation (a no-op for LISTA's ISTA start)
    net = job.build_model(model_args)
    result = train_deep_supervision(
        "baseline", net, cfg, job, out,
        fingerprint=fingerprint("baseline", asdict(cfg), model, seed, job.data_hash),
        generator=make_generator(seed, "baseline"), tracker=tracker, progress=progress,
    )
    finish_stage(out, stage="baseline", task=job, net=net, result=result, tracker=tracker,
                 config={"model": model, "baseline": baseline, "seed": seed})
    return {f"best_val_{job.metric}_last": result.best_score, "best_iteration": result.best_iteration,
            "seconds": result.seconds}
