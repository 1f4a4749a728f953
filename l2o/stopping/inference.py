"""Sequential stopping at inference time: early exit.

After each candidate step the policy gives ``pi_t``; an example stops where the rule says
(:mod:`l2o.stopping.rules`: the paper's ``pi_t > 0.5``, the median of ``q_phi``, a tuned
threshold) or where a uniform draw falls below ``pi_t`` (sampled); at the last step it stops
anyway.

Two paths give the same answer: :func:`~l2o.stopping.rules.stop_index` works on the logits of
every candidate (the compute-everything path used for analysis), and
:func:`predict_early_exit` runs each example only up to its own stop, dropping stopped examples
from the batch, so that stopping really saves compute. What early exit spends besides the
model's steps: the policy at each candidate for the examples still running (on the model's
step summaries, or on each candidate's state when the policy reads states), the state read out
only for the examples that stop there (unless the policy reads states anyway), one host sync
per candidate (how many stop), and the rows of the carry, the inputs and the policy's
per-example context copied when examples leave.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from l2o.models.step_model import take_rows
from l2o.stopping.rules import PAPER, StopRule, stop_index  # noqa: F401  (stop_index re-exported)
from l2o.tasks.base import StoppingTask, batch_size_of

#: ``decide(k, rows, logits) -> stop (b,) bool`` at the k-th candidate (0-based) for the examples
#: ``rows`` (b,) (their positions in the batch) with their logits (b,): a replacement of the rule
#: (benchmarks stop examples at controlled steps while the policy still runs)
Decide = Callable[[int, Tensor, Tensor], Tensor]


def check_candidates(candidate_steps: list[int], T: int) -> None:
    if candidate_steps[-1] != T:
        raise ValueError(f"the last candidate step must be T={T}, got {candidate_steps}")
    if any(a >= b for a, b in zip(candidate_steps[:-1], candidate_steps[1:])):
        raise ValueError(f"candidate steps must increase, got {candidate_steps}")


@torch.no_grad()
def predict_early_exit(
    task: StoppingTask,
    model: nn.Module,
    policy: nn.Module,
    batch: dict[str, Tensor],
    candidate_steps: list[int],
    uniforms: Tensor | None = None,
    rule: StopRule = PAPER,
    decide: Decide | None = None,
) -> tuple[Tensor, Tensor]:
    """Run each example until it stops; stopped examples leave the batch.

    The model runs step by step (``init_state``, ``step``, ``readout``; see
    :mod:`l2o.models.step_model`), so no step after an example's stop is computed
    for it; the policy is evaluated only at candidate steps, under ``no_grad``.

    :param batch: a batch of the task (label not needed).
    :param list candidate_steps: K increasing 1-based steps, the last = T.
    :param Tensor uniforms: (B, K) draws for sampled stopping, or None (the rule decides).
    :param StopRule rule: the deterministic rule (default: the paper's ``pi > 0.5``).
    :param decide: replaces the rule (see :data:`Decide`); the policy still runs.
    :return: ``(prediction (B, ...), stop_step (B,) 1-based)``: the state at each example's stop.
    """
    T = model.num_steps
    check_candidates(candidate_steps, T)
    fn = task.stop_logit_fn(policy)
    inputs = task.model_inputs(batch)
    ctx = fn.context(batch)
    B = batch_size_of(batch)
    device = next(iter(batch.values())).device
    rows = torch.arange(B, device=device)  # the batch position of each active example
    stop_step = torch.full((B,), T, dtype=torch.long, device=device)
    log_survival = torch.zeros(B, device=device, dtype=torch.float64) if rule.kind == "median" else None
    carry = model.init_state(inputs)
    out = None
    step_tensors = [torch.full((1,), t, device=device) for t in candidate_steps]
    k = 0  # the next candidate
    for t in range(1, T + 1):
        carry = model.step(t, carry, inputs)
        if t != candidate_steps[k]:
            continue
        if t == T:
            break
        state = model.readout(t, carry, inputs) if fn.reads_states else None
        summary = model.summarize(t, carry, inputs).unsqueeze(0) if fn.reads_summaries else None
        logits = fn.logits(ctx, None if state is None else state.unsqueeze(0), step_tensors[k], T, summary)[0]  # (b,)
        if uniforms is not None:
            stop = uniforms[rows, k] < torch.sigmoid(logits)
        elif decide is not None:
            stop = decide(k, rows, logits)
        else:
            stop, log_survival = rule.stops(logits, log_survival)
        k += 1
        if not bool(stop.any()):  # the one host sync of a candidate where nobody stops
            continue
        n_stop = int(stop.sum())
        leaving = rows[stop]
        here = state[stop] if state is not None else model.readout(t, take_rows(carry, stop), take_rows(inputs, stop))
        if out is None:
            out = here.new_empty((B, *here.shape[1:]))
        out[leaving] = here
        stop_step[leaving] = t
        if n_stop == len(rows):
            return out, stop_step
        keep = ~stop
        rows, carry, inputs, ctx = rows[keep], take_rows(carry, keep), take_rows(inputs, keep), take_rows(ctx, keep)
        if log_survival is not None:
            log_survival = log_survival[keep]
    last = model.readout(T, carry, inputs)
    if out is None:
        out = last.new_empty((B, *last.shape[1:]))
    out[rows] = last
    return out, stop_step
