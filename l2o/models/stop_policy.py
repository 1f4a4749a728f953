"""The stopping policy: one MLP shared over steps, giving a stop logit per step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class StopPolicyConfig:
    """:param int in_features: size F of the per-step features.
    :param list hidden: hidden layer widths (paper: 256-128-16)."""

    in_features: int
    hidden: list[int] = field(default_factory=lambda: [256, 128, 16])

    def __post_init__(self):
        if self.in_features < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"policy sizes must be positive: {self.in_features}, {self.hidden}")


class StopPolicy(nn.Module):
    """MLP with ReLUs: features (..., F) -> stop logits (...); ``sigmoid`` is ``pi_t``.

    The sigmoid is the probability of STOPPING (the paper's ``pi``), not of
    continuing as in the released LISTA code.
    """

    def __init__(self, config: StopPolicyConfig):
        super().__init__()
        self.config = config
        sizes = [config.in_features, *config.hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)

    @property
    def first_layer(self) -> nn.Linear:
        """The input layer, (..., F) -> (..., H1); a task may compute it from its structure."""
        return self.net[0]

    def head(self, first_layer_output: Tensor) -> Tensor:
        """Everything after :attr:`first_layer`: (..., H1) -> stop logits (...)."""
        return self.net[1:](first_layer_output).squeeze(-1)

    @torch.no_grad()
    def head_layers(self) -> list[tuple[Tensor, Tensor]]:
        """``(bias, weight^T)`` of every layer after the first, for :func:`head_inplace` (a snapshot:
        take it again after the weights change)."""
        return [(m.bias, m.weight.T.contiguous()) for m in list(self.net)[1:] if isinstance(m, nn.Linear)]

    def describe(self) -> dict:
        """The constructor arguments (what a checkpoint stores), with the task's policy ``kind`` when the
        task set one (the task rebuilds the policy from them)."""
        kind = getattr(self, "kind", None)
        return {**({"kind": kind} if kind else {}), **asdict(self.config)}


def head_inplace(h: Tensor, layers: list[tuple[Tensor, Tensor]]) -> Tensor:
    """:meth:`StopPolicy.head` of a (B, H1) batch without autograd, in as few kernels as it takes: one
    ``addmm`` per layer of :meth:`StopPolicy.head_layers`, the ReLUs in place (``h`` is overwritten).
    Early exit evaluates the policy at every candidate step, where each kernel launch, and each line of
    Python, counts against the steps saved. (B, H1) -> (B,)."""
    for bias, weight_t in layers:
        h = torch.addmm(bias, h.relu_(), weight_t)
    return h.squeeze(-1)
