"""Joint training of model and policy on ``L(theta, q_phi) = E_q l_t - beta H(q_phi)``.

Used by Stage III (fine-tuning from Stages I+II, :mod:`l2o.train.finetune`)
and by the AEVB baseline (both from scratch, :mod:`l2o.train.aevb`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.objectives import joint_objective
from l2o.train.common import energy, make_generator, stop_logits, stopping_val_metrics
from l2o.train.loop import OptimConfig, fit


def train_jointly(
    *,
    stage: str,
    ctx,
    net,
    policy,
    candidates: list[int],
    beta: float,
    optim: OptimConfig,
    seed: int,
    work_dir: Path,
    fingerprint: str,
    tracker,
    progress: bool,
):
    """Minimise the joint objective over both ``net`` and ``policy``; returns the FitResult."""
    task = ctx.task
    net.requires_grad_(True)
    policy.requires_grad_(True)
    steps = torch.tensor(candidates, device=ctx.device)
    val = ctx.split("val")
    val_energy = energy(val)

    def loss_fn(batch):
        states = net(task.model_inputs(batch))[steps - 1]  # (K, B, n)
        losses = task.step_losses(states, batch)  # (B, K)
        log_q = stop_log_distribution(task.stop_logit_fn(policy)(batch, states, steps, net.num_steps).T)
        return joint_objective(losses, log_q, beta)

    def validate():
        errors, logits = stop_logits(task, net, policy, val, candidates)
        return stopping_val_metrics(errors, logits, candidates, val_energy)

    return fit(
        stage=stage,
        modules={"model": net, "policy": policy},
        optim=optim,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(optim.batch_size, g),
        validate=validate,
        score_key="val_nmse_db_expected",
        work_dir=work_dir,
        fingerprint=fingerprint,
        generator=make_generator(seed, stage),
        tracker=tracker,
        progress=progress,
    )
