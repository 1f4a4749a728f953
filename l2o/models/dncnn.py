"""Residual DnCNN (Zhang et al., 2017) with an output head after each trunk module (DnCNN-stop).

The network predicts the noise; the estimate at step ``t`` is

.. math:: \\hat x_t = y - h_t(f_t), \\quad f_t = m_t \\circ \\dots \\circ m_1(y),
   \\quad t = 1 .. T - 1,

and at the last step ``T = D - 1`` it is the plain DnCNN's own output
``y - m_D(f_{D-1})``. As in the released ``DnCNN_DS``:

- trunk ``m_1`` = conv(c -> C) + ReLU; ``m_i`` = conv(C -> C) + BN + ReLU for ``i = 2 .. D-1``;
  final conv ``m_D`` = conv(C -> c); every convolution is 3x3, padding 1, no bias;
- one unshared head ``h_t`` after ``m_t`` for ``t = 1 .. D-2`` (the block of ``m_{D-1}``
  is read out by ``m_D`` itself);
- so ``D`` layers give ``T = D - 1`` outputs (19 for the paper's 20 layers), and stopping
  at ``t < T`` costs ``t`` trunk convolutions plus the head's 1 (``conv1``) or 2 (``conv2``).

Estimates are not clamped; callers clamp to [0, 1] where they measure PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from l2o.models.step_model import StepModel

HEADS = ("conv2", "conv1")

#: std of the BN-weight initialisation of the released code, ``sqrt(2 / 9 / 64)``
#: (hard-coded for 64 channels there; kept whatever ``channels`` is).
BN_WEIGHT_STD = math.sqrt(2.0 / 9.0 / 64.0)
#: the released code clamps the BN weights to +-0.025 after drawing them.
BN_WEIGHT_CLAMP = 0.025


@dataclass
class DnCNNConfig:
    """Shape of a DnCNN with heads.

    :param int layers: D, convolutions of the plain DnCNN (paper: 20); ``T = D - 1`` steps.
    :param int channels: C, feature channels (paper: 64).
    :param str head: ``conv2`` = conv(C->C)+BN+ReLU+conv(C->c), the released code's head;
        ``conv1`` = a single conv(C->c), cheap.
    :param int image_channels: c, 1 for grayscale.
    """

    layers: int = 20
    channels: int = 64
    head: str = "conv2"
    image_channels: int = 1

    def __post_init__(self):
        if self.layers < 3:
            raise ValueError(f"model.layers must be >= 3, got {self.layers}")
        if self.channels < 1:
            raise ValueError(f"model.channels must be >= 1, got {self.channels}")
        if self.image_channels < 1:
            raise ValueError(f"model.image_channels must be >= 1, got {self.image_channels}")
        if self.head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {self.head!r}")


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


def _conv_bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(_conv(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _make_head(config: DnCNNConfig) -> nn.Module:
    if config.head == "conv1":
        return _conv(config.channels, config.image_channels)
    C, c = config.channels, config.image_channels
    return nn.Sequential(_conv_bn_relu(C), _conv(C, c))


@torch.no_grad()
def init_like_released(module: nn.Module) -> None:
    """The released code's initialisation, drawn from torch's global RNG.

    Convolutions: Kaiming normal (fan_in, ReLU gain), ``std = sqrt(2 / (9 C_in))``.
    BatchNorm: weight ~ N(0, sqrt(2/9/64)) clamped to +-0.025, bias 0 (running stats at
    their defaults).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(0.0, BN_WEIGHT_STD).clamp_(-BN_WEIGHT_CLAMP, BN_WEIGHT_CLAMP)
            m.bias.zero_()


