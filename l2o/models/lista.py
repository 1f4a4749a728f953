"""LISTA (Gregor & LeCun, 2010), untied: one set of weights per step.

.. math:: x_t = \\eta_{\\theta_t}(W^1_t y + W^2_t x_{t-1}), \\quad x_0 = 0,

initialised at ISTA (``W1 = A^T / L``, ``W2 = I - A^T A / L``, ``theta = rho / L``),
so that an untrained LISTA with the exact soft threshold *is* ISTA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from l2o.models.lista_fused import lista_exact_forward
from l2o.models.step_model import check_steps

SOFT_THRESHOLDS = ("exact", "smooth")


def soft_threshold(v: Tensor, theta: Tensor | float) -> Tensor:
    """Exact soft threshold ``sign(v) max(|v| - theta, 0)``.

    >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.5, 3.0]), 1.0)
    tensor([-1., -0.,  0.,  2.])
    """
    return torch.sign(v) * torch.relu(v.abs() - theta)


def smooth_soft_threshold(v: Tensor, theta: Tensor | float, sharpness: float = 5.0) -> Tensor:
    """The released code's variant: ``sign`` replaced by ``2 sigmoid(k v) - 1``."""
    return (2.0 * torch.sigmoid(sharpness * v) - 1.0) * torch.relu(v.abs() - theta)


@dataclass
class LISTAConfig:
    """Shape and initialisation of a LISTA network.

    :param int m: measurements (rows of A).
    :param int n: signal length (columns of A).
    :param int T: number of layers (unrolled steps).
    :param float L: step-size constant of the ISTA initialisation.
    :param float rho: threshold constant (threshold = rho / L).
    :param str soft_threshold: ``exact`` (paper) or ``smooth`` (released code).
    :param float smooth_sharpness: k of the smoothed sign.
    """

    m: int
    n: int
    T: int
    L: float = 3.0
    rho: float = 0.1
    soft_threshold: str = "exact"
    smooth_sharpness: float = 5.0

    def __post_init__(self):
        if self.T < 2:
            raise ValueError(f"T must be >= 2, got {self.T}")
        if self.soft_threshold not in SOFT_THRESHOLDS:
            raise ValueError(
                f"unknown soft_threshold {self.soft_threshold!r}; choose one of {SOFT_THRESHOLDS}"
            )
        if self.L <= 0:
            raise ValueError(f"L must be > 0, got {self.L}")


