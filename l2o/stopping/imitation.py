"""Stage II losses: make the policy's ``q_phi`` imitate the oracle ``q*``.

Each takes the policy's ``log q_phi`` (B, K) and the oracle's ``log q*`` (B, K)
(no gradient flows into the oracle) and returns a scalar (mean over the batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

STAGE2_LOSSES = ("forward_kl", "map", "reverse_kl")


def forward_kl_loss(log_q_policy: Tensor, log_q_oracle: Tensor) -> Tensor:
    """The paper's choice: ``-sum_t q*_t log q_phi(t)``.

    This is ``KL(q* || q_phi)`` up to the oracle's entropy, which does not
    depend on ``phi``, so the gradients are the same.

    >>> lq = torch.log(torch.tensor([[0.5, 0.5]]))
    >>> round(forward_kl_loss(lq, torch.log(torch.tensor([[1.0, 0.0]]))).item(), 4)
    0.6931
    """
    q_oracle = log_q_oracle.detach().exp()
    return -(q_oracle * log_q_policy).sum(dim=1).mean()


def map_loss(log_q_policy: Tensor, log_q_oracle: Tensor) -> Tensor:
    """What the released scripts train: ``-log q_phi(argmax_t q*_t)``.

    >>> lq = torch.log(torch.tensor([[0.25, 0.75]]))
    >>> round(map_loss(lq, torch.log(torch.tensor([[0.4, 0.6]]))).item(), 4)
    0.2877
    """
    target = log_q_oracle.detach().argmax(dim=1, keepdim=True)
    return -log_q_policy.gather(1, target).mean()


def reverse_kl_loss(log_q_policy: Tensor, log_q_oracle: Tensor) -> Tensor:
    """``KL(q_phi || q*) = sum_t q_phi(t) (log q_phi(t) - log q*_t)`` (mode seeking).

    >>> lq = torch.log(torch.tensor([[0.5, 0.5]]))
    >>> round(reverse_kl_loss(lq, torch.log(torch.tensor([[0.25, 0.75]]))).item(), 4)
    0.1438
    """
    q_policy = log_q_policy.exp()
    diff = log_q_policy - log_q_oracle.detach()
    # 0 * (-inf) terms where the policy puts no mass contribute 0
    return torch.where(q_policy > 0, q_policy * diff, torch.zeros_like(diff)).sum(dim=1).mean()


def stage2_loss(name: str, log_q_policy: Tensor, log_q_oracle: Tensor) -> Tensor:
    """Dispatch on the Stage II loss name (one of :data:`STAGE2_LOSSES`)."""
    if name == "forward_kl":
        return forward_kl_loss(log_q_policy, log_q_oracle)
    if name == "map":
        return map_loss(log_q_policy, log_q_oracle)
    if name == "reverse_kl":
        return reverse_kl_loss(log_q_policy, log_q_oracle)
    raise ValueError(f"unknown Stage II loss {name!r}; choose one of {STAGE2_LOSSES}")
