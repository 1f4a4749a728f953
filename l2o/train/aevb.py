"""AEVB baseline (paper Table 3): model and policy trained jointly from scratch.

No oracle, no Stages I/II: LISTA starts at its ISTA initialisation, the policy
at random, and every step is a candidate stop. The paper reports that this
collapses onto one step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.models.lista import LISTAConfig
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.stopping.oracle import check_beta
from l2o.train.common import finish_stage, fingerprint, load_context, work_dir_for
from l2o.train.joint import train_jointly
from l2o.train.loop import OptimConfig, take_fields
from l2o.train.stage2 import PolicyConfig
from l2o.tracking import NullTracker


@dataclass
class AEVBConfig(OptimConfig):
    """Config section ``aevb`` (``enabled`` is read by the workflow only)."""

    beta: float = 0.28

    def __post_init__(self):
        super().__post_init__()
        check_beta(self.beta)


def run(
    *,
    data: Path,
    out: Path,
    model: dict,
    policy: dict,
    aevb: dict,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    cfg = take_fields(AEVBConfig, {k: v for k, v in aevb.items() if k != "enabled"}, "config section 'aevb'")
    pcfg = take_fields(PolicyConfig, policy, "config section 'policy'")
    take_fields(LISTAConfig, {"m": 1, "n": 1, **model}, "config section 'model'")
    tracker = tracker or NullTracker()
    ctx = load_context(data, device)
    net = ctx.task.build_model(model)
    torch.manual_seed(seed)
    pol = StopPolicy(StopPolicyConfig(ctx.task.policy_in_features(), list(pcfg.hidden))).to(ctx.device)
    candidates = list(range(1, net.num_steps + 1))
    work = work_dir_for(out)
    result = train_jointly(
        stage="aevb",
        ctx=ctx,
        net=net,
        policy=pol,
        candidates=candidates,
        beta=cfg.beta,
        optim=cfg,
        seed=seed,
        work_dir=work,
        fingerprint=fingerprint("aevb", asdict(cfg), asdict(pcfg), model, seed, ctx.data_hash),
        tracker=tracker,
        progress=progress,
    )
    finish_stage(out, stage="aevb", ctx=ctx, net=net, policy=pol, result=result, tracker=tracker,
                 config={"model": model, "policy": policy, "aevb": aevb, "seed": seed},
                 candidate_steps=candidates, beta=cfg.beta)
    return {"best_val_nmse_db_expected": result.best_score, "seconds": result.seconds}
