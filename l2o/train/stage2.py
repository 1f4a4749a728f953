"""Stage II: train the stopping policy to imitate the oracle; the model is frozen.

The frozen model runs under ``no_grad`` (its states are computed once per
batch and never back-propagated through); only the policy gets gradients.
The oracle's beta is the one Stage I trained with, and so is its prior over
steps ``p(t) ∝ exp(-lambda c_t)`` (:mod:`l2o.stopping.prior`) unless
``stage2.prior_lambda`` sets another lambda (a lambda sweep re-uses one Stage I
model); the costs ``c_t`` are always Stage I's. Candidate steps are those
where the validation-mean oracle mass exceeds ``policy.candidate_threshold``;
the model computes only those steps' outputs. Model selection keeps the best
validation metric at the stop of the rule the evaluation reports (``stage2.rule``:
``tuned``, a threshold on ``pi`` tuned on validation at each validation; ``median``; or the
paper's ``pi > 0.5``: :mod:`l2o.stopping.rules`); the checkpoint records the rule and its
threshold. The frozen model runs over the validation set once (:func:`l2o.outputs.freeze`);
each validation after that runs the policy alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.checkpoints import build_model, load_checkpoint
from l2o.stopping.candidates import select_candidate_steps, split_policy_section
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.imitation import STAGE2_LOSSES, stage2_loss
from l2o.stopping.oracle import oracle_log_distribution
from l2o.outputs import freeze, policy_logits
from l2o.stopping.rules import check_rule
from l2o.stopping.prior import as_log_prior, check_prior_lambda, compute_log_prior, prior_from_checkpoint, prior_record
from l2o.tasks.base import model_outputs
from l2o.train.common import (
    file_digest,
    finish_stage,
    fingerprint,
    load_task,
    make_generator,
    stopping_val_metrics,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker


@dataclass
class Stage2Config(OptimConfig):
    """Config section ``stage2``."""

    loss: str = "forward_kl"
    prior_lambda: float | None = None  # None: the Stage I checkpoint's
    rule: str = "tuned"

    def __post_init__(self):
        super().__post_init__()
        check_rule(self.rule, "stage2.rule")
        if self.prior_lambda is not None:
            self.prior_lambda = check_prior_lambda(self.prior_lambda, "prior_lambda")
        if self.loss not in STAGE2_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {STAGE2_LOSSES}")


def candidate_steps_from_oracle(task, model, beta: float, threshold,
                                log_prior: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor]:
    """Candidate steps from the mean oracle mass of ``model`` on the task's candidate batches (the validation
    set unless the task gives more: :meth:`~l2o.tasks.base.StoppingTask.candidate_batches`); also returns the mass (T,).

    ``log_prior`` (T,): the oracle's prior over all T steps (None: uniform).
    """
    with torch.no_grad():
        losses = torch.cat([task.oracle_losses(model(task.model_inputs(b)), b).double().cpu()
                            for b in task.candidate_batches()])
    mass = oracle_log_distribution(losses, beta, as_log_prior(log_prior, losses)).exp().mean(dim=0)
    return select_candidate_steps(mass, threshold), mass


def run(
    *,
    data: Path,
    model_ckpt: Path,
    out: Path,
    policy: dict,
    stage2: dict,
    task: str = "sparse_recovery",
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the policy on the frozen Stage I model; write a ``stopping`` checkpoint."""
    cfg = take_fields(Stage2Config, stage2, "config section 'stage2'")
    cand_cfg, network = split_policy_section(policy)
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    job.check_policy(network)
    ckpt = load_checkpoint(model_ckpt, "predictive", job)
    beta = float(ckpt.get("beta") or 0.28)
    net = build_model(job, ckpt, model_ckpt)
    policy_args = job.policy_args(network)  # after the model: a policy may read the model's features
    net.eval().requires_grad_(False)
    stage1_prior = prior_from_checkpoint(ckpt, net.num_steps)
    lam = stage1_prior["lambda"] if cfg.prior_lambda is None else cfg.prior_lambda
    prior = prior_record(lam, stage1_prior["cost"], stage1_prior["costs"])
    candidates, mass = candidate_steps_from_oracle(job, net, beta, cand_cfg.candidate_threshold,
                                                   compute_log_prior(prior["costs"], lam))
    log_prior = compute_log_prior(prior["costs"], lam, steps=candidates)  # renormalised over the candidates
    tracker.log_params({"candidate_steps": candidates, "prior": {"lambda": lam, "cost": prior["cost"]}})
    steps = torch.tensor(candidates, device=job.device)
    torch.manual_seed(seed)  # the policy's initialisation
    pol = job.build_policy(policy_args)

    def loss_fn(batch):
        fn = job.stop_logit_fn(pol)
        with torch.no_grad():  # the frozen model: states once, no graph
            states, summaries = model_outputs(net, job.model_inputs(batch), candidates, fn)  # (K, B, ...)
            losses = job.oracle_losses(states, batch)
            log_q_oracle = oracle_log_distribution(losses, beta, as_log_prior(log_prior, losses))
        log_q = stop_log_distribution(fn(batch, states, steps, net.num_steps, summaries).T)
        return stage2_loss(cfg.loss, log_q, log_q_oracle)

    frozen = None

    def validate():
        nonlocal frozen
        if frozen is None:  # the frozen model over the validation set, once
            frozen = freeze(job, net, "val", pol, candidates)
        out = frozen.outputs
        out.logits = policy_logits(job, pol, frozen)
        return stopping_val_metrics(job, out, candidates, cfg.rule)

    result = fit(
        stage="stage2",
        modules={"policy": pol},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: job.sample_batch(cfg.batch_size, g),
        validate=validate,
        score_key=f"val_{job.metric}_rule",
        higher_is_better=job.higher_is_better,
        work_dir=work_dir_for(out),
        fingerprint=fingerprint("stage2", asdict(cfg), asdict(cand_cfg), policy_args, seed, job.data_hash,
                                file_digest(model_ckpt)),
        generator=make_generator(seed, "stage2"),
        tracker=tracker,
        progress=progress,
        validate_at_start=True,  # the untrained policy under the same rule: a reference in the history,
        start_is_candidate=False,  # not a candidate (it won on noise in both few-shot tasks, Run 10)
    )
    finish_stage(out, stage="stage2", task=job, net=net, policy=pol, result=result, tracker=tracker,
                 config={"policy": policy, "stage2": stage2, "seed": seed}, candidate_steps=candidates,
                 oracle_mass=mass.tolist(), beta=beta, prior=prior, upstream_run_id=ckpt.get("mlflow_run_id"),
                 rule=rule_record(cfg.rule, result))
    return {f"best_val_{job.metric}_rule": result.best_score, "candidate_steps": candidates,
            "seconds": result.seconds}


def rule_record(rule: str, result) -> dict:
    """What a stopping checkpoint stores under ``rule``: ``{"name", "tau"}``, the threshold being the
    one tuned at the kept (best) validation (``tuned``; 0.5 for ``paper``, None for ``median``)."""
    if rule == "tuned":
        row = next(h for h in result.history if h["iteration"] == result.best_iteration)
        return {"name": rule, "tau": float(row["val_tau"])}
    return {"name": rule, "tau": 0.5 if rule == "paper" else None}
