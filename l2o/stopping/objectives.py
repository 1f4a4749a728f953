"""Losses that train the predictive model: Stage I (oracle) and the joint objective.

All functions take per-step losses ``l_t`` of shape (B, K) and return a scalar
(mean over the batch). Names follow the paper (Chen et al., 2020, Sec. 3-4).
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.stopping.distribution import entropy
from l2o.stopping.oracle import check_beta, oracle_log_distribution, oracle_logits

STAGE1_LOSSES = ("full", "sampled", "no_entropy")


def soft_min_loss(losses: Tensor, beta: float, log_prior: Tensor | None = None) -> Tensor:
    """Stage I ``full``: the joint loss at the oracle, a soft-min over steps.

    .. math:: \\min_q L(\\theta, q) = -\\beta \\log \\sum_t p(t) \\exp(-\\ell_t/\\beta)

    Its gradient is ``sum_t q*_t grad l_t``. Computed with ``logsumexp`` (the
    released code's ``log(sum(exp))`` underflows).

    :param Tensor losses: (B, K) per-step losses.
    :return: scalar, mean over the batch.

    >>> round(soft_min_loss(torch.tensor([[0.0, 0.0]]), beta=1.0).item(), 4)
    -0.6931
    """
    logits = oracle_logits(losses, beta, log_prior)
    return -(check_beta(beta) * torch.logsumexp(logits, dim=1)).mean()


def sampled_oracle_loss(
    losses: Tensor,
    beta: float,
    log_prior: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stage I ``sampled``: draw ``t ~ q*`` (no gradient through the draw), return ``l_t``.

    Unbiased for the gradient of :func:`soft_min_loss`; only the drawn step
    needs its graph.

    :param Tensor losses: (B, K).
    :return: scalar, mean over the batch of the drawn steps' losses.
    """
    idx = draw_oracle_steps(losses, beta, log_prior, generator)
    return losses.gather(1, idx).mean()


def draw_oracle_steps(
    losses: Tensor,
    beta: float,
    log_prior: Tensor | None = None,
    generator: torch.Generator | None = None,
    mass_floor: float = 0.0,
) -> Tensor:
    """One step per example drawn from the oracle ``q*`` of its losses (mixed with the uniform by
    ``mass_floor``): (B, K) -> (B, 1) long, 0-based.

    Drawn on the CPU, so that a CPU generator gives the same draws on any device.
    """
    with torch.no_grad():
        q = oracle_log_distribution(losses.detach(), beta, log_prior).exp()
        if mass_floor:
            q = (1.0 - mass_floor) * q + mass_floor / q.shape[1]
        return torch.multinomial(q.cpu(), 1, generator=generator).to(losses.device)


def no_entropy_loss(losses: Tensor, beta: float, log_prior: Tensor | None = None) -> Tensor:
    """Stage I ``no_entropy``: ``sum_t q*_t(theta) l_t`` with the gradient through ``q*`` too.

    >>> round(no_entropy_loss(torch.tensor([[1.0, 1.0]]), beta=1.0).item(), 4)
    1.0
    """
    q = oracle_log_distribution(losses, beta, log_prior).exp()
    return (q * losses).sum(dim=1).mean()


def check_mass_floor(floor, key: str = "stage1.mass_floor") -> float:
    """``floor`` as a float in [0, 1) (``ValueError`` naming ``key``).

    >>> check_mass_floor(0.1)
    0.1
    """
    try:
        value = float(floor)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number in [0, 1), got {floor!r}") from None
    if isinstance(floor, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{key} must be a number in [0, 1), got {floor!r}")
    return value


def stage1_loss(
    name: str,
    losses: Tensor,
    beta: float,
    log_prior: Tensor | None = None,
    generator: torch.Generator | None = None,
    mass_floor: float = 0.0,
) -> Tensor:
    """Dispatch on the Stage I loss name (one of :data:`STAGE1_LOSSES`).

    ``mass_floor`` = eps > 0 mixes the loss with the mean over steps, ``(1 - eps) loss + eps mean_t l_t``:
    its gradient weights step t by ``(1 - eps) q*_t + eps / K``, so every step receives gradient even
    where ``q*`` underflows to 0 (a sharp oracle trains only the steps it already favours; with Adam a
    step's own parameters then learn at full speed whatever the size of that weight). 0: the paper's.

    >>> losses = torch.tensor([[0.0, 100.0]], requires_grad=True)
    >>> stage1_loss("full", losses, beta=0.1, mass_floor=0.1).backward()
    >>> losses.grad
    tensor([[0.9500, 0.0500]])
    """
    if name not in STAGE1_LOSSES:
        raise ValueError(f"unknown Stage I loss {name!r}; choose one of {STAGE1_LOSSES}")
    eps = check_mass_floor(mass_floor)
    if name == "full":
        loss = soft_min_loss(losses, beta, log_prior)
    elif name == "sampled":
        loss = sampled_oracle_loss(losses, beta, log_prior, generator)
    else:
        loss = no_entropy_loss(losses, beta, log_prior)
    if eps == 0.0:
        return loss
    return (1.0 - eps) * loss + eps * losses.mean(dim=1).mean()


def joint_objective(
    losses: Tensor, log_q: Tensor, beta: float, log_prior: Tensor | None = None
) -> Tensor:
    """The joint loss ``L(theta, q_phi) = E_{t~q} l_t - beta H(q)`` (Stage III and AEVB).

    With a prior ``p(t)`` the entropy term becomes ``beta KL(q || p)``. The
    expectation is exact (a sum over the K steps), so gradients reach both the
    model (through ``l_t``) and the policy (through ``q``).

    :param Tensor losses: (B, K) per-step losses.
    :param Tensor log_q: (B, K) the policy's ``log q_phi(t)``.
    :return: scalar, mean over the batch.

    >>> lq = torch.log(torch.tensor([[0.5, 0.5]]))
    >>> round(joint_objective(torch.tensor([[1.0, 3.0]]), lq, beta=1.0).item(), 4)
    1.3069
    """
    beta = check_beta(beta)
    q = log_q.exp()
    expected = (q * losses).sum(dim=1)
    if log_prior is None:
        reg = -entropy(log_q)
    else:
        kl_terms = q * (log_q - log_prior)
        reg = torch.where(q > 0, kl_terms, torch.zeros_like(kl_terms)).sum(dim=1)  # 0 log 0 = 0
    return (expected + beta * reg).mean()
