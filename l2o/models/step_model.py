"""The step-wise protocol every predictive model follows.

A model that learning to stop can drive produces a state after each of its
``T`` steps (an unrolled iteration, a layer with an output head, an inner
gradient step). It exposes:

* ``num_steps`` -- ``T``;
* ``init_state(inputs) -> carry`` -- what flows into step 1;
* ``step(t, carry, inputs) -> carry`` -- step ``t`` (1-based);
* ``readout(t, carry, inputs) -> state`` -- the prediction after step ``t``
  (B, ...), what the per-step loss and the policy see;
* ``forward(inputs, steps=None) -> (K, B, ...)`` -- the states at ``steps``
  (all ``T`` by default), computing nothing past ``max(steps)``;
* optionally ``summary_size`` (F > 0) and ``summarize(t, carry, inputs) -> (B, F)`` --
  cheap statistics of the carry after step ``t`` that the step produces anyway (pooled
  features, the support loss of an inner step), for stop policies that must cost little
  next to a step; ``forward(inputs, steps, summaries=True)`` then also returns them,
  ``(K, B, F)``.

The carry holds one row per example (a tensor, or a tuple/dict of tensors with
the batch first), so early-exit inference can drop the examples that stopped
(:func:`take_rows`). :class:`StepModel` gives ``forward`` from the other three;
a model may override it with something faster that returns the same values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def check_steps(steps: list[int] | None, num_steps: int) -> list[int]:
    """``steps`` as a checked list (1-based, increasing, within T); None -> all steps.

    >>> check_steps(None, 3)
    [1, 2, 3]
    >>> check_steps([2, 3], 3)
    [2, 3]
    """
    if steps is None:
        return list(range(1, num_steps + 1))
    steps = [int(s) for s in (steps.tolist() if isinstance(steps, Tensor) else steps)]
    if not steps or steps[0] < 1 or steps[-1] > num_steps or any(a >= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps must increase within 1..{num_steps}, got {steps}")
    return steps


def take_rows(carry: Any, keep: Tensor) -> Any:
    """Rows ``keep`` of a carry: a tensor, or a tuple/list/dict of them (batch first)."""
    if isinstance(carry, Tensor):
        return carry[keep]
    if isinstance(carry, dict):
        return {k: take_rows(v, keep) for k, v in carry.items()}
    if isinstance(carry, (tuple, list)):
        return type(carry)(take_rows(v, keep) for v in carry)
    raise TypeError(f"cannot select rows of a carry of type {type(carry).__name__}")


class StepModel(nn.Module):
    """Base class of step-wise predictive models; subclasses define ``num_steps``,
    :meth:`init_state`, :meth:`step` and, if the state is not the carry, :meth:`readout`."""

    num_steps: int
    #: F, the width of :meth:`summarize`'s statistics (0: the model has none)
    summary_size: int = 0

    def init_state(self, inputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, t: int, carry: Any, inputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def readout(self, t: int, carry: Any, inputs: Any) -> Tensor:
        """The state after step ``t``; by default the carry itself."""
        return carry

    def summarize(self, t: int, carry: Any, inputs: Any) -> Tensor:
        """Statistics of the carry after step ``t`` for a cheap stop policy, (B, F)."""
        raise NotImplementedError(f"{type(self).__name__} has no step summaries (summary_size = 0)")

    def forward(self, inputs: Any, steps: list[int] | None = None, summaries: bool = False):
        """States at ``steps`` (1-based, increasing; None = all): (K, B, ...); with ``summaries``
        the pair ``(states, summaries (K, B, F))``."""
        steps = check_steps(steps, self.num_steps)
        wanted = set(steps)
        carry = self.init_state(inputs)
        out, summ = [], []
        for t in range(1, steps[-1] + 1):
            carry = self.step(t, carry, inputs)
            if t in wanted:
                out.append(self.readout(t, carry, inputs))
                if summaries:
                    summ.append(self.summarize(t, carry, inputs))
        states = torch.stack(out)
        return (states, torch.stack(summ)) if summaries else states
