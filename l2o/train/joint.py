"""Joint training of model and policy on ``L(theta, q_phi) = E_q l_t - beta H(q_phi)``.

Used by Stage III (fine-tuning from Stages I+II, :mod:`l2o.train.finetune`)
and by the AEVB baseline (both from scratch, :mod:`l2o.train.aevb`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.objectives import joint_objective
from l2o.stopping.prior import as_log_prior
from l2o.tasks.base import model_outputs
from l2o.train.common import collect, make_generator, stopping_val_metrics
from l2o.train.loop import OptimConfig, fit


def train_jointly(
    *,
    stage: str,
    task,
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
    log_prior: torch.Tensor | None = None,
    warm_start: bool = False,
):
    """Minimise the joint objective over both ``net`` and ``policy``; returns the FitResult.

    ``log_prior`` (K,): the prior over the candidate steps (sums to one over them); with it the
    entropy term is ``beta KL(q_phi || p)``. None: uniform (``-beta H(q_phi)``).
    """
    net.requires_grad_(True)
    policy.requires_grad_(True)
    steps = torch.tensor(candidates, device=task.device)

    def loss_fn(batch):
        fn = task.stop_logit_fn(policy)
        states, summaries = model_outputs(net, task.model_inputs(batch), candidates, fn)  # (K, B, ...)
        losses = task.step_losses(states, batch)  # (B, K)
        log_q = stop_log_distribution(fn(batch, states, steps, net.num_steps, summaries).T)
        return joint_objective(losses, log_q, beta, as_log_prior(log_prior, losses))

    def validate():
        return stopping_val_metrics(task, collect(task, net, "val", policy=policy, candidates=candidates), candidates)

    return fit(
        stage=stage,
        modules={"model": net, "policy": policy},
        optim=optim,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(optim.batch_size, g),
        validate=validate,
        score_key=f"val_{task.metric}_expected",
        higher_is_better=task.higher_is_better,
        work_dir=work_dir,
        fingerprint=fingerprint,
        generator=make_generator(seed, stage),
        tracker=tracker,
        progress=progress,
        validate_at_start=warm_start,
    )
