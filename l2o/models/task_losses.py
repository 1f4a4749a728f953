"""Per-example losses of a few-shot task and their mean over a task's real (unpadded) examples:
what MAML's inner loop descends on the support set and what the task scores on the query set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("ce", "mse")


def per_example_loss(outputs: Tensor, targets: Tensor, kind: str) -> Tensor:
    """Loss of every example: (..., N, out) outputs -> (..., N).

    :param Tensor outputs: (..., N, out) logits (``ce``) or predictions (``mse``).
    :param Tensor targets: ``ce``: long labels broadcastable to (..., N);
        ``mse``: floats broadcastable to (..., N, out).
    :param str kind: ``ce`` (cross-entropy) or ``mse`` (squared error, mean over ``out``).

    >>> per_example_loss(torch.zeros(2, 3), torch.tensor([0, 2]), "ce")
    tensor([1.0986, 1.0986])
    >>> per_example_loss(torch.ones(2, 1), torch.zeros(2, 1), "mse")
    tensor([1., 1.])
    """
    if kind == "ce":
        lead = outputs.shape[:-1]
        logits = outputs.reshape(-1, outputs.shape[-1])
        return F.cross_entropy(logits, targets.expand(lead).reshape(-1), reduction="none").reshape(lead)
    if kind == "mse":
        return (outputs - targets).square().mean(-1)
    raise ValueError(f"model.loss must be one of {LOSSES}, got {kind!r}")


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the last dim of ``values`` (..., N) weighted by a 0/1 ``mask`` (..., N).

    A row with no real example gives 0.

    >>> masked_mean(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1.0, 1.0, 0.0]))
    tensor(2.)
    """
    if mask is None:
        return values.mean(-1)
    mask = mask.to(values.dtype)
    values = torch.where(mask > 0, values, torch.zeros_like(values))  # no 0 * inf = nan
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1e-12)
