"""MAML-stop as a task: the steps are MAML's inner gradient steps, the states the adapted
parameters, the per-step loss the query loss, and the policy decides per few-shot task how
many inner steps it takes.

A batch holds B few-shot tasks (:mod:`l2o.tasks.few_shot.sampler`): ``support_x``,
``support_y``, ``support_mask`` (tasks of one batch have different shot counts and are
padded), ``query_x``, ``query_y`` and ``shots`` (the condition). The model is
:class:`~l2o.models.maml.MAML`: its state after step t is each task's adapted parameter
vector and divergence flag (K, B, P + 1). The stop policy is an MLP (:class:`~l2o.models.stop_policy.StopPolicy`)
that sees no query label: per step, the mean penultimate features of the support and of the
(unlabelled) query set at the adapted parameters, the support loss, the support error, and
the step position. Metrics are the query accuracy (%) or the query MSE per task, averaged
over the meta-test tasks with a 95% confidence interval over tasks (the paper's ± on 600
tasks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from l2o.config import take_fields
from l2o.models.maml import MAML, MAMLConfig
from l2o.models.task_losses import masked_mean, per_example_loss
from l2o.stopping.rules import cross_fitted_index, oracle_index
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.tasks.base import FeatureLogits, StopLogits, StoppingTask
from l2o.tasks.few_shot.data import (
    ClassificationDataConfig,
    RegressionDataConfig,
    read_data,
    write_classification_data,
    write_regression_data,
)
from l2o.tasks.few_shot.policy import FAST_IN_FEATURES, StepStatsLogits, check_kind
from l2o.tasks.few_shot.regression import fixed_regression_tasks, sample_regression_tasks
from l2o.tasks.few_shot.sampler import iter_fixed_tasks, sample_tasks

EVAL_CHUNK = 25  # tasks per batch of a fixed set (larger vmapped batches run slower per task here)
INPUT_KEYS = ("support_x", "support_y", "support_mask", "query_x")


@dataclass
class ModelSection:
    """Config section ``model``: the base network and MAML's inner loop (the task fills in the
    network's input and output sizes from the data)."""

    net: dict = field(default_factory=dict)
    num_steps: int = 10
    inner_lr: float = 0.1
    first_order: bool = False
    max_growth: float | None = None


@dataclass
class PolicySection:
    """Config section ``policy`` of a few-shot task (``candidate_threshold`` is the stages'):
    ``kind`` ``fast`` (step statistics and the support size; default) or ``paper`` (pooled
    support/query features, support loss and error), an MLP of ``hidden`` widths either way
    (:mod:`l2o.tasks.few_shot.policy`)."""

    kind: str = "fast"
    hidden: list[int] = field(default_factory=lambda: [64, 32])

    def __post_init__(self):
        check_kind(self.kind)