class DnCNN(StepModel):
    """Residual DnCNN with ``T = layers - 1`` outputs; ``forward(noisy)`` -> (T, B, c, H, W).

    Step-wise use (early exit)::

        f = model.init_state(noisy)            # (B, c, H, W), the input itself
        for t in range(1, model.num_steps + 1):
            f = model.step(t, f, noisy)        # (B, C, H, W); rows can be dropped: f[keep]
            x_t = model.readout(t, f, noisy)   # (B, c, H, W) estimate at step t

    Parameters: :meth:`trunk_parameters` = ``m_1 .. m_D`` (the plain DnCNN, what the
    baseline trains); :meth:`head_parameters` = ``h_1 .. h_{D-2}``.

    :param DnCNNConfig config: the shape; weights are initialised as the released code
        (:func:`init_like_released`) from torch's global RNG.

    >>> model = DnCNN(DnCNNConfig(layers=5, channels=4, head="conv1"))
    >>> model.num_steps, tuple(model(torch.zeros(2, 1, 7, 9)).shape)
    (4, (4, 2, 1, 7, 9))
    >>> tuple(model(torch.zeros(2, 1, 7, 9), steps=[1, 4]).shape)
    (2, 2, 1, 7, 9)
    """

    def __init__(self, config: DnCNNConfig | None = None):
        super().__init__()
        self.config = config = config or DnCNNConfig()
        C, c, D = config.channels, config.image_channels, config.layers
        first = nn.Sequential(_conv(c, C), nn.ReLU(inplace=True))
        #: m_1 .. m_{D-1}; step t applies trunk[t - 1]
        self.trunk = nn.ModuleList([first] + [_conv_bn_relu(C) for _ in range(D - 2)])
        #: m_D, the plain DnCNN's output convolution (readout of the last step)
        self.final = _conv(C, c)
        #: h_1 .. h_{D-2}; readout at t < T applies heads[t - 1]
        self.heads = nn.ModuleList([_make_head(config) for _ in range(D - 2)])
        init_like_released(self)

    @property
    def num_steps(self) -> int:
        """T = layers - 1."""
        return self.config.layers - 1

    @property
    def summary_size(self) -> int:
        """F = C: the channel means of the trunk features (:meth:`summarize`)."""
        return self.config.channels

    def summarize(self, t: int, carry: Tensor, noisy: Tensor) -> Tensor:
        """The trunk features ``f_t`` pooled over the image, one mean per channel:
        (B, C, H, W) -> (B, C). A read of ``f_t`` (no convolution): cheap next to a trunk step."""
        return carry.mean(dim=(-2, -1))

    def init_state(self, noisy: Tensor) -> Tensor:
        """The carry before step 1: the input itself, (B, c, H, W)."""
        return noisy

    def step(self, t: int, carry: Tensor, noisy: Tensor) -> Tensor:
        """Trunk module ``m_t``: (B, C or c, H, W) -> features ``f_t`` (B, C, H, W); 1-based ``t``.

        ``noisy`` is unused (kept for the generic step-wise interface).
        """
        self._check_step(t)
        return self.trunk[t - 1](carry)

    def readout(self, t: int, carry: Tensor, noisy: Tensor) -> Tensor:
        """Estimate at step ``t``: ``noisy - h_t(f_t)`` (or ``noisy - m_D(f_T)`` at ``t = T``).

        :param Tensor carry: ``f_t``, (B, C, H, W).
        :param Tensor noisy: (B, c, H, W), the rows matching ``carry``.
        :return: (B, c, H, W), not clamped.
        """
        self._check_step(t)
        out = self.final if t == self.num_steps else self.heads[t - 1]
        return noisy - out(carry)

    def forward(self, noisy: Tensor, steps: list[int] | None = None, summaries: bool = False):
        """Estimates at ``steps``: (B, c, H, W) -> (K, B, c, H, W), not clamped; with ``summaries``
        also the pooled trunk features (K, B, C) (:meth:`summarize`).

        The trunk runs only up to ``max(steps)`` and only the heads asked for are applied
        (:meth:`StepModel.forward`). ``steps``: 1-based, strictly increasing; None = all T.
        """
        if steps is not None:
            for t in steps:
                self._check_step(int(t))
        return super().forward(noisy, steps, summaries)

    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        """``m_1 .. m_D`` (the plain DnCNN, including the final conv)."""
        yield from self.trunk.parameters()
        yield from self.final.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """``h_1 .. h_{D-2}`` (the intermediate heads only)."""
        yield from self.heads.parameters()

    def describe(self) -> dict:
        return asdict(self.config)

    def _check_step(self, t: int) -> None:
        if not 1 <= t <= self.num_steps:
            raise ValueError(f"step t must be in 1..{self.num_steps}, got {t}")
