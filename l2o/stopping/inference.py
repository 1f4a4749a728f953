"""Sequential stopping at inference time.

After each candidate step the policy gives ``pi_t``; an example stops at the
first step where ``pi_t > 0.5`` (deterministic) or where a uniform draw falls
below ``pi_t`` (sampled); at the last step it stops anyway.

Two paths give the same answer: :func:`stop_index` works on logits for all
steps (the compute-everything path used for analysis), and
:func:`predict_early_exit` runs each example only up to its own stop, dropping
stopped examples from the batch, so that stopping really saves compute.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from l2o.models.step_model import take_rows
from l2o.tasks.base import StoppingTask, batch_size_of


def stop_index(stop_logits: Tensor, uniforms: Tensor | None = None) -> Tensor:
    """Index of the stop among K candidate steps, (B, K) -> (B,) long.

    :param Tensor stop_logits: (B, K) stop logits; the last column is ignored.
    :param Tensor uniforms: (B, K) U(0,1) draws for sampled stopping; None for
        the deterministic ``pi > 0.5`` rule.

    >>> stop_index(torch.tensor([[-1.0, 2.0, -3.0], [-1.0, -1.0, -1.0]]))
    tensor([1, 2])
    """
    if uniforms is None:
        stop = stop_logits > 0.0
    else:
        stop = uniforms < torch.sigmoid(stop_logits)
    stop = stop.clone()
    stop[:, -1] = True
    return stop.float().argmax(dim=1)  # first True


@torch.no_grad()
def predict_early_exit(
    task: StoppingTask,
    model: nn.Module,
    policy: nn.Module,
    batch: dict[str, Tensor],
    candidate_steps: list[int],
    uniforms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run each example until it stops; stopped examples leave the batch.

    The model runs step by step (``init_state``, ``step``, ``readout``; see
    :mod:`l2o.models.step_model`), so no step after an example's stop is computed
    for it; the policy is evaluated only at candidate steps, under ``no_grad``.

    :param batch: a batch of the task (label not needed).
    :param list candidate_steps: K increasing 1-based steps, the last = T.
    :param Tensor uniforms: (B, K) draws for sampled stopping, or None.
    :return: ``(prediction (B, ...), stop_step (B,) 1-based)``: the state at each example's stop.
    """
    T = model.num_steps
    if candidate_steps[-1] != T:
        raise ValueError(f"the last candidate step must be T={T}, got {candidate_steps}")
    if any(a >= b for a, b in zip(candidate_steps[:-1], candidate_steps[1:])):
        raise ValueError(f"candidate steps must increase, got {candidate_steps}")
    sub = batch
    inputs = task.model_inputs(sub)
    B = batch_size_of(batch)
    device = next(iter(batch.values())).device
    active = torch.arange(B, device=device)
    carry = model.init_state(inputs)
    out = None
    stop_step = torch.full((B,), T, dtype=torch.long, device=device)
    cand_pos = {t: k for k, t in enumerate(candidate_steps)}
    stop_logits = task.stop_logit_fn(policy)
    for t in range(1, T + 1):
        carry = model.step(t, carry, inputs)
        if t != T and t not in cand_pos:
            continue
        state = model.readout(t, carry, inputs)
        if out is None:
            out = state.new_zeros((B, *state.shape[1:]))
        if t == T:
            break
        steps = torch.tensor([t], device=device)
        logits = stop_logits(sub, state.unsqueeze(0), steps, T)[0]  # (b,)
        if uniforms is None:
            stop = logits > 0.0
        else:
            stop = uniforms[active, cand_pos[t]] < torch.sigmoid(logits)
        if stop.any():
            out[active[stop]] = state[stop]
            stop_step[active[stop]] = t
            keep = ~stop
            if not keep.any():
                return out, stop_step
            active, carry = active[keep], take_rows(carry, keep)
            sub = task.select(sub, keep)
            inputs = task.model_inputs(sub)
    out[active] = state
    return out, stop_step
