"""Base networks of MAML (Finn et al., 2017), used functionally by :mod:`l2o.models.maml`.

Two networks, both split into a ``body`` (the representation, (N, ...) -> (N, D)) and a
linear ``head`` (D -> out):

- :class:`Conv4Net`, MAML's few-shot classifier: 4 x [conv3x3(C), padding 1 + BatchNorm2d +
  ReLU + MaxPool2] -> flatten -> Linear(out). An ``H x H`` image leaves ``floor`` halvings
  ``H -> H // 2`` four times, so ``D = C * (H // 16)**2`` (28 -> 1 x 1, 84 -> 5 x 5).
- :class:`MLPNet`, the sinusoid regressor: in -> hidden (ReLU) ... -> out (paper: 1-40-40-1).

BatchNorm keeps no running statistics (``track_running_stats=False``): it always normalises
with the statistics of the batch it is given, in training and evaluation alike. Its affine
parameters are ordinary parameters (meta-learned, and adapted by the inner loop, unlike the
released code where BN is not a MetaModule). Every ``forward``/``features`` takes an optional
``mask`` (N,) of 0/1 example weights: the statistics are then taken over the rows with mask 1
only, so padded examples of a few-shot task do not leak into them (the MLP ignores it).

The normalisation is written out from differentiable primitives (:func:`masked_batch_norm`),
not the fused ``batch_norm`` of ``nn.BatchNorm2d`` (which only holds the affine parameters
here): under ``vmap(grad(...))`` differentiated again by autograd -- second-order MAML over a
batch of tasks -- the fused op gives wrong meta-gradients on torch 2.13 (its first
derivative and its use outside ``vmap`` are right; cf. pytorch/functorch#534). The tests
compare the meta-gradient against a hand-written loop that uses the fused op without vmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import torch
from torch import Tensor, nn

NET_KINDS = ("conv4", "mlp")
#: pooling layers of Conv4Net; an image must be at least 2**4 pixels wide
CONV4_BLOCKS = 4


@dataclass
class MetaNetConfig:
    """Shape of a MAML base network.

    :param str kind: ``conv4`` (few-shot image classification) or ``mlp`` (regression).
    :param int in_channels: conv4: image channels (1 for Omniglot, 3 for mini-ImageNet).
    :param int image_size: conv4: H = W of the input (paper: 28 Omniglot, 84 mini-ImageNet);
        at least 16 (four halvings).
    :param int channels: conv4: C, channels of every conv (paper: 64; 32 for mini-ImageNet in
        Finn et al.).
    :param list hidden: mlp: hidden widths (paper: 40-40).
    :param int in_features: mlp: input size (1 for the sinusoid).
    :param int out_features: outputs: the number of ways, or 1 for regression.
    """

    kind: str = "conv4"
    in_channels: int = 1
    image_size: int = 28
    channels: int = 64
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    in_features: int = 1
    out_features: int = 5

    def __post_init__(self):
        if self.kind not in NET_KINDS:
            raise ValueError(f"model.kind must be one of {NET_KINDS}, got {self.kind!r}")
        for key in ("in_channels", "channels", "in_features", "out_features"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.kind == "conv4" and self.image_size < 2**CONV4_BLOCKS:
            raise ValueError(
                f"model.image_size must be >= {2**CONV4_BLOCKS} (four 2x2 max-pools), "
                f"got {self.image_size}"
            )
        self.hidden = [int(h) for h in self.hidden]
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"model.hidden must be a non-empty list of widths >= 1, got {self.hidden}"
            )


def masked_batch_norm(
    x: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor, eps: float = 1e-5
) -> Tensor:
    """Batch norm with batch statistics (biased variance), from differentiable primitives.

    Equals ``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)``; with a
    ``mask`` the statistics are taken over the rows with mask 1 only (the other rows are
    normalised too, and must be finite). Written out rather than calling the fused op
    because the fused op's second derivative is wrong under ``vmap`` (torch 2.13).

    :param Tensor x: (N, C, H, W) (any number of trailing spatial dims).
    :param Tensor mask: (N,) 0/1 weights, or None for all rows.
    :param Tensor weight: (C,) scale; ``bias``: (C,) shift.
    :return: (N, C, H, W).

    >>> x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    >>> w, b = torch.rand(3, dtype=x.dtype), torch.rand(3, dtype=x.dtype)
    >>> ref = torch.nn.functional.batch_norm(x[:4], None, None, w, b, training=True)
    >>> torch.allclose(masked_batch_norm(x[:4], None, w, b), ref)
    True
    >>> out = masked_batch_norm(x, torch.tensor([1.0, 1, 1, 1, 0, 0], dtype=x.dtype), w, b)
    >>> torch.allclose(out[:4], ref)
    True
    """
    shape = [1, -1, *[1] * (x.dim() - 2)]  # per channel
    spatial = tuple(range(1, x.dim() - 1))  # of a (C, H, W) row
    if mask is None:  # two passes (mean, then the centred squares): stable, and ~3x faster than
        # var_mean under vmap here
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=dims, keepdim=True)
    else:
        # tensordot over the rows: weighted sums without an (N, C, H, W) product to keep
        w = mask.to(x.dtype) / (mask.sum() * x[0, 0].numel()).clamp_min(1e-12)  # (N,)
        mean = torch.tensordot(w, x, dims=1).sum(spatial).reshape(shape)
        centred = x - mean
        var = torch.tensordot(w, centred.square(), dims=1).sum(spatial).reshape(shape)
    return centred * (weight.reshape(shape) * torch.rsqrt(var + eps)) + bias.reshape(shape)


class ConvBlock(nn.Module):
    """conv3x3(C_in -> C, padding 1) + BatchNorm2d (batch statistics) + ReLU + MaxPool2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out, track_running_stats=False)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C, H // 2, W // 2); ``mask`` (N,) restricts the BN statistics."""
        h = masked_batch_norm(self.conv(x), mask, self.bn.weight, self.bn.bias, self.bn.eps)
        return self.pool(torch.relu(h))