class LISTA(nn.Module):
    """Untied LISTA; ``forward(y)`` returns every iterate ``xs`` of shape (T, B, n).

    Step-wise use (for early exit): ``x = model.init_state(y)`` then
    ``x = model.step(t, x, y)`` for ``t = 1 .. T``.
    """

    fused: bool = True  # use the hand-written forward/backward where it applies (see forward)
    summary_size = 0  # no step summaries: a policy reads the iterate itself (the carry)

    def __init__(self, config: LISTAConfig, A: Tensor | None = None):
        super().__init__()
        self.config = config
        T, m, n = config.T, config.m, config.n
        self.W1 = nn.Parameter(torch.zeros(T, n, m))  # applied as y @ W1_t^T
        self.W2 = nn.Parameter(torch.zeros(T, n, n))
        self.theta = nn.Parameter(torch.zeros(T))
        if A is not None:
            self.reset_to_ista(A)

    @property
    def num_steps(self) -> int:
        return self.config.T

    @torch.no_grad()
    def reset_to_ista(self, A: Tensor) -> None:
        """Set every layer to one ISTA step with step ``1/L`` and threshold ``rho/L``."""
        cfg = self.config
        if tuple(A.shape) != (cfg.m, cfg.n):
            raise ValueError(f"A has shape {tuple(A.shape)}, LISTA expects ({cfg.m}, {cfg.n})")
        A = A.to(self.W1)
        w1 = A.T / cfg.L
        w2 = torch.eye(cfg.n, dtype=A.dtype, device=A.device) - A.T @ A / cfg.L
        self.W1.copy_(w1.expand_as(self.W1))
        self.W2.copy_(w2.expand_as(self.W2))
        self.theta.fill_(cfg.rho / cfg.L)

    def shrink(self, v: Tensor, t: int) -> Tensor:
        theta = self.theta[t - 1]
        if self.config.soft_threshold == "exact":
            return soft_threshold(v, theta)
        return smooth_soft_threshold(v, theta, self.config.smooth_sharpness)

    def init_state(self, y: Tensor) -> Tensor:
        """``x_0 = 0``, (B, n). Without autograd, also decides (one check per batch) whether
        :meth:`step` may run the in-place kernel of the fused forward (exact threshold, every
        ``theta >= 0``)."""
        if not torch.is_grad_enabled():
            self._inplace = self.config.soft_threshold == "exact" and bool((self.theta >= 0).all())
        return y.new_zeros(y.shape[0], self.config.n)

    def step(self, t: int, x: Tensor, y: Tensor, weights: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """One layer: (B, n), (B, m) -> (B, n); ``t`` is 1-based.

        ``weights`` = (W1_t, W2_t) when the caller has already split them (see :meth:`forward`).
        Without autograd (after :meth:`init_state`) this is the fused forward's step: two
        GEMMs into one buffer and the threshold in place (early exit runs what step T costs).
        """
        w1, w2 = weights if weights is not None else (self.W1[t - 1], self.W2[t - 1])
        if not torch.is_grad_enabled() and getattr(self, "_inplace", False):
            v = torch.mm(y, w1.T)
            if t > 1:
                v.addmm_(x, w2.T)
            th = self.theta[t - 1]
            return v.sub_(torch.clamp(v, min=-th, max=th))
        v = y @ w1.T
        if t > 1:  # x_0 = 0 contributes nothing
            v = torch.addmm(v, x, w2.T)
        return self.shrink(v, t)

    def readout(self, t: int, x: Tensor, y: Tensor) -> Tensor:
        """The state after step ``t`` is the iterate itself, (B, n)."""
        return x

    def forward(self, y: Tensor, steps: list[int] | None = None, num_steps: int | None = None,
                summaries: bool = False) -> Tensor:
        """Iterates at ``steps`` (1-based, increasing; default all): (B, m) -> (K, B, n).

        ``num_steps`` is the older spelling of ``steps = 1..num_steps``. With the exact
        soft threshold and every ``theta >= 0`` (always so at the ISTA initialisation,
        and in practice after training) this runs the hand-written forward/backward of
        :mod:`l2o.models.lista_fused`; otherwise, or with ``model.fused = False``, step
        by step under autograd (:meth:`forward_stepwise`). Nothing past ``max(steps)``
        is computed.
        """
        if summaries:
            raise ValueError("LISTA has no step summaries: its states are its carry (summary_size = 0)")
        if steps is None and num_steps is not None:
            steps = list(range(1, num_steps + 1))
        steps = check_steps(steps, self.num_steps)
        K = steps[-1]
        if self.fused and self.config.soft_threshold == "exact" and bool((self.theta[:K] >= 0).all()):
            xs = lista_exact_forward(y, self.W1[:K], self.W2[:K], self.theta[:K])
        else:
            xs = self.forward_stepwise(y, K)
        return xs if len(steps) == K else xs[torch.tensor(steps, device=xs.device) - 1]

    def forward_stepwise(self, y: Tensor, num_steps: int | None = None) -> Tensor:
        """The reference path: :meth:`step` T times under autograd, (B, m) -> (T, B, n)."""
        # Split the stacked weights once: indexing W[t-1] at every step makes autograd
        # build and add a zero gradient of the whole (T, ...) tensor per step.
        W1s, W2s = self.W1.unbind(0), self.W2.unbind(0)
        x = self.init_state(y)
        xs = []
        for t in range(1, (num_steps or self.num_steps) + 1):
            x = self.step(t, x, y, (W1s[t - 1], W2s[t - 1]))
            xs.append(x)
        return torch.stack(xs)

    def describe(self) -> dict:
        return asdict(self.config)
