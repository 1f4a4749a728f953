"""Stage II: train the stopping policy to imitate the oracle; the model is frozen.

The frozen model runs under ``no_grad`` (its states are computed once per
batch and never back-propagated through); only the policy gets gradients.
The oracle's beta is the one Stage I trained with. Candidate steps are those
where the validation-mean oracle mass exceeds ``policy.candidate_threshold``.
Model selection keeps the best validation expected NMSE under ``q_phi``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from l2o.checkpoints import build_model, load_checkpoint
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.stopping.candidates import select_candidate_steps
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.imitation import STAGE2_LOSSES, stage2_loss
from l2o.stopping.oracle import oracle_log_distribution
from l2o.train.common import (
    energy,
    file_digest,
    finish_stage,
    fingerprint,
    load_context,
    make_generator,
    step_errors,
    stop_logits,
    stopping_val_metrics,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker


@dataclass
class Stage2Config(OptimConfig):
    """Config section ``stage2``."""

    loss: str = "forward_kl"

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in STAGE2_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {STAGE2_LOSSES}")


@dataclass
class PolicyConfig:
    """Config section ``policy``."""

    hidden: list[int] = field(default_factory=lambda: [256, 128, 16])
    candidate_threshold: float | None = 1e-3

    def __post_init__(self):
        if self.candidate_threshold is not None and not 0 <= self.candidate_threshold < 1:
            raise ValueError(f"candidate_threshold must be in [0, 1), got {self.candidate_threshold}")


def candidate_steps_from_oracle(task, model, batch, beta: float, threshold) -> tuple[list[int], torch.Tensor]:
    """Candidate steps from the mean oracle mass of ``model`` on ``batch``; also returns the mass (T,)."""
    errors = step_errors(task, model, batch)
    mass = oracle_log_distribution(errors.double(), beta).exp().mean(dim=0)
    return select_candidate_steps(mass, threshold), mass


def run(
    *,
    data: Path,
    model_ckpt: Path,
    out: Path,
    policy: dict,
    stage2: dict,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the policy on the frozen Stage I model; write a ``stopping`` checkpoint."""
    cfg = take_fields(Stage2Config, stage2, "config section 'stage2'")
    pcfg = take_fields(PolicyConfig, policy, "config section 'policy'")
    tracker = tracker or NullTracker()
    ctx = load_context(data, device)
    task = ctx.task
    ckpt = load_checkpoint(model_ckpt, "predictive", ctx.data_hash)
    beta = float(ckpt.get("beta") or 0.28)
    net = build_model(task, ckpt, model_ckpt, ctx.device)
    net.eval().requires_grad_(False)
    val = ctx.split("val")
    val_energy = energy(val)
    candidates, mass = candidate_steps_from_oracle(task, net, val, beta, pcfg.candidate_threshold)
    tracker.log_params({"candidate_steps": candidates})
    steps = torch.tensor(candidates, device=ctx.device)
    torch.manual_seed(seed)  # the policy's initialisation
    pol = StopPolicy(StopPolicyConfig(task.policy_in_features(), list(pcfg.hidden))).to(ctx.device)

    def loss_fn(batch):
        with torch.no_grad():  # the frozen model: states once, no graph
            states = net(task.model_inputs(batch))[steps - 1]  # (K, B, n)
            log_q_oracle = oracle_log_distribution(task.step_losses(states, batch), beta)
        log_q = stop_log_distribution(task.stop_logit_fn(pol)(batch, states, steps, net.num_steps).T)
        return stage2_loss(cfg.loss, log_q, log_q_oracle)

    def validate():
        errors, logits = stop_logits(task, net, pol, val, candidates)
        return stopping_val_metrics(errors, logits, candidates, val_energy)

    work = work_dir_for(out)
    result = fit(
        stage="stage2",
        modules={"policy": pol},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: task.sample_batch(cfg.batch_size, g),
        validate=validate,
        score_key="val_nmse_db_expected",
        work_dir=work,
        fingerprint=fingerprint("stage2", asdict(cfg), asdict(pcfg), seed, ctx.data_hash,
                                file_digest(model_ckpt)),
        generator=make_generator(seed, "stage2"),
        tracker=tracker,
        progress=progress,
    )
    finish_stage(out, stage="stage2", ctx=ctx, net=net, policy=pol, result=result, tracker=tracker,
                 config={"policy": policy, "stage2": stage2, "seed": seed}, candidate_steps=candidates,
                 oracle_mass=mass.tolist(), beta=beta, upstream_run_id=ckpt.get("mlflow_run_id"))
    return {"best_val_nmse_db_expected": result.best_score, "candidate_steps": candidates,
            "seconds": result.seconds}
