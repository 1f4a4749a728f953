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


class StopLogits:
    """A task's stop policy as stop logits, for every path that needs them: Stage II and joint
    training, the compute-everything evaluation (:func:`l2o.outputs.collect`) and early exit
    (:func:`l2o.stopping.inference.predict_early_exit`).

    ``logits(context(batch), states (K, B, ...), steps (K,), T, summaries (K, B, F) or None)``
    gives (K, B); calling the object does both for one batch. :meth:`context` holds the
    per-example terms computed once per batch (rows first: early exit drops the rows of the
    examples that stopped, with :func:`~l2o.models.step_model.take_rows`).

    Class attributes say what the logits read, so that early exit computes no more:
    ``reads_states`` -- each candidate's state (early exit then reads out every active example at
    each candidate; otherwise only those that stop), ``reads_summaries`` -- the model's step
    summaries (:meth:`l2o.models.step_model.StepModel.summarize`).
    """

    reads_states: bool = True
    reads_summaries: bool = False

    def context(self, batch: dict[str, Tensor]) -> Any:
        """Per-example terms of a batch, rows first (default: the batch itself)."""
        return batch

    def logits(self, ctx: Any, states: Tensor | None, steps: Tensor, num_steps: int,
               summaries: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, batch: dict[str, Tensor], states: Tensor | None, steps: Tensor, num_steps: int,
                 summaries: Tensor | None = None) -> Tensor:
        return self.logits(self.context(batch), states, steps, num_steps, summaries)


class FeatureLogits(StopLogits):
    """The plain way: ``policy(features(batch, states, steps, T))`` (the task's
    :meth:`StoppingTask.policy_features`); the context is the batch."""

    def __init__(self, policy: nn.Module, features):
        self.policy, self.features = policy, features

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        return self.policy(self.features(ctx, states, steps, num_steps))


def model_outputs(net: nn.Module, inputs: Any, steps: list[int] | None, logits: StopLogits | None):
    """``(states (K, B, ...), summaries (K, B, F) or None)`` of ``net`` at ``steps``, with the step
    summaries only when ``logits`` reads them."""
    if logits is not None and logits.reads_summaries:
        return net(inputs, steps, summaries=True)
    return net(inputs, steps), None


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

    def candidate_batches(self) -> Iterator[dict[str, Tensor]]:
        """The examples Stage II picks its candidate steps on (the steps where the oracle's mean mass on
        them exceeds ``policy.candidate_threshold``): by default the validation set. A task whose
        validation set has few examples (a handful of images) gives more here."""
        yield from self.eval_batches("val")

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

    def oracle_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """What the oracle ``q*`` of Stage II (and the candidate steps) is built from, (B, K): by default
        :meth:`step_losses`. A task that knows a less noisy measure of each step's quality (the
        noise-free error of a regression task) returns it here."""
        return self.step_losses(states, batch)

    @abstractmethod
    def policy_features(self, batch: dict[str, Tensor], states: Tensor, steps: Tensor, num_steps: int) -> Any:
        """The policy's input (no label) for states (K, B, ...) at 1-based ``steps`` (K,)."""

    def stop_logit_fn(self, policy: nn.Module) -> StopLogits:
        """The policy as a :class:`StopLogits`: ``fn(batch, states (K, B, ...), steps (K,), num_steps,
        summaries=None) -> stop logits (K, B)``, with ``fn.context`` / ``fn.logits`` for early exit.

        The default runs ``policy`` on :meth:`policy_features`. A task may return
        something cheaper that gives the same values (see the sparse-recovery task), or a
        policy that reads the model's step summaries; whatever it precomputes from the
        policy's weights is computed here, so call this again after the weights change
        (once per training iteration).
        """
        return FeatureLogits(policy, self.policy_features)

    def step_outputs(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> tuple[Tensor, dict]:
        """``(step_losses, step_metrics)`` of the same states in one call: a task whose loss and metrics
        share an expensive read-out (the query predictions of every adapted model) computes it once here."""
        return self.step_losses(states, batch), self.step_metrics(states, batch, full=full)

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

    def honest_oracle(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """An oracle that chooses each example's step on data it is not scored on: metric components
        at the chosen steps ``{name: (N,)}`` from the components of every step ``{name: (N, T)}``
        (:meth:`step_metrics` with ``full``), or None when the task has none (the report then shows
        the optimistic oracle alone, labelled). Cross-fitting helpers: :mod:`l2o.stopping.rules`."""
        return None

    def influence(self, components: dict[str, np.ndarray]) -> np.ndarray | None:
        """Each example's share of the headline metric to first order, (N,): the metric of a set is
        ``mean(influence) + const`` for small changes. By default the per-example component named
        like the metric when there is one (the metric is its mean: PSNR, accuracy, MSE), else None
        (paired intervals then use the jackknife); a task whose metric is not a mean of such a
        component (NMSE, a ratio of means) overrides this. See :mod:`l2o.paired`."""
        if self.metric not in components:
            return None
        return np.asarray(components[self.metric], dtype=np.float64)

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