class Conv4Body(nn.Module):
    """The four conv blocks and the flatten: (N, c, H, H) -> (N, D)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        sizes = [in_channels] + [channels] * CONV4_BLOCKS
        self.blocks = nn.ModuleList([ConvBlock(a, b) for a, b in pairwise(sizes)])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x.flatten(1)


class MLPBody(nn.Module):
    """Linear + ReLU layers: (N, in) -> (N, hidden[-1]); ``mask`` is accepted and ignored."""

    def __init__(self, in_features: int, hidden: list[int]):
        super().__init__()
        sizes = [in_features, *hidden]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in pairwise(sizes)])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


class MetaNet(nn.Module):
    """A ``body`` (N, ...) -> (N, D) followed by a linear ``head`` D -> out.

    :meth:`features` is the body's output (the penultimate representation) and
    ``forward(x) = head(features(x))``. The parameter names are ``body.*`` then ``head.*``
    (the order :class:`~l2o.models.maml.MAML` flattens them in).
    """

    body: nn.Module
    head: nn.Linear
    feature_dim: int

    def features(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(N, ...) -> (N, D)."""
        return self.body(x, mask)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(N, ...) -> (N, out)."""
        return self.head(self.body(x, mask))


class Conv4Net(MetaNet):
    """MAML's 4-conv classifier: (N, c, H, H) -> logits (N, out); ``D = C (H // 16)^2``.

    >>> net = Conv4Net(MetaNetConfig(channels=8, image_size=28, out_features=5))
    >>> net.feature_dim, tuple(net(torch.zeros(3, 1, 28, 28)).shape)
    (8, (3, 5))
    """

    def __init__(self, config: MetaNetConfig):
        super().__init__()
        self.config = config
        self.body = Conv4Body(config.in_channels, config.channels)
        side = config.image_size
        for _ in range(CONV4_BLOCKS):
            side //= 2
        self.feature_dim = config.channels * side * side
        self.head = nn.Linear(self.feature_dim, config.out_features)


class MLPNet(MetaNet):
    """MLP with ReLUs: (N, in) -> (N, out); ``features`` = the last hidden layer (after ReLU).

    >>> net = MLPNet(MetaNetConfig(kind="mlp", hidden=[40, 40], out_features=1))
    >>> net.feature_dim, tuple(net(torch.zeros(10, 1)).shape)
    (40, (10, 1))
    """

    def __init__(self, config: MetaNetConfig):
        super().__init__()
        self.config = config
        self.body = MLPBody(config.in_features, config.hidden)
        self.feature_dim = config.hidden[-1]
        self.head = nn.Linear(self.feature_dim, config.out_features)


NETS = {"conv4": Conv4Net, "mlp": MLPNet}


def build_meta_net(config: MetaNetConfig) -> MetaNet:
    """The network of ``config.kind``, initialised with PyTorch's defaults (global RNG)."""
    return NETS[config.kind](config)
