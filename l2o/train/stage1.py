"""Stage I: train the predictive model against the oracle (the soft-min over steps).

From scratch (the paper: LISTA at its ISTA initialisation, a randomly
initialised DnCNN) or warm-started from the trained baseline (the released
DnCNN recipe). Model selection keeps the best validation metric at each
example's best step, as the released code does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l2o.stopping.objectives import STAGE1_LOSSES, check_mass_floor, stage1_loss
from l2o.stopping.oracle import check_beta
from l2o.stopping.prior import (
    as_log_prior,
    check_prior_cost,
    check_prior_lambda,
    compute_log_prior,
    prior_record,
)
from l2o.train.common import (
    collect,
    file_digest,
    finish_stage,
    fingerprint,
    load_initial_model,
    load_task,
    make_generator,
    predictive_val_metrics,
    stage_step_costs,
    work_dir_for,
)
from l2o.train.loop import OptimConfig, fit, take_fields
from l2o.tracking import NullTracker

INITS = ("scratch", "baseline")


def sampled_step_loss(task, net, batch, beta: float, generator: torch.Generator,
                      log_prior: torch.Tensor | None = None, mass_floor: float = 0.0) -> torch.Tensor:
    """Stage I ``sampled`` with the memory of one step (paper App. B.2.2): every step's loss is
    computed without a graph to form ``q*``, a step ``t ~ q*`` is drawn per example, and only the
    drawn steps' losses are recomputed with their graph (the model runs to the latest drawn step;
    the loss, e.g. MAML's query forward, is taken at one step per example). Same gradient in
    expectation as the soft-min; one extra forward pass without a graph. ``log_prior`` (T,) is the
    oracle's prior over the steps (None: uniform). ``mass_floor`` eps draws from ``(1 - eps) q* + eps / T``
    (the sampled form of :func:`~l2o.stopping.objectives.stage1_loss`'s floor)."""
    from l2o.stopping.objectives import draw_oracle_steps

    inputs = task.model_inputs(batch)
    with torch.no_grad():
        losses = task.step_losses(net(inputs), batch)
        idx = draw_oracle_steps(losses, beta, as_log_prior(log_prior, losses), generator=generator,
                                mass_floor=mass_floor).squeeze(1)
    states = net(inputs, list(range(1, int(idx.max()) + 2)))  # (t_max, B, ...), with the graph
    picked = states[idx.to(states.device), torch.arange(states.shape[1], device=states.device)]
    return task.step_losses(picked.unsqueeze(0), batch).mean()


@dataclass
class Stage1Config(OptimConfig):
    """Config section ``stage1``."""

    loss: str = "full"
    beta: float = 0.28
    init: str = "scratch"
    prior_lambda: float = 0.0
    prior_cost: str = "steps"
    mass_floor: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self.mass_floor = check_mass_floor(self.mass_floor)
        self.prior_lambda = check_prior_lambda(self.prior_lambda, "prior_lambda")
        check_prior_cost(self.prior_cost, "prior_cost")
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
    task: str = "sparse_recovery",
    init: Path | None = None,
    seed: int = 0,
    tracker=None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train the predictive model with the oracle loss; write a ``predictive`` checkpoint."""
    cfg = take_fields(Stage1Config, stage1, "config section 'stage1'")
    tracker = tracker or NullTracker()
    job = load_task(task, data, device)
    model_args = job.model_args(model)
    init_hash = None
    if cfg.init == "baseline":
        if init is None:
            raise ValueError("stage1.init is 'baseline' but no baseline checkpoint was given (--init)")
        net = load_initial_model(job, init, model, what="baseline checkpoint")
        init_hash = file_digest(init)
    else:
        torch.manual_seed(seed)
        net = job.build_model(model_args)
    gen = make_generator(seed, "stage1")
    fp = fingerprint("stage1", asdict(cfg), model, seed, job.data_hash, init_hash)
    # the prior p(t) ∝ exp(-lambda c_t) over all T steps; lambda 0: None (the uniform, prior-free path)
    costs = stage_step_costs(job, net, cfg.prior_cost, work_dir_for(out), fp)
    prior = prior_record(cfg.prior_lambda, cfg.prior_cost, costs)
    log_prior = compute_log_prior(costs, cfg.prior_lambda)
    tracker.log_params({"prior": {"lambda": prior["lambda"], "cost": prior["cost"],
                                  "costs": [round(c, 4) for c in prior["costs"]]}})

    def loss_fn(batch):
        if cfg.loss == "sampled":
            return sampled_step_loss(job, net, batch, cfg.beta, gen, log_prior, cfg.mass_floor)
        losses = job.step_losses(net(job.model_inputs(batch)), batch)
        return stage1_loss(cfg.loss, losses, cfg.beta, as_log_prior(log_prior, losses), generator=gen,
                           mass_floor=cfg.mass_floor)

    result = fit(
        stage="stage1",
        modules={"model": net},
        optim=cfg,
        loss_fn=loss_fn,
        sample_batch=lambda g: job.sample_batch(cfg.batch_size, g),
        validate=lambda: predictive_val_metrics(job, collect(job, net, "val")),
        score_key=f"val_{job.metric}_best_step",
        higher_is_better=job.higher_is_better,
        work_dir=work_dir_for(out),
        fingerprint=fp,
        generator=gen,
        tracker=tracker,
        progress=progress,
        validate_at_start=cfg.init == "baseline",  # a warm start is a candidate of the selection
    )
    finish_stage(out, stage="stage1", task=job, net=net, result=result, tracker=tracker,
                 config={"model": model, "stage1": stage1, "seed": seed}, beta=cfg.beta, prior=prior)
    return {f"best_val_{job.metric}_best_step": result.best_score, "best_iteration": result.best_iteration,
            "seconds": result.seconds}
