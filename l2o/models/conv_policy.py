"""The stopping policy over images: a small CNN shared over steps, giving a stop logit per image.

Like the released ``MulticlassNet`` of DnCNN-stop, plus the step position. For step ``t`` of
``T`` the caller passes the features ``[y, n_t, y - n_t]`` (noisy image, the model's noise
estimate at ``t``, the denoised image) and the position ``(t / T, 1 - t / T)``.

``sigmoid(logit)`` is the probability of STOPPING (the paper's ``pi_t``); the released code
used the probability of continuing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass
class ConvPolicyConfig:
    """:param int in_channels: channels of the per-step features (3: ``y, n_t, y - n_t``).
    :param int channels: C, width of every conv layer.
    :param int blocks: conv+BN+ReLU+MaxPool2 blocks; inputs need ``H, W >= 2**blocks``.
    :param bool position: append ``(t/T, 1 - t/T)`` to the pooled features."""

    in_channels: int = 3
    channels: int = 32
    blocks: int = 2
    position: bool = True

    def __post_init__(self):
        for key in ("in_channels", "channels", "blocks"):
            if getattr(self, key) < 1:
                raise ValueError(f"policy.{key} must be >= 1, got {getattr(self, key)}")


class ConvStopPolicy(nn.Module):
    """features (N, in_channels, H, W), position (N, 2) -> stop logits (N,).

    Layers: conv3x3(in -> C)+BN+ReLU+MaxPool2, then ``blocks - 1`` x
    [conv3x3(C -> C)+BN+ReLU+MaxPool2], conv3x3(C -> C), global average pool,
    concat position (if ``config.position``), Linear(C (+2) -> 1).
    The smallest input is ``H, W >= 2**blocks`` (4 for the default 2 blocks).
    Stack the T steps of a batch as ``N = T * B`` rows.

    >>> policy = ConvStopPolicy(ConvPolicyConfig(channels=8))
    >>> policy(torch.zeros(6, 3, 5, 5), torch.tensor([[0.5, 0.5]]).expand(6, 2)).shape
    torch.Size([6])
    """

    def __init__(self, config: ConvPolicyConfig | None = None):
        super().__init__()
        self.config = config = config or ConvPolicyConfig()
        C = config.channels
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for _ in range(config.blocks):
            layers += [
                nn.Conv2d(c_in, C, kernel_size=3, padding=1),
                nn.BatchNorm2d(C),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = C
        layers.append(nn.Conv2d(C, C, kernel_size=3, padding=1))
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(C + (2 if config.position else 0), 1)

    @property
    def min_size(self) -> int:
        """Smallest H and W accepted: ``2**blocks``."""
        return 2**self.config.blocks

    def forward(self, features: Tensor, position: Tensor | None = None) -> Tensor:
        """Stop logits.

        :param Tensor features: (N, in_channels, H, W), ``H, W >= 2**blocks``.
        :param Tensor position: (N, 2) = ``(t/T, 1 - t/T)``; required iff ``config.position``
            (ignored otherwise).
        :return: (N,) logits; ``sigmoid`` = probability of stopping.
        """
        cfg = self.config
        if features.dim() != 4 or features.shape[1] != cfg.in_channels:
            raise ValueError(
                f"features must be (N, {cfg.in_channels}, H, W), got shape {tuple(features.shape)}"
            )
        if min(features.shape[-2:]) < self.min_size:
            raise ValueError(
                f"features of shape {tuple(features.shape)} are too small: "
                f"{cfg.blocks} pooling blocks need H, W >= {self.min_size}"
            )
        h = self.features(features).mean(dim=(-2, -1))  # (N, C)
        if cfg.position:
            if position is None or tuple(position.shape) != (features.shape[0], 2):
                got = None if position is None else tuple(position.shape)
                raise ValueError(f"position must be ({features.shape[0]}, 2), got {got}")
            h = torch.cat([h, position.to(h)], dim=-1)
        return self.out(h).squeeze(-1)

    def describe(self) -> dict:
        return {"kind": "paper", **asdict(self.config)}
