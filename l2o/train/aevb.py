"""AEVB baseline (paper Table 3): model and policy trained jointly from scratch.

No oracle, no Stages I/II: the model starts at its initialisation (LISTA at
ISTA), the policy at random, and every step is a candidate stop. The paper
reports that this collapses onto one step. With ``aevb.prior_lambda > 0`` the
entropy term is ``beta KL(q_phi || p)`` against the prior ``p(t) ∝ exp(-lambda c_t)``
over all steps (:mod:`l2o.stopping.prior`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.stopping.candidates import split_policy_section
from l2o.stopping.oracle import check_beta
from l2o.stopping.prior import check_prior_cost, check_prior_lambda, compute_log_prior, prior_record
from l2o.train.common import finish_stage, fingerprint, load_task, stage_step_costs, work_dir_for
from l2o.train.joint import train_jointly
from l2o.train.loop import OptimConfig, take_fields
from l2o.tracking import NullTracker


@dataclass
class AEVBConfig(OptimConfig):
    """Config section ``aevb`` (``enabled`` is read by the workflow only)."""

    beta: float = 0.28
    prior_lambda: float = 0.0
    prior_cost: str = "steps"

    def __post_init__(self):
        super().__post_init__()
        check_beta(self.beta)
        self.prior_lambda = check_prior_lambda(self.prior_lambda, "prior_lambda")
        check_prior_cost(self.prior_cost, "prior_cost")


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    policy: dict,
    aevb: dict,
    task: str = "sparse_recovery",
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    cfg = take_fields(AEVBConfig, {k: v for k, v in aevb.items() if k != "enabled"}, "config section 'aevb'")
    cand_cfg, network = split_policy_section(policy)
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    model_args = job.model_args(model)
    job.check_policy(network)
    torch.manual_seed(seed)
    net = job.build_model(model_args)
    policy_args = job.policy_args(network)  # after the model: a policy may read the model's features
    pol = job.build_policy(policy_args)
    candidates = list(range(1, net.num_steps + 1))
    fp = fingerprint("aevb", asdict(cfg), asdict(cand_cfg), policy_args, model, seed, job.data_hash)
    costs = stage_step_costs(job, net, cfg.prior_cost, work_dir_for(out), fp)
    prior = prior_record(cfg.prior_lambda, cfg.prior_cost, costs)
    tracker.log_params({"prior": {"lambda": prior["lambda"], "cost": prior["cost"],
                                  "costs": [round(c, 4) for c in prior["costs"]]}})
    result = train_jointly(
        stage="aevb",
        task=job,
        net=net,
        policy=pol,
        candidates=candidates,
        beta=cfg.beta,
        optim=cfg,
        seed=seed,
        work_dir=work_dir_for(out),
        fingerprint=fp,
        tracker=tracker,
        progress=progress,
        log_prior=compute_log_prior(costs, cfg.prior_lambda),  # every step is a candidate
        warm_start=True,  # the untrained start is Table 3's reference point
    )
    finish_stage(out, stage="aevb", task=job, net=net, policy=pol, result=result, tracker=tracker,
                 config={"model": model, "policy": policy, "aevb": aevb, "seed": seed},
                 candidate_steps=candidates, beta=cfg.beta, prior=prior)
    return {f"best_val_{job.metric}_expected": result.best_score, "seconds": result.seconds}
