"""The stop-time distribution induced by a sequential stopping policy.

A policy gives, after each step ``t``, the probability ``pi_t`` of stopping
there. Stopping is sequential, so the stop time ``t`` has the distribution

.. math::

    q_\\phi(t) = \\pi_t \\prod_{\\tau < t} (1 - \\pi_\\tau), \\quad t < T, \\qquad
    q_\\phi(T) = \\prod_{\\tau < T} (1 - \\pi_\\tau).

Everything here works in log space from stop *logits* ``s_t`` (``pi_t =
sigmoid(s_t)``), so saturated logits never produce ``log 0``:
``log q(t) = logsigmoid(s_t) + sum_{tau<t} logsigmoid(-s_tau)``.
The last step's logit is ignored: at ``T`` the policy stops anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def stop_log_distribution(stop_logits: Tensor) -> Tensor:
    """Log of the stop-time distribution ``log q(t)``.

    :param Tensor stop_logits: (B, K) logits of the stop probability after each
        of K candidate steps; column ``K-1`` is ignored (stop for sure).
    :return: (B, K) ``log q(t)``; ``exp`` of each row sums to one.

    >>> logits = torch.tensor([[0.0, 0.0, 5.0]])
    >>> stop_log_distribution(logits).exp()
    tensor([[0.5000, 0.2500, 0.2500]])
    """
    if stop_logits.dim() != 2:
        raise ValueError(f"stop_logits must be (B, K), got shape {tuple(stop_logits.shape)}")
    log_stop = F.logsigmoid(stop_logits[:, :-1])  # (B, K-1)
    log_go = F.logsigmoid(-stop_logits[:, :-1])  # (B, K-1)
    # log prod_{tau<t} (1 - pi_tau), for t = 0 .. K-1
    log_survive = torch.cat(
        [torch.zeros_like(stop_logits[:, :1]), torch.cumsum(log_go, dim=1)], dim=1
    )  # (B, K)
    log_stop_here = torch.cat([log_stop, torch.zeros_like(stop_logits[:, :1])], dim=1)
    return log_survive + log_stop_here


def stop_distribution(stop_logits: Tensor) -> Tensor:
    """The stop-time distribution ``q(t)`` itself, (B, K); see :func:`stop_log_distribution`."""
    return stop_log_distribution(stop_logits).exp()


def stop_distribution_from_probs(stop_prob: Tensor) -> Tensor:
    """Product form ``q_t = pi_t prod_{s<t}(1 - pi_s)`` from probabilities (reference form).

    :param Tensor stop_prob: (B, K) stop probabilities; the last column is ignored.
    :return: (B, K) ``q``.

    >>> stop_distribution_from_probs(torch.tensor([[0.5, 0.5, 0.1]]))
    tensor([[0.5000, 0.2500, 0.2500]])
    """
    go = 1.0 - stop_prob[:, :-1]
    survive = torch.cat([torch.ones_like(stop_prob[:, :1]), torch.cumprod(go, dim=1)], dim=1)
    stop_here = torch.cat([stop_prob[:, :-1], torch.ones_like(stop_prob[:, :1])], dim=1)
    return survive * stop_here


def entropy(log_q: Tensor) -> Tensor:
    """Entropy ``H(q) = -sum_t q_t log q_t`` of each row, (B, K) -> (B,).

    >>> entropy(torch.log(torch.tensor([[0.5, 0.5]])))
    tensor([0.6931])
    """
    return -(log_q.exp() * log_q).nansum(dim=1)
