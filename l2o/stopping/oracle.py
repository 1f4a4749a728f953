"""The oracle stop distribution (needs the label, so training time only).

.. math::

    q^*(t) \\propto p(t) \\exp(-\\ell_t / \\beta)

With a uniform prior this is ``softmax_t(-l_t / beta)``: as ``beta -> 0`` it
puts all mass on the best step, as ``beta -> inf`` it tends to the prior.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_beta(beta: float) -> float:
    """Raise ``ValueError`` unless ``beta`` is a positive finite number."""
    beta = float(beta)
    if not (beta > 0.0 and beta < float("inf")):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    return beta


def oracle_logits(losses: Tensor, beta: float, log_prior: Tensor | None = None) -> Tensor:
    """Unnormalised log oracle ``log p(t) - l_t / beta``.

    :param Tensor losses: (B, K) per-step losses ``l_t``.
    :param float beta: temperature, > 0.
    :param Tensor log_prior: (K,) or (B, K) log prior ``log p(t)``; None = uniform.
    :return: (B, K) logits whose log-softmax is ``log q*``.
    """
    beta = check_beta(beta)
    logits = -losses / beta
    if log_prior is not None:
        logits = logits + log_prior
    return logits


def oracle_log_distribution(
    losses: Tensor, beta: float, log_prior: Tensor | None = None
) -> Tensor:
    """``log q*(t)``, (B, K) -> (B, K); rows of ``exp`` sum to one.

    >>> oracle_log_distribution(torch.tensor([[1.0, 1.0]]), beta=1.0).exp()
    tensor([[0.5000, 0.5000]])
    """
    return torch.log_softmax(oracle_logits(losses, beta, log_prior), dim=1)


def oracle_distribution(losses: Tensor, beta: float, log_prior: Tensor | None = None) -> Tensor:
    """The oracle ``q*(t)``, (B, K) -> (B, K).

    >>> q = oracle_distribution(torch.tensor([[0.0, 1.0]]), beta=1.0)
    >>> torch.allclose(q, torch.softmax(torch.tensor([[0.0, -1.0]]), dim=1))
    True
    """
    return oracle_log_distribution(losses, beta, log_prior).exp()


def log_prior_from_probs(prior: Tensor) -> Tensor:
    """Log of a prior ``p(t)`` given as non-negative weights (normalised here), (K,) -> (K,)."""
    if (prior < 0).any() or prior.sum() <= 0:
        raise ValueError("prior weights must be non-negative with a positive sum")
    return torch.log(prior / prior.sum())
