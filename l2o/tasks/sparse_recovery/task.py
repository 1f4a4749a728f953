"""The sparse-recovery task: LISTA states, squared-error loss, policy features, NMSE."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from l2o.models.lista import LISTA, LISTAConfig
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig, head_inplace
from l2o.stopping.rules import cross_fitted_index
from l2o.tasks.base import StopLogits, StoppingTask
from l2o.tasks.sparse_recovery import SPEC
from l2o.tasks.sparse_recovery.data import ProblemConfig, load_problem, write_problem
from l2o.config import take_fields

EVAL_CHUNK = 1000  # examples per batch of a fixed set


@dataclass
class _PolicySection:
    """Config section ``policy`` of this task (``candidate_threshold`` is the stages')."""

    hidden: list[int] = field(default_factory=lambda: [256, 128, 16])


def condition_name(snr: float) -> str:
    """``snr20`` for an SNR of 20 dB."""
    return f"snr{int(round(float(snr)))}"


class SparseRecoveryTask(StoppingTask):
    """Recover sparse ``x*`` from ``y = A x* + noise``.

    Batches hold ``y`` (B, m), ``x`` (B, n) (the label ``x*``) and ``snr`` (B,).
    The per-step loss is the summed squared error ``||x_t - x*||^2`` (the
    oracle's beta is set on this scale). Policy features are
    ``[y, y - A x_t, x_t, t/T, 1 - t/T]`` (2m + n + 2 values). The metric is the
    paper's NMSE in dB (ratio of means), per SNR block and mixed.
    """

    name = SPEC.name
    model_label = SPEC.model_label
    metric = "nmse_db"
    higher_is_better = False

    def __init__(
        self,
        A: Tensor,
        snr_db: list[float],
        sparsity: float,
        train_set: dict[str, Tensor] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        data_hash: str = "",
        device: str = "cpu",
    ):
        self.A = A.to(device)  # (m, n)
        self.m, self.n = A.shape
        self.snr_db = torch.as_tensor(snr_db, dtype=torch.float32)
        self.sparsity = float(sparsity)
        self.train_set = train_set
        self.arrays = arrays or {}
        self.data_hash = data_hash
        self.device = str(device)

    # -- data ------------------------------------------------------------------
    @classmethod
    def prepare_data(cls, data: dict, out: Path) -> dict:
        return write_problem(take_fields(ProblemConfig, data, "config section 'data'"), out)

    @classmethod
    def load(cls, data: Path, device: str = "cpu") -> "SparseRecoveryTask":
        arrays, data_hash = load_problem(data)
        return cls.from_arrays(arrays, data_hash=data_hash, device=device)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], snr_db=None, sparsity=None, device="cpu", data_hash=""):
        A = torch.from_numpy(arrays["A"])
        train = None
        if "train_y" in arrays:
            train = {k: torch.from_numpy(arrays[f"train_{k}"]) for k in ("y", "x", "snr")}
        snr_db = arrays["meta_snr_db"].tolist() if snr_db is None else snr_db
        sparsity = float(arrays["meta_sparsity"]) if sparsity is None else sparsity
        return cls(A, snr_db, sparsity, train, arrays=arrays, data_hash=data_hash, device=device)

    def to(self, device) -> "SparseRecoveryTask":
        self.A = self.A.to(device)
        self.device = str(device)
        return self

    def split(self, name: str) -> dict[str, Tensor]:
        """A whole fixed set (``val``, ``test``, ``extra``) as one batch on the device."""
        if f"{name}_y" not in self.arrays:
            raise KeyError(f"the problem file has no {name!r} set")
        return {k: torch.from_numpy(self.arrays[f"{name}_{k}"]).to(self.device) for k in ("y", "x", "snr")}

    def eval_batches(self, split: str) -> Iterator[dict[str, Tensor]]:
        batch = self.split(split)
        N = len(batch["y"])
        for i in range(0, N, EVAL_CHUNK):
            yield {k: v[i:i + EVAL_CHUNK] for k, v in batch.items()}

    def inputs_batches(self, array: np.ndarray, where: str = "inputs") -> Iterator[dict[str, Tensor]]:
        """Batches ``{"y"}`` from measurements (N, m) (``l2o predict --inputs``)."""
        if array.ndim != 2 or array.shape[1] != self.m:
            raise ValueError(f"{where} has shape {tuple(array.shape)}, expected (N, {self.m})")
        y = torch.from_numpy(np.asarray(array, dtype=np.float32))
        for i in range(0, len(y), EVAL_CHUNK):
            yield {"y": y[i:i + EVAL_CHUNK].to(self.device)}

    def eval_splits(self) -> dict[str, bool]:
        """``test`` (SNR blocks and mixed) and, when generated, ``extra`` (unseen SNR levels)."""
        return {"test": True, **({"extra": False} if "extra_y" in self.arrays else {})}

    # -- model and policy ----------------------------------------------------------
    def model_args(self, model: dict) -> dict:
        return asdict(take_fields(LISTAConfig, {**model, "m": self.m, "n": self.n}, "config section 'model'"))

    def build_model(self, model_args: dict) -> LISTA:
        """LISTA at its ISTA initialisation; ``m`` and ``n`` default to the problem's."""
        cfg = take_fields(LISTAConfig, {"m": self.m, "n": self.n, **model_args}, "model arguments")
        if (cfg.m, cfg.n) != (self.m, self.n):
            raise ValueError(f"model arguments are for A of {cfg.m}x{cfg.n}, the problem has {self.m}x{self.n}")
        return LISTA(cfg, self.A.cpu()).to(self.device)

    def policy_args(self, policy: dict) -> dict:
        section = take_fields(_PolicySection, policy, "config section 'policy'")
        return asdict(StopPolicyConfig(self.policy_in_features(), list(section.hidden)))

    def build_policy(self, policy_args: dict) -> StopPolicy:
        return StopPolicy(take_fields(StopPolicyConfig, policy_args, "policy arguments")).to(self.device)

    def model_inputs(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["y"]

    # -- losses and metric ---------------------------------------------------
    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Summed squared error per step: states (K, B, n) -> (B, K)."""
        return squared_error(states, batch["x"]).T

    def step_metrics(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> dict[str, Tensor]:
        """``se`` = ``||x_t - x*||^2`` and ``energy`` = ``||x*||^2`` (repeated per step), each (B, K);
        with ``full`` also ``se_a`` / ``se_b``, the squared error over the even / odd coordinates of
        the signal (the honest oracle chooses on one and scores the other)."""
        se = self.step_losses(states, batch)
        out = {"se": se, "energy": batch["x"].pow(2).sum(dim=1, keepdim=True).expand_as(se)}
        if full:
            out["se_a"] = squared_error(states[..., 0::2], batch["x"][:, 0::2]).T
            out["se_b"] = squared_error(states[..., 1::2], batch["x"][:, 1::2]).T
        return out

    def honest_oracle(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each example's even coordinates scored at the step its odd coordinates' error chose, and
        vice versa (:func:`~l2o.stopping.rules.cross_fitted_index`): no error is chosen on itself."""
        idx_a, idx_b = cross_fitted_index(components["se_a"], components["se_b"])
        rows = np.arange(len(idx_a))
        return {"se": components["se_a"][rows, idx_a] + components["se_b"][rows, idx_b],
                "energy": components["energy"][:, -1]}

    def summarise(self, components: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
        """NMSE (dB), ratio of means: ``10 log10(mean ||x - x*||^2 / mean ||x*||^2)``.

        With ``weights`` the squared errors are averaged with them and the energy
        without (the paper's Fig. 4 q-weighted curve).

        >>> SparseRecoveryTask.summarise(None, {"se": np.array([1.0, 3.0]), "energy": np.array([10.0, 30.0])})
        {'nmse_db': -10.0}
        """
        se = np.asarray(components["se"], dtype=np.float64)
        energy = np.asarray(components["energy"], dtype=np.float64).mean()
        if weights is None:
            mean_se = se.mean()
        else:
            w = np.asarray(weights, dtype=np.float64)
            mean_se = (w * se).sum() / max(w.sum(), 1e-300)
        return {"nmse_db": float(10.0 * np.log10(mean_se / energy)) if mean_se > 0 else float("-inf")}

    def conditions(self, batch: dict[str, Tensor]) -> np.ndarray:
        return np.array([condition_name(s) for s in batch["snr"].tolist()])

    def influence(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """NMSE's linearisation, ``10 log10(e) se_i / mean(se)`` (the energy term is the same for any
        reading of the same examples and drops out of paired differences).

        >>> SparseRecoveryTask.influence(None, {"se": np.array([1.0, 3.0])}).round(3).tolist()
        [2.171, 6.514]
        """
        se = np.asarray(components["se"], dtype=np.float64)
        return (10.0 / np.log(10.0)) * se / max(se.mean(), 1e-300)

    def policy_in_features(self) -> int:
        return 2 * self.m + self.n + 2

    def stop_logit_fn(self, policy) -> StopLogits:
        """The policy's stop logits without forming the features (same values, float rounding):
        :class:`FoldedLogits` for the MLP this task builds, the features otherwise."""
        if not isinstance(policy, StopPolicy) or policy.config.in_features != self.policy_in_features():
            return super().stop_logit_fn(policy)
        return FoldedLogits(policy, self.A)

    def policy_features(self, batch, states, steps, num_steps):
        """``[y, y - A x_t, x_t, t/T, 1 - t/T]``: states (K, B, n) -> (K, B, 2m+n+2)."""
        K, B, _ = states.shape
        y = batch["y"].unsqueeze(0).expand(K, B, self.m)
        residual = y - states @ self.A.T
        pos = (steps.to(states) / num_steps).view(K, 1, 1).expand(K, B, 1)
        return torch.cat([y, residual, states, pos, 1.0 - pos], dim=2)

    # -- data ----------------------------------------------------------------
    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Fresh examples (CPU, from ``generator``), or rows of the fixed training set."""
        if self.train_set is not None:
            idx = torch.randint(len(self.train_set["y"]), (batch_size,), generator=generator)
            return {k: v[idx] for k, v in self.train_set.items()}
        A = self.A.cpu()
        support = torch.rand(batch_size, self.n, generator=generator) < self.sparsity
        x = torch.randn(batch_size, self.n, generator=generator) * support
        level = torch.randint(len(self.snr_db), (batch_size,), generator=generator)
        snr = self.snr_db[level]
        clean = x @ A.T
        noise_std = clean.std(dim=1, correction=0, keepdim=True) * 10.0 ** (-snr[:, None] / 20.0)
        y = clean + noise_std * torch.randn(batch_size, self.m, generator=generator)
        return {"y": y, "x": x, "snr": snr}


class FoldedLogits(StopLogits):
    """The MLP policy on ``[y, y - A x_t, x_t, t/T, 1 - t/T]`` with its first layer folded.

    The features enter the policy through its linear first layer ``W = [W_y, W_r, W_x, w_p, w_q]``, so

    .. math:: W f_t + b = (W_y + W_r) y + b + (W_x - W_r A) x_t + (t/T) w_p + (1 - t/T) w_q:

    the ``y`` part is the per-example context (computed once per batch, it leaves early exit with
    its rows), no residual ``y - A x_t`` (an (m x n) product per step and example) is formed, and
    the per-step product runs over n inputs instead of 2m + n + 2. Gradients reach the policy's
    weights (and the states) exactly as through the features. A step costs ``n H_1`` multiply-adds
    of the first layer plus the rest of the MLP (LISTA's step: ``m n + n^2``).
    """

    def __init__(self, policy: StopPolicy, A: Tensor):
        self.policy = policy
        m, n = A.shape
        W = policy.first_layer.weight  # (H, 2m + n + 2)
        W_y, W_r, W_x = W[:, :m], W[:, m:2 * m], W[:, 2 * m:2 * m + n]
        self.w_p, self.w_q, self.b = W[:, -2], W[:, -1], policy.first_layer.bias
        self.W_meas = W_y + W_r  # (H, m)
        self.W_state_T = (W_x - W_r @ A).T.contiguous()  # (n, H)
        self._per_step: dict[tuple[int, int], Tensor] = {}  # (t, T) -> (H,), the one-candidate path's
        self._head = policy.head_layers()

    def context(self, batch):
        """``(W_y + W_r) y + b`` per example, (B, H)."""
        return torch.addmm(self.b, batch["y"], self.W_meas.T)

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        if states.shape[0] == 1 and not torch.is_grad_enabled():  # early exit: one candidate, few kernels
            key = (int(steps[0]), int(num_steps))
            if key not in self._per_step:
                pos = key[0] / key[1]
                self._per_step[key] = pos * self.w_p + (1.0 - pos) * self.w_q
            if not self._head:  # a linear policy: one matrix-vector product per candidate
                return torch.addmv(ctx[:, 0], states[0], self.W_state_T[:, 0]).add_(self._per_step[key]).unsqueeze(0)
            first = torch.addmm(ctx, states[0], self.W_state_T).add_(self._per_step[key])  # (B, H)
            return head_inplace(first, self._head).unsqueeze(0)
        pos = (steps.to(states) / num_steps).view(-1, 1, 1)  # (K, 1, 1)
        per_step = pos * self.w_p + (1.0 - pos) * self.w_q  # (K, 1, H)
        first = (states @ self.W_state_T).add_(ctx).add_(per_step)  # (K, B, H)
        return self.policy.head(first)


class _SquaredError(torch.autograd.Function):
    """``sum((s - x)^2, -1)``, one step's block at a time, keeping no difference tensor.

    Autograd through ``(s - x).pow(2).sum(-1)`` materialises ``s - x`` for every
    step at once (as large as all iterates together) and makes three passes over
    it backward; here each (B, n) block is formed, used and dropped while it is
    still in cache, and the backward recomputes it (half the time on this CPU).
    """

    @staticmethod
    def forward(ctx, states: Tensor, target: Tensor) -> Tensor:
        ctx.save_for_backward(states, target)
        blocks = states.reshape(-1, *target.shape)
        out = states.new_empty(blocks.shape[:-1])
        for k, block in enumerate(blocks):
            diff = block - target
            out[k] = torch.linalg.vecdot(diff, diff)
        return out.view(states.shape[:-1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        states, target = ctx.saved_tensors
        blocks = states.reshape(-1, *target.shape)
        grads = grad.reshape(blocks.shape[:-1]).unsqueeze(-1) * 2.0
        grad_blocks = torch.empty_like(blocks)
        for k, block in enumerate(blocks):
            torch.sub(block, target, out=grad_blocks[k]).mul_(grads[k])  # 2 (s - x) g
        grad_target = -grad_blocks.sum(dim=0) if ctx.needs_input_grad[1] else None
        grad_states = grad_blocks.view(states.shape) if ctx.needs_input_grad[0] else None
        return grad_states, grad_target


def squared_error(states: Tensor, target: Tensor) -> Tensor:
    """``||x_t - x*||^2`` summed over the signal: (..., B, n), (B, n) -> (..., B)."""
    if states.shape[-target.dim():] != target.shape:
        raise ValueError(f"states {tuple(states.shape)} do not end in the target's shape {tuple(target.shape)}")
    return _SquaredError.apply(states, target)


def nmse_db(squared_errors: Tensor | np.ndarray, target_energy: Tensor | np.ndarray) -> float:
    """The paper's NMSE in dB: ratio of means, ``10 log10(mean ||x - x*||^2 / mean ||x*||^2)``.

    >>> nmse_db(np.array([1.0, 3.0]), np.array([10.0, 30.0]))
    -10.0
    """
    se = float(np.mean(np.asarray(squared_errors, dtype=np.float64)))
    energy = float(np.mean(np.asarray(target_energy, dtype=np.float64)))
    return float(10.0 * np.log10(se / energy))
