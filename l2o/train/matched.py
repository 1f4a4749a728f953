"""The matched-budget control for the skeptic's question (e), for any task.

The stopping model's predictive network is the baseline trained further by
Stage I (when ``stage1.init`` is ``baseline``) or Stage I alone
(``scratch``). Comparing it with the plain baseline (LISTA, DnCNN) therefore
mixes two effects: the oracle objective and the extra training. This control
separates them: the same network trained with the baseline's loss from the same start as
Stage I, for the same number of updates, with the same batch size,
optimiser settings and the very same training batches (Stage I's random
stream; with ``stage1.loss: sampled`` Stage I also draws its step samples from
that stream, so there the batches agree only at the first step). Model
selection differs as each objective's own does: the control keeps its best
validation last-step NMSE (as the baseline), Stage I its best best-step NMSE.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from l2o.train.baseline import BaselineConfig, train_deep_supervision
from l2o.train.common import (
    file_digest,
    finish_stage,
    fingerprint,
    load_initial_model,
    load_task,
    make_generator,
)
from l2o.train.loop import OptimConfig, take_fields
from l2o.tracking import NullTracker

STAGE = "matched"


def matched_settings(baseline: dict, stage1: dict) -> dict:
    """The control's training settings: Stage I's optimiser and budget, the baseline's loss.

    >>> matched_settings({"iterations": 9, "lr": 1.0, "gamma": 0.5},
    ...                  {"iterations": 3, "lr": 0.1, "batch_size": 8, "loss": "full", "init": "baseline"})
    {'batch_size': 8, 'gamma': 0.5, 'init': 'baseline', 'iterations': 3, 'lr': 0.1}
    """
    optim_keys = {f for f in OptimConfig.__dataclass_fields__}
    out = {k: v for k, v in stage1.items() if k in optim_keys}
    out["gamma"] = baseline.get("gamma", 1.0)
    out["init"] = stage1.get("init", "scratch")
    return dict(sorted(out.items()))


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    matched: dict,
    task: str = "sparse_recovery",
    init: Path | None = None,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the control (settings from :func:`matched_settings`); write a ``predictive`` checkpoint."""
    settings = dict(matched)
    start = settings.pop("init", "scratch")
    if start not in ("scratch", "baseline"):
        raise ValueError(f"matched control: unknown init {start!r}; choose 'scratch' or 'baseline'")
    if start == "baseline" and init is None:
        raise ValueError("matched control starts from the baseline (stage1.init: baseline) but no checkpoint was given")
    cfg = take_fields(BaselineConfig, settings, "matched control settings (from stage1 and baseline.gamma)")
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    model_args = job.model_args(model)
    init_hash = None
    if start == "baseline":
        net = load_initial_model(job, init, model)
        init_hash = file_digest(init)
    else:
        torch.manual_seed(seed)  # as Stage I from scratch
        net = job.build_model(model_args)
    result = train_deep_supervision(
        STAGE, net, cfg, job, out,
        fingerprint=fingerprint(STAGE, asdict(cfg), start, model, seed, job.data_hash, init_hash),
        generator=make_generator(seed, "stage1"),  # Stage I's stream: the very batches Stage I saw
        tracker=tracker, progress=progress, warm_start=start == "baseline",
    )
    finish_stage(out, stage=STAGE, task=job, net=net, result=result, tracker=tracker,
                 config={"model": model, "matched": matched, "seed": seed})
    return {f"best_val_{job.metric}_last": result.best_score, "best_iteration": result.best_iteration,
            "seconds": result.seconds}