def mean_ci95(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% interval over tasks, ``1.96 sd / sqrt(n)``
    (the paper's ±); with ``weights`` a weighted mean and no interval.

    >>> mean, ci = mean_ci95(np.array([1.0, 3.0]))
    >>> mean, round(ci, 4)
    (2.0, 1.96)
    """
    v = np.asarray(values, dtype=np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        return float((w * v).sum() / max(w.sum(), 1e-300)), float("nan")
    if len(v) < 2 or not np.isfinite(v).all():  # one task, or a non-finite value: no interval
        return float(v.mean()), float("nan")
    ci = 1.96 * float(v.std(ddof=1)) / float(np.sqrt(len(v)))
    return float(v.mean()), ci


class FewShotTask(StoppingTask):
    """What classification and regression share: the MAML model, the policy, losses, conditions."""

    model_label = "maml"
    metric: str
    loss_kind: str  # "ce" or "mse"
    data_config: type  # the ``data`` section's dataclass
    write_data: Callable[[Any, Path], dict]  # writes the data file of such a section

    def __init__(self, arrays: dict, config, data_hash: str, device: str = "cpu"):
        self.arrays, self.config, self.data_hash, self.device = arrays, config, data_hash, str(device)
        self.learner: MAML | None = None  # the model whose states the policy reads (set by build_model)
        self._sets: dict[str, list[dict[str, Tensor]]] = {}

    @classmethod
    def prepare_data(cls, data: dict, out: Path) -> dict:
        return cls.write_data(take_fields(cls.data_config, data, "config section 'data'"), out)

    @classmethod
    def load(cls, data: Path, device: str = "cpu") -> "FewShotTask":
        arrays, config, data_hash = read_data(data)
        return cls(arrays, take_fields(cls.data_config, config, f"the data file {data}"), data_hash, device)

    # -- model and policy ----------------------------------------------------------
    def net_config(self) -> dict:
        """The base network's sizes that the data decides."""
        raise NotImplementedError

    def model_args(self, model: dict) -> dict:
        section = take_fields(ModelSection, model, "config section 'model'")
        net = {**section.net, **self.net_config()}
        cfg = take_fields(MAMLConfig, {"net": net, "num_steps": section.num_steps, "inner_lr": section.inner_lr,
                                       "first_order": section.first_order, "loss": self.loss_kind,
                                       "max_growth": section.max_growth},
                          "config section 'model'")
        return asdict(cfg)

    def build_model(self, model_args: dict) -> MAML:
        self.learner = MAML(take_fields(MAMLConfig, model_args, "model arguments")).to(self.device)
        return self.learner

    def policy_args(self, policy: dict) -> dict:
        section = take_fields(PolicySection, policy, "config section 'policy'")
        width = FAST_IN_FEATURES if section.kind == "fast" else self.policy_in_features()
        return {"kind": section.kind, **asdict(StopPolicyConfig(width, list(section.hidden)))}

    def check_policy(self, policy: dict) -> None:
        take_fields(PolicySection, policy, "config section 'policy'")

    def build_policy(self, policy_args: dict) -> StopPolicy:
        args = dict(policy_args)
        kind = check_kind(args.pop("kind", "paper"))  # checkpoints from before kinds: the paper's inputs
        policy = StopPolicy(take_fields(StopPolicyConfig, args, "policy arguments")).to(self.device)
        policy.kind = kind
        return policy

    def stop_logit_fn(self, policy) -> StopLogits:
        """The fast policy on MAML's step summaries and the support size
        (:class:`~l2o.tasks.few_shot.policy.StepStatsLogits`), or the paper's inputs (:meth:`policy_features`)."""
        if getattr(policy, "kind", "paper") == "fast":
            return StepStatsLogits(policy)
        return FeatureLogits(policy, self.policy_features)

    def policy_in_features(self) -> int:
        """Inputs of the ``paper`` policy: 2 D pooled features and 4 scalars."""
        if self.learner is None:
            raise RuntimeError("build the model before the policy: the policy reads the model's features")
        return 2 * self.learner.net.feature_dim + 4

    def model_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Support set and query inputs; never the query labels."""
        return {k: batch[k] for k in INPUT_KEYS}

    # -- losses, policy input, metrics ---------------------------------------------
    def _learner(self) -> MAML:
        if self.learner is None:
            raise RuntimeError("build (or load) the model first: its states are read through it")
        return self.learner

    def _diverged(self, states: Tensor) -> Tensor:
        """(K, B) bool: the task's inner loop had diverged by that step."""
        return self._learner().diverged(states)

    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """The query loss of every task after each step: states (K, B, P + 1) -> (B, K). A task
        whose inner loop diverged keeps its last good parameters (:meth:`MAML.step`), so its
        losses stay finite: those of the parameters it kept."""
        return self._query_losses(self._learner().predict(states, batch["query_x"]), batch)

    def support_error(self, outputs: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """How wrong the adapted model still is on its own support set: (K, B, S, out) -> (K, B)."""
        raise NotImplementedError

    def step_outputs(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> tuple[Tensor, dict]:
        """The query loss and the metrics from one prediction of the query set at every step."""
        outputs = self._learner().predict(states, batch["query_x"])  # (K, B, Q, out)
        return self._query_losses(outputs, batch), self._metrics(outputs, states, batch, full)

    def _query_losses(self, outputs: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return self._learner().task_loss(outputs, batch["query_y"]).T

    def step_metrics(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> dict[str, Tensor]:
        """Per-task metric components after each step, each (B, K) (:meth:`_metrics`)."""
        return self._metrics(self._learner().predict(states, batch["query_x"]), states, batch, full)

    def policy_features(self, batch, states, steps, num_steps):
        """The ``paper`` policy's inputs per step and task (no query label): mean support features,
        mean query features, the support loss (log), the support error, t/T and 1 - t/T:
        (K, B, 2D + 4). Two passes of the net's body (support, query); the support outputs come
        from the support features through the (linear) head."""
        net = self._learner()
        sx, sm, qx = batch["support_x"], batch["support_mask"], batch["query_x"]
        feats = net.features(states, sx, sm)  # (K, B, S, D)
        support = _masked_rows_mean(feats, sm)
        query = net.features(states, qx).mean(dim=-2)
        outputs = net.head_outputs(states, feats)
        loss = net.task_loss(outputs, batch["support_y"], sm).clamp_min(1e-8).log()
        error = self.support_error(outputs, batch)
        pos = (steps.to(states) / num_steps).view(-1, 1).expand_as(loss)
        return torch.cat([support, query, torch.stack([loss, error, pos, 1.0 - pos], dim=-1)], dim=-1)

    def conditions(self, batch: dict[str, Tensor]) -> np.ndarray:
        return np.array([f"shots{int(k)}" for k in batch["shots"].tolist()])

    def state_change(self, states: Tensor) -> Tensor:
        """The rule's input: how much the adapted parameters moved at each step, relative."""
        from l2o.tasks.base import relative_change

        return relative_change(self._learner().params(states))

    # -- fixed sets ----------------------------------------------------------------
    def _count(self, split: str) -> int:
        return {"val": self.config.val_tasks, "test": self.config.test_tasks}[split]

    def eval_batches(self, split: str) -> Iterator[dict[str, Tensor]]:
        if split not in ("val", "test"):
            raise KeyError(f"the few-shot data has no {split!r} set (val, test)")
        if split not in self._sets:
            self._sets[split] = [{k: v.to(self.device) for k, v in b.items()} for b in self._fixed(split)]
        yield from self._sets[split]


def _diverged_pct(components: dict[str, np.ndarray], weights: np.ndarray | None) -> dict[str, float]:
    if "diverged" not in components:
        return {}
    return {"diverged_pct": 100.0 * mean_ci95(components["diverged"], weights)[0]}


def _masked_rows_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over the rows of each task's support set that are real: (..., B, S, D), (B, S) -> (..., B, D)."""
    w = mask.to(values).unsqueeze(-1)  # (B, S, 1)
    return (values * w).sum(dim=-2) / w.sum(dim=-2).clamp_min(1.0)


class FewShotClassificationTask(FewShotTask):
    """N-way, k1-k2-shot image classification (paper Tables 4-5); metric: query accuracy (%)."""

    name = "few_shot_classification"
    metric = "accuracy"
    higher_is_better = True
    loss_kind = "ce"
    data_config = ClassificationDataConfig
    write_data = staticmethod(write_classification_data)

    def __init__(self, arrays: dict, config: ClassificationDataConfig, data_hash: str, device: str = "cpu"):
        super().__init__(arrays, config, data_hash, device)
        counts = arrays["counts"]
        images = arrays["images"]
        self.images = images if np.all(counts == images.shape[1]) else [images[c, :n] for c, n in enumerate(counts)]
        self.splits = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("split/")}
        self.names = [str(n) for n in arrays["names"]]
        self.sampler = config.sampler

    def net_config(self) -> dict:
        ch, H = self.arrays["images"].shape[2], self.arrays["images"].shape[3]
        return {"kind": "conv4", "in_channels": int(ch), "image_size": int(H), "out_features": self.config.ways}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        return sample_tasks(self.images, self.splits["train"], self.sampler, batch_size, generator, split="train",
                            names=self.names)

    def _fixed(self, split: str):
        return iter_fixed_tasks(self.images, self.splits[split], self.sampler, self._count(split), self.config.seed,
                                EVAL_CHUNK, split=split, names=self.names)

    def support_error(self, outputs, batch):
        """1 - the probability given to the true label, averaged over the real support examples."""
        p = outputs.softmax(dim=-1).gather(-1, batch["support_y"].expand(*outputs.shape[:-1]).unsqueeze(-1))
        return masked_mean(1.0 - p.squeeze(-1), batch["support_mask"])

    def _metrics(self, logits: Tensor, states: Tensor, batch: dict[str, Tensor], full: bool) -> dict[str, Tensor]:
        """``accuracy``: % of each task's query set classified right after each step, and
        ``diverged`` (1/0: its inner loop had blown up and it kept its last good parameters):
        each (B, K). With ``full``, the query set's two halves (alternate query examples: one of
        every class in each when a class has 2 or more) for the query-split oracle: the mean
        cross-entropy ``loss_a``/``loss_b`` and the number right ``right_a``/``right_b``.
        ``logits``: the query predictions (K, B, Q, ways)."""
        right = (logits.argmax(dim=-1) == batch["query_y"]).float()  # (K, B, Q)
        out = {"accuracy": 100.0 * right.mean(dim=-1).T, "diverged": self._diverged(states).float().T}
        if full:
            Q = right.shape[-1]
            if Q < 2:
                raise ValueError(f"the query-split oracle needs 2 or more query examples per task, got {Q} "
                                 "(data.ways x data.query_shots)")
            losses = per_example_loss(logits, batch["query_y"], "ce")  # (K, B, Q)
            for half, sl in (("a", slice(0, None, 2)), ("b", slice(1, None, 2))):
                out[f"loss_{half}"] = losses[..., sl].mean(dim=-1).T
                out[f"right_{half}"] = right[..., sl].sum(dim=-1).T
        return out

    def honest_oracle(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The query-split oracle: each half of a task's query set (alternate examples) is scored at
        the step the other half's cross-entropy chose (:func:`~l2o.stopping.rules.cross_fitted_index`);
        the accuracy over both halves."""
        idx_a, idx_b = cross_fitted_index(components["loss_a"], components["loss_b"])
        rows = np.arange(len(idx_a))
        picked = {k: v[rows, idx_a] for k, v in components.items()}
        right = components["right_a"][rows, idx_a] + components["right_b"][rows, idx_b]
        picked["accuracy"] = 100.0 * right / self.config.sampler.query_size
        return picked

    def summarise(self, components: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
        """Mean query accuracy (%) over tasks, its 95% interval (``accuracy_ci95``), and the % of
        tasks whose inner loop had diverged (``diverged_pct``)."""
        mean, ci = mean_ci95(components["accuracy"], weights)
        return {"accuracy": mean, "accuracy_ci95": ci, **_diverged_pct(components, weights)}


class FewShotRegressionTask(FewShotTask):
    """Regression with k1-k2 support points per task (sinusoids, linear functions); metric: query MSE."""

    name = "few_shot_regression"
    metric = "mse"
    higher_is_better = False
    gain_floor = 0.05
    loss_kind = "mse"
    data_config = RegressionDataConfig
    write_data = staticmethod(write_regression_data)

    def __init__(self, arrays: dict, config: RegressionDataConfig, data_hash: str, device: str = "cpu"):
        super().__init__(arrays, config, data_hash, device)
        self.family = config.family_config

    def net_config(self) -> dict:
        return {"kind": "mlp", "in_features": int(self.family.dim), "out_features": 1}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        return sample_regression_tasks(self.family, batch_size, generator)

    def _fixed(self, split: str):
        return fixed_regression_tasks(self.family, self._count(split), self.config.seed, EVAL_CHUNK, split=split)

    def support_error(self, outputs, batch):
        """Mean absolute error on the real support points."""
        return masked_mean((outputs - batch["support_y"]).abs().squeeze(-1), batch["support_mask"])

    def clean_error(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Each task's noise-free error after each step: the MSE against its true function at the
        ``clean_points`` inputs, (K, B, P + 1) -> (B, K)."""
        net = self._learner()
        return net.task_loss(net.predict(states, batch["clean_x"]), batch["clean_y"]).T

    def oracle_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Stage II's targets: the noise-free error (a property of the task, not of 10 noisy points)."""
        return self.clean_error(states, batch)

    def _metrics(self, outputs: Tensor, states: Tensor, batch: dict[str, Tensor], full: bool) -> dict[str, Tensor]:
        """``mse``: each task's noise-free error after each step (:meth:`clean_error`, the headline
        metric), ``query_mse``: its error on the noisy query points (the paper's query loss), and
        ``diverged`` (1/0: its inner loop had blown up and it kept its last good parameters): each
        (B, K). ``outputs``: the query predictions (K, B, Q, 1)."""
        per_point = per_example_loss(outputs, batch["query_y"], "mse")  # (K, B, Q)
        out = {"mse": self.clean_error(states, batch), "query_mse": per_point.mean(dim=-1).T,
               "diverged": self._diverged(states).float().T}
        return out

    def honest_oracle(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Each task's step chosen on its noisy query points, scored on its noise-free error."""
        idx = oracle_index(components["query_mse"])
        rows = np.arange(len(idx))
        return {k: v[rows, idx] for k, v in components.items()}

    def summarise(self, components: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
        """Mean noise-free MSE over tasks, its 95% interval (``mse_ci95``) and median over tasks
        (``mse_task_median``, robust to the odd task that blew up; not ``mse_median``, the median
        stop rule's reading), the mean error on the noisy query points
        (``query_mse``), and the % of tasks whose inner loop had diverged (``diverged_pct``)."""
        mean, ci = mean_ci95(components["mse"], weights)
        out = {"mse": mean, "mse_ci95": ci}
        if weights is None:
            out["mse_task_median"] = float(np.median(components["mse"]))
        if "query_mse" in components:
            out["query_mse"] = mean_ci95(components["query_mse"], weights)[0]
        return {**out, **_diverged_pct(components, weights)}

