"""ISTA and FISTA for the LASSO ``min_x 1/2 ||y - A x||^2 + lambda ||x||_1``, batched in torch.

Step ``1/L`` and threshold ``rho/L`` (the paper's parametrisation, so
``lambda = rho``). Several (L, rho) settings run at once: ``L`` and ``rho``
of shape (S,) give iterates of shape (S, B, n).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from l2o.models.lista import soft_threshold


def lasso_objective(A: Tensor, y: Tensor, x: Tensor, lam: float) -> Tensor:
    """``1/2 ||y - A x||^2 + lam ||x||_1`` per example: (B, m), (B, n) -> (B,)."""
    return 0.5 * (y - x @ A.T).pow(2).sum(-1) + lam * x.abs().sum(-1)


def _prepare(A: Tensor, y: Tensor, L: Tensor, rho: Tensor):
    L = torch.as_tensor(L, dtype=y.dtype, device=y.device).reshape(-1, 1, 1)  # (S, 1, 1)
    rho = torch.as_tensor(rho, dtype=y.dtype, device=y.device).reshape(-1, 1, 1)
    gram = A.T @ A  # (n, n)
    Aty = y @ A  # (B, n)
    return gram, Aty, L, rho


def run_ista(
    A: Tensor,
    y: Tensor,
    L,
    rho,
    num_steps: int,
    fast: bool = False,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """ISTA (or FISTA with ``fast=True``) from ``x_0 = 0``.

    :param Tensor A: (m, n). :param Tensor y: (B, m).
    :param L: scalar or (S,) step constants. :param rho: scalar or (S,) thresholds.
    :param callback: called as ``callback(t, x_t)`` after each step t = 1..T.
    :return: the last iterate, (S, B, n).
    """
    gram, Aty, L, rho = _prepare(A, y, L, rho)
    S = max(L.shape[0], rho.shape[0])
    x = y.new_zeros(S, y.shape[0], A.shape[1])
    z, t_k = x, 1.0
    for t in range(1, num_steps + 1):
        point = z if fast else x
        x_new = soft_threshold(point - (point @ gram - Aty) / L, rho / L)
        if fast:
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t_k * t_k)) / 2.0
            z = x_new + ((t_k - 1.0) / t_next) * (x_new - x)
            t_k = t_next
        x = x_new
        if callback is not None:
            callback(t, x)
    return x


def step_squared_errors(
    A: Tensor, y: Tensor, x_true: Tensor, L, rho, num_steps: int, fast: bool, steps: list[int]
) -> dict[int, Tensor]:
    """``||x_t - x*||^2`` at the requested steps: {t: (S, B)}; non-finite iterates give inf."""
    out: dict[int, Tensor] = {}
    wanted = set(steps)

    def record(t, x):
        if t in wanted:
            err = (x - x_true).pow(2).sum(-1)
            out[t] = torch.nan_to_num(err, nan=float("inf"), posinf=float("inf"))

    run_ista(A, y, L, rho, num_steps, fast=fast, callback=record)
    return out
