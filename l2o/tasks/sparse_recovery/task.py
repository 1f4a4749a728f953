"""The sparse-recovery task: LISTA states, squared-error loss, policy features, NMSE."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from l2o.models.lista import LISTA, LISTAConfig
from l2o.models.stop_policy import StopPolicy
from l2o.tasks.base import StoppingTask


class SparseRecoveryTask(StoppingTask):
    """Recover sparse ``x*`` from ``y = A x* + noise``.

    Batches hold ``y`` (B, m), ``x`` (B, n) (the label ``x*``) and ``snr`` (B,).
    The per-step loss is the summed squared error ``||x_t - x*||^2`` (the
    oracle's beta is set on this scale). Policy features are
    ``[y, y - A x_t, x_t, t/T, 1 - t/T]`` (2m + n + 2 values).
    """

    name = "sparse_recovery"

    def __init__(
        self,
        A: Tensor,
        snr_db: list[float],
        sparsity: float,
        train_set: dict[str, Tensor] | None = None,
    ):
        self.A = A  # (m, n)
        self.m, self.n = A.shape
        self.snr_db = torch.as_tensor(snr_db, dtype=torch.float32)
        self.sparsity = float(sparsity)
        self.train_set = train_set

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], snr_db, sparsity, device="cpu"):
        A = torch.from_numpy(arrays["A"]).to(device)
        train = None
        if "train_y" in arrays:
            train = {
                "y": torch.from_numpy(arrays["train_y"]),
                "x": torch.from_numpy(arrays["train_x"]),
                "snr": torch.from_numpy(arrays["train_snr"]),
            }
        return cls(A, snr_db, sparsity, train)

    def to(self, device) -> "SparseRecoveryTask":
        self.A = self.A.to(device)
        return self

    # -- model ---------------------------------------------------------------
    def build_model(self, model_config: dict) -> LISTA:
        cfg = LISTAConfig(m=self.m, n=self.n, **model_config)
        return LISTA(cfg, self.A.cpu()).to(self.A.device)

    def model_inputs(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["y"]

    # -- losses and metric ---------------------------------------------------
    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Summed squared error per step: states (K, B, n) -> (B, K)."""
        return squared_error(states, batch["x"]).T

    def policy_in_features(self) -> int:
        return 2 * self.m + self.n + 2

    def stop_logit_fn(self, policy):
        """The policy's stop logits without forming the features (same values, float rounding).

        The features ``[y, y - A x_t, x_t, t/T, 1 - t/T]`` enter the policy through
        its linear first layer ``W = [W_y, W_r, W_x, w_p, w_q]``, so

        .. math:: W f_t + b = (W_y + W_r) y + b + (W_x - W_r A) x_t + (t/T) w_p + (1 - t/T) w_q:

        the ``y`` part once per example instead of once per step, no residual
        ``y - A x_t`` (an (m x n) product per step and example), and the per-step
        product over n inputs instead of 2m + n + 2. Gradients reach the policy's
        weights (and the states) exactly as through the features.
        """
        if not isinstance(policy, StopPolicy) or policy.config.in_features != self.policy_in_features():
            return super().stop_logit_fn(policy)
        m, n = self.m, self.n
        W, b = policy.first_layer.weight, policy.first_layer.bias  # (H, 2m + n + 2), (H,)
        W_y, W_r, W_x, w_p, w_q = W[:, :m], W[:, m:2 * m], W[:, 2 * m:2 * m + n], W[:, -2], W[:, -1]
        W_meas = W_y + W_r  # (H, m)
        W_state = W_x - W_r @ self.A  # (H, n)

        def logits(batch, states, steps, num_steps):
            pos = (steps.to(states) / num_steps).view(-1, 1, 1)  # (K, 1, 1)
            per_example = torch.addmm(b, batch["y"], W_meas.T)  # (B, H)
            per_step = pos * w_p + (1.0 - pos) * w_q  # (K, 1, H)
            first = (states @ W_state.T).add_(per_example).add_(per_step)  # (K, B, H)
            return policy.head(first)

        return logits

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
