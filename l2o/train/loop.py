"""The training loop shared by every stage: Adam, validation every N steps,
best-on-validation selection, and resumable checkpoints.

A checkpoint (``<work_dir>/last.pt``) is written atomically at every
validation; if the process is killed and started again with the same
fingerprint (stage config + inputs) training continues from it, with the
data RNG restored, so the result equals an uninterrupted run. The stage
deletes the work dir once its final output is written.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from l2o.config import take_fields  # noqa: F401  (re-exported: stages import it from here)
from l2o.io import save_torch_atomic

log = logging.getLogger("l2o")


@dataclass
class OptimConfig:
    """Optimisation settings of one stage: Adam, with the learning rate multiplied by
    ``lr_gamma`` at each iteration in ``lr_milestones`` (none by default)."""

    iterations: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    val_every: int = 100
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1

    def __post_init__(self):
        for key in ("iterations", "batch_size", "val_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.lr_milestones = [int(m) for m in self.lr_milestones]
        if any(m < 1 for m in self.lr_milestones) or self.lr_milestones != sorted(set(self.lr_milestones)):
            raise ValueError(f"lr_milestones must be increasing iterations >= 1, got {self.lr_milestones}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")


def split_optim(section: dict) -> tuple[OptimConfig, dict]:
    """Split a stage section into its optimisation settings and the rest."""
    names = set(OptimConfig.__dataclass_fields__)
    optim = {k: v for k, v in section.items() if k in names}
    rest = {k: v for k, v in section.items() if k not in names}
    return OptimConfig(**optim), rest


@dataclass
class FitResult:
    best_score: float
    best_iteration: int
    history: list[dict]
    seconds: float


def make_adam(params: list[torch.Tensor], lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the stage's settings; the fused kernel where torch has one (CPU, CUDA).

    The fused kernel does Adam's element-wise work in one pass over each parameter
    (the for-loop version makes about ten); same update to float rounding.
    """
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def _non_finite_grad(modules: dict[str, nn.Module]) -> str | None:
    """The name (``module.parameter``) of the first parameter whose gradient has a NaN or inf."""
    for name, module in modules.items():
        for pname, p in module.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"{name}.{pname}"
    return None


def fit(
    *,
    stage: str,
    modules: dict[str, nn.Module],
    optim: OptimConfig,
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    sample_batch: Callable[[torch.Generator], dict[str, Tensor]],
    validate: Callable[[], dict[str, float]],
    score_key: str,
    work_dir: Path,
    fingerprint: str,
    generator: torch.Generator,
    tracker=None,
    progress: bool = True,
    higher_is_better: bool = False,
    validate_at_start: bool = False,
    start_is_candidate: bool = True,
) -> FitResult:
    """Train the parameters of ``modules`` that require grad; keep the best on validation.

    :param loss_fn: batch -> scalar loss.
    :param sample_batch: generator -> batch (CPU); moved to the modules' device here.
    :param validate: () -> metrics dict; ``metrics[score_key]`` is minimised (maximised
        with ``higher_is_better``).
    :param validate_at_start: also validate the untrained start (iteration 0): a reference point
        in the history (off by default: one validation pass saved).
    :param start_is_candidate: whether that start may also be the selected state (a warm start:
        yes; Stage II's untrained policy: no -- with a rule tuned on validation it can win on
        noise, and then nothing learned is reported as learned).
    :return: the best score and its iteration, the history; ``modules`` hold the best state.
    """
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{stage}: nothing to train")
    device = params[0].device
    opt = make_adam(params, optim.lr, optim.weight_decay)
    sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=optim.lr_milestones, gamma=optim.lr_gamma)
             if optim.lr_milestones else None)
    ckpt_path = Path(work_dir) / "last.pt"
    start, history, best, elapsed = 0, [], None, 0.0

    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            for name, mod in modules.items():
                mod.load_state_dict(state["modules"][name])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"].cpu())  # map_location moved it
            start, history, best = state["iteration"], state["history"], state["best"]
            elapsed = state.get("seconds", 0.0)
            log.info("%s: resumed from %s at iteration %d", stage, ckpt_path, start)
        else:
            log.warning("%s: ignoring checkpoint %s from another configuration", stage, ckpt_path)

    def evaluate(iteration: int, train_loss: float | None, candidate: bool = True) -> None:
        nonlocal best
        for mod in modules.values():
            mod.eval()
        metrics = validate()
        for mod in modules.values():
            mod.train()
        score = metrics[score_key]
        if math.isnan(score):
            raise FloatingPointError(f"{stage}: validation {score_key} is {score} at iteration {iteration}")
        if math.isinf(score):  # e.g. a task's inner loop diverged: the worst possible score, not an error
            log.warning("%s: validation %s is %s at iteration %d", stage, score_key, score, iteration)
        row = {"iteration": iteration, "train_loss": train_loss, **metrics}
        history.append(row)
        better = best is None or (score > best["score"] if higher_is_better else score < best["score"])
        if candidate and better:
            best = {
                "score": score,
                "iteration": iteration,
                "modules": {n: copy.deepcopy(m.state_dict()) for n, m in modules.items()},
            }
        if tracker is not None:
            tracker.log_metrics(
                {k: v for k, v in row.items() if k != "iteration" and v is not None}, step=iteration
            )
        log.info("%s it %d: %s", stage, iteration, {k: round(v, 4) for k, v in row.items() if v is not None})

    t0 = time.perf_counter() - elapsed
    if validate_at_start and start == 0 and not history:
        evaluate(0, None, candidate=start_is_candidate)  # the untrained start, for reference

    running, count = 0.0, 0
    bar = _progress(range(start + 1, optim.iterations + 1), stage, start, optim.iterations, progress)
    for mod in modules.values():
        mod.train()
    for it in bar:
        batch = to_device(sample_batch(generator), device)
        loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage}: training loss is {loss.item()} at iteration {it}; "
                f"lower {stage}.lr or check the data"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        bad = _non_finite_grad(modules)
        if bad is not None:  # stop before the update: the last checkpoint stays clean
            raise FloatingPointError(
                f"{stage}: the gradient of {bad} is not finite at iteration {it} (the loss, "
                f"{loss.item():.4g}, is); lower {stage}.lr or check the model's numerics"
            )
        opt.step()
        if sched is not None:
            sched.step()
        running += loss.item()
        count += 1
        if it % optim.val_every == 0 or it == optim.iterations:
            evaluate(it, running / count)
            running, count = 0.0, 0
            save_torch_atomic(
                {
                    "fingerprint": fingerprint,
                    "iteration": it,
                    "modules": {n: m.state_dict() for n, m in modules.items()},
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "generator": generator.get_state(),
                    "history": history,
                    "best": best,
                    "seconds": time.perf_counter() - t0,
                },
                ckpt_path,
            )
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({score_key: f"{history[-1][score_key]:.3f}"})

    for name, mod in modules.items():
        mod.load_state_dict(best["modules"][name])
        mod.eval()
    return FitResult(best["score"], best["iteration"], history, time.perf_counter() - t0)


def to_device(batch: dict, device) -> dict:
    """Every tensor of a batch on ``device`` (non-tensor values kept)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def clear_work_dir(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)


def _progress(iterable, stage, start, total, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        desc=stage,
        initial=start,
        total=total,
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
