"""A trained model (and policy) read over one of a task's fixed sets, for training and evaluation.

:func:`collect` runs the model over every batch of a set and keeps, on the CPU, what
validation and evaluation read: per-step losses, metric components, conditions, the policy's
stop logits at the candidate steps and what the non-learned rule thresholds
(:class:`SetOutputs`). :func:`freeze` runs a *frozen* model once and keeps what its policy reads
(:class:`FrozenSet`), so that Stage II's validation re-runs only the policy
(:func:`policy_logits`), not the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from l2o.tasks.base import StoppingTask, model_outputs

__all__ = ["SetOutputs", "FrozenSet", "collect", "freeze", "policy_logits"]


@dataclass
class SetOutputs:
    """A model (and policy) run over a fixed set, everything on the CPU.

    ``losses`` (N, T) per-step losses; ``components`` {name: (N, T)} metric
    components (:meth:`StoppingTask.step_metrics`); ``conditions`` (N,);
    ``logits`` (N, K) stop logits at the candidate steps (with a policy);
    ``change`` (N, T) what the non-learned rule thresholds (when asked for);
    ``oracle_losses`` (N, T) what the oracle chooses on (:meth:`StoppingTask.oracle_losses`;
    the per-step losses unless the task says otherwise).
    """

    losses: Tensor
    components: dict[str, np.ndarray]
    conditions: np.ndarray
    logits: Tensor | None = None
    change: np.ndarray | None = None
    oracle_losses: Tensor | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.oracle_losses is None:
            self.oracle_losses = self.losses

    def at(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The components at one step per example: index (N,) 0-based -> {name: (N,)}."""
        rows = np.arange(len(index))
        return {k: v[rows, index] for k, v in self.components.items()}

    def at_candidates(self, candidates: list[int]) -> dict[str, np.ndarray]:
        """The components at the candidate steps: {name: (N, K)}."""
        cols = [t - 1 for t in candidates]
        return {k: v[:, cols] for k, v in self.components.items()}

    def at_step(self, step: int) -> dict[str, np.ndarray]:
        """The components at one fixed 1-based step for every example: {name: (N,)}."""
        return {k: v[:, step - 1] for k, v in self.components.items()}


@dataclass
class FrozenSet:
    """A frozen model's outputs on a set, with what a policy needs to be re-read on it: per batch,
    the batch, the states and step summaries at the candidate steps (those the task's policy reads)."""

    outputs: SetOutputs
    batches: list[dict[str, Tensor]]
    states: list[Tensor | None]
    summaries: list[Tensor | None]
    candidates: list[int]
    num_steps: int


def _run(task: StoppingTask, net: nn.Module, split: str, policy, candidates, full: bool, change: bool,
         keep: bool):
    losses, comps, conds, logits, changes, oracle = [], {}, [], [], [], []
    own_oracle = type(task).oracle_losses is not StoppingTask.oracle_losses
    kept = {"batches": [], "states": [], "summaries": []}
    fn = task.stop_logit_fn(policy) if policy is not None else None
    cand = list(candidates or [net.num_steps])
    steps = torch.tensor(cand, device=task.device)
    for batch in task.eval_batches(split):
        states, summaries = model_outputs(net, task.model_inputs(batch), None, fn)  # (T, b, ...), (T, b, F)
        step_losses, metrics = task.step_outputs(states, batch, full=full)
        losses.append(step_losses.double().cpu())
        if own_oracle:
            oracle.append(task.oracle_losses(states, batch).double().cpu())
        for k, v in metrics.items():
            comps.setdefault(k, []).append(v.double().cpu().numpy())
        conds.append(task.conditions(batch))
        if change:
            changes.append(task.state_change(states).double().cpu().numpy())
        at_cand = states[steps - 1]
        summ = summaries[steps - 1] if summaries is not None else None
        if fn is not None:
            logits.append(fn(batch, at_cand, steps, net.num_steps, summ).T.double().cpu())
        if keep:
            kept["batches"].append(batch)
            kept["states"].append(at_cand if fn is None or fn.reads_states else None)
            kept["summaries"].append(summ)
    out = SetOutputs(
        losses=torch.cat(losses),
        components={k: np.concatenate(v) for k, v in comps.items()},
        conditions=np.concatenate(conds),
        logits=torch.cat(logits) if logits else None,
        change=np.concatenate(changes) if changes else None,
        oracle_losses=torch.cat(oracle) if oracle else None,
    )
    return out, kept


@torch.no_grad()
def collect(task: StoppingTask, net: nn.Module, split: str, *, policy: nn.Module | None = None,
            candidates: list[int] | None = None, full: bool = False, change: bool = False) -> SetOutputs:
    """Run ``net`` (and ``policy`` at ``candidates``) over the fixed set ``split``."""
    return _run(task, net, split, policy, candidates, full, change, keep=False)[0]


@torch.no_grad()
def freeze(task: StoppingTask, net: nn.Module, split: str, policy: nn.Module, candidates: list[int],
           full: bool = False) -> FrozenSet:
    """Run a frozen ``net`` over ``split`` once, keeping what ``policy`` (any policy of its kind)
    reads at ``candidates``; :func:`policy_logits` then gives the logits of a policy in seconds."""
    out, kept = _run(task, net, split, policy, candidates, full, False, keep=True)
    return FrozenSet(out, kept["batches"], kept["states"], kept["summaries"], list(candidates), net.num_steps)


@torch.no_grad()
def policy_logits(task: StoppingTask, policy: nn.Module, frozen: FrozenSet) -> Tensor:
    """The stop logits (N, K) of ``policy`` on a frozen set (float64, CPU)."""
    fn = task.stop_logit_fn(policy)
    steps = torch.tensor(frozen.candidates, device=task.device)
    return torch.cat([fn(b, s, steps, frozen.num_steps, m).T.double().cpu()
                      for b, s, m in zip(frozen.batches, frozen.states, frozen.summaries)])
