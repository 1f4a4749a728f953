"""What a task supplies to the stopping machinery.

The stages (``l2o.train``), the evaluation, early-exit inference and the report
never look inside a task: they ask it for its data, its predictive model and
stop policy, the per-step loss, the policy's logits and its metrics. Sparse
recovery (LISTA) and blind denoising (DnCNN) implement this interface; a new
task (few-shot learning, your own unrolled model) does the same and is listed
in :mod:`l2o.tasks.registry`. ``docs/add-a-task.md`` walks through one.

Conventions
-----------
* A *batch* is a dict of tensors whose first dimension is the batch ``B``
  (examples, images, few-shot tasks).
* *States* are the model's outputs at its steps, stacked: ``(K, B, ...)``
  (LISTA iterates, DnCNN head estimates, adapted parameters).
* *Steps* are 1-based; ``T = model.num_steps``.
* *Components* are per-example, per-step quantities from which the task's
  metric is computed (:meth:`StoppingTask.step_metrics`), e.g. the squared
  error and the signal energy for NMSE, or the PSNR of each image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import Tensor, nn


def select_rows(batch: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Rows ``index`` of every tensor of a batch."""
    return {k: v[index] for k, v in batch.items()}


def batch_size_of(batch: dict[str, Tensor]) -> int:
    """``B``, the first dimension shared by every tensor of a batch."""
    return int(next(iter(batch.values())).shape[0])


def relative_change(states: Tensor) -> Tensor:
    """``||s_t - s_{t-1}|| / ||s_t||`` per example and step, with ``s_0 = 0``: (K, B, ...) -> (B, K).

    >>> relative_change(torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]]))
    tensor([[1.0000, 0.7071]])
    """
    flat = states.flatten(2)  # (K, B, D)
    prev = torch.cat([torch.zeros_like(flat[:1]), flat[:-1]])
    return ((flat - prev).norm(dim=-1) / flat.norm(dim=-1).clamp_min(1e-12)).T


class StoppingTask(ABC):
    """Interface between a task and the learning-to-stop machinery.

    Class attributes:

    * ``name``: the registry key and the ``task`` column of every table;
    * ``model_label``: the predictive model's name in method names
      (``lista`` -> ``lista``, ``lista_stop``, ``lista_stop_ft``, ...);
    * ``metric``: the headline metric's name (``nmse_db``, ``psnr``) and
      ``higher_is_better`` its direction; validation selects checkpoints on it;
    * ``gain_floor``: the smallest oracle gain (metric units) worth a percentage.

    An instance is a loaded data file on a device (:meth:`load`).
    """

    name: ClassVar[str]
    model_label: ClassVar[str]
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = False
    #: below this oracle gain over the last step (in the metric's units) the report gives no
    #: "share of the gain captured": a ratio whose denominator is noise
    gain_floor: ClassVar[float] = 0.5

    data_hash: str
    device: str

    # -- data ------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def prepare_data(cls, data: dict, out: Path) -> dict:
        """Write the task's data file ``out`` (and a JSON sidecar ``out.with_suffix('.json')``)
        from config section ``data``, atomically; return the sidecar's content."""

    @classmethod
    @abstractmethod
    def load(cls, data: Path, device: str) -> "StoppingTask":
        """The task on a data file written by :meth:`prepare_data`, on ``device``."""

    @abstractmethod
    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A fresh training batch (on the CPU, all randomness from ``generator``)."""

    @abstractmethod
    def eval_batches(self, split: str) -> Iterator[dict[str, Tensor]]:
        """A fixed set (``val``, ``test``, ...) as batches on the device, always in the same order."""

    def eval_splits(self) -> dict[str, bool]:
        """The evaluation sets, each mapped to whether it has a ``mixed`` (all examples) condition."""
        return {"test": True}

    @abstractmethod
    def model_inputs(self, batch: dict[str, Tensor]) -> Any:
        """What the predictive model consumes (no label)."""

    # -- model and policy ----------------------------------------------------------
    @abstractmethod
    def model_args(self, model: dict) -> dict:
        """The full constructor arguments of the model for config section ``model`` (what a
        checkpoint stores); raises ``ValueError`` naming the key on a bad section."""

    @abstractmethod
    def build_model(self, model_args: dict) -> nn.Module:
        """The predictive model (:class:`l2o.models.step_model.StepModel`) at its
        initialisation, on the task's device, from :meth:`model_args`."""

    @abstractmethod
    def policy_args(self, policy: dict) -> dict:
        """The full constructor arguments of the stop policy for config section ``policy``."""

    def check_policy(self, policy: dict) -> None:
        """Raise ``ValueError`` naming the key on a bad config section ``policy``, before any work;
        by default by building :meth:`policy_args` (a task whose policy sizes depend on the model
        overrides this)."""
        self.policy_args(policy)

    @abstractmethod
    def build_policy(self, policy_args: dict) -> nn.Module:
        """A stop policy (random initialisation, from torch's global RNG) on the device."""

    # -- losses, policy input, metrics -------------------------------------------
    @abstractmethod
    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Per-step loss ``l_t`` against the label: states (K, B, ...) -> (B, K)."""

    @abstractmethod
    def policy_features(self, batch: dict[str, Tensor], states: Tensor, steps: Tensor, num_steps: int) -> Any:
        """The policy's input (no label) for states (K, B, ...) at 1-based ``steps`` (K,)."""

    def stop_logit_fn(self, policy: nn.Module):
        """A function ``(batch, states (K, B, ...), steps (K,), num_steps) -> stop logits (K, B)``.

        The default runs ``policy`` on :meth:`policy_features`. A task may return
        something cheaper that gives the same values (see the sparse-recovery task);
        whatever it precomputes from the policy's weights is computed here, so call
        this again after the weights change (once per training iteration).
        """
        return lambda batch, states, steps, num_steps: policy(self.policy_features(batch, states, steps, num_steps))

    @abstractmethod
    def step_metrics(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> dict[str, Tensor]:
        """Per-example, per-step metric components: states (K, B, ...) -> {name: (B, K)}.

        ``full=False`` may leave out costly components that :meth:`summarise` does
        not need for the headline metric (validation during training uses it).
        """

    @abstractmethod
    def summarise(self, components: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
        """The task's metrics over a set of examples: {name: (N,)} -> {metric: value}.

        ``weights`` (N,) weight the examples (the q-weighted per-step curves of
        the report). The headline metric :attr:`metric` is always among the keys.
        """

    @abstractmethod
    def conditions(self, batch: dict[str, Tensor]) -> np.ndarray:
        """The condition of each example (SNR block, noise level, ...), (B,) strings."""

    def state_change(self, states: Tensor) -> Tensor:
        """What the non-learned stopping rule thresholds: (K, B, ...) -> (B, K); by default
        the relative change of the state between steps (see :func:`relative_change`)."""
        return relative_change(states)

    # -- early exit ----------------------------------------------------------------
    def select(self, batch: dict[str, Tensor], keep: Tensor) -> dict[str, Tensor]:
        """The rows ``keep`` of a batch (early exit drops the examples that stopped)."""
        return select_rows(batch, keep)


def task_summary(task: StoppingTask) -> dict[str, Any]:
    """What a task is, for logs and checkpoints."""
    return {"task": task.name, "model": task.model_label, "metric": task.metric,
            "higher_is_better": task.higher_is_better, "data_hash": task.data_hash}
