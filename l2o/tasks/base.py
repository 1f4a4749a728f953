"""What a task supplies to the stopping machinery.

The stopping code (``l2o.stopping``, ``l2o.train``) never looks inside a task:
it asks the task for its predictive model's states, the per-step loss, the
policy's features and the metric. Sparse recovery (LISTA) is the first task;
a new one (denoising, few-shot) implements this interface.

Conventions: a *batch* is a dict of tensors whose first dimension is the
batch B; *states* are stacked over steps, (K, B, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


def select_rows(batch: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Rows ``index`` of every tensor of a batch."""
    return {k: v[index] for k, v in batch.items()}


class StoppingTask(ABC):
    """Interface between a task and the learning-to-stop machinery."""

    name: str

    @abstractmethod
    def model_inputs(self, batch: dict[str, Tensor]) -> Tensor:
        """What the predictive model consumes, (B, ...)."""

    @abstractmethod
    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Per-step loss ``l_t`` against the label: states (K, B, ...) -> (B, K)."""

    @abstractmethod
    def policy_features(
        self, batch: dict[str, Tensor], states: Tensor, steps: Tensor, num_steps: int
    ) -> Tensor:
        """Policy input (no label): states (K, B, ...), steps (K,) 1-based -> (K, B, F)."""

    def stop_logit_fn(self, policy: nn.Module):
        """A function ``(batch, states (K, B, ...), steps (K,), num_steps) -> stop logits (K, B)``.

        The default runs ``policy`` on :meth:`policy_features`. A task may return
        something cheaper that gives the same values (see the sparse-recovery task);
        whatever it precomputes from the policy's weights is computed here, so call
        this again after the weights change (once per training iteration).
        """
        return lambda batch, states, steps, num_steps: policy(self.policy_features(batch, states, steps, num_steps))

    @abstractmethod
    def policy_in_features(self) -> int:
        """F, the size of :meth:`policy_features`' last dimension."""

    @abstractmethod
    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A fresh training batch (on the CPU, from ``generator``)."""

    @abstractmethod
    def build_model(self, model_config: dict) -> nn.Module:
        """The predictive model at its initialisation; it must provide
        ``num_steps``, ``init_state(inputs)``, ``step(t, state, inputs)`` and
        ``forward(inputs) -> (T, B, ...)``."""
