"""The image stop policy: shapes, gradients, the position input, the minimum input size."""

from __future__ import annotations

import pytest
import torch

from l2o.models.conv_policy import ConvPolicyConfig, ConvStopPolicy


def policy(**kwargs) -> ConvStopPolicy:
    torch.manual_seed(0)
    return ConvStopPolicy(ConvPolicyConfig(**kwargs))


def position(N: int, t: torch.Tensor | float) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32).expand(N)
    return torch.stack([t, 1 - t], dim=-1)


@pytest.mark.parametrize("blocks", [1, 2, 3])
@pytest.mark.parametrize("H, W", [(8, 8), (9, 13), (40, 40), (50, 31)])
def test_output_shape(rng, blocks, H, W):
    net = policy(channels=8, blocks=blocks)
    x = torch.randn(5, 3, H, W, generator=rng)
    assert net(x, position(5, 0.3)).shape == (5,)


def test_default_architecture():
    net = ConvStopPolicy()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 32), (32, 32), (32, 32)]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 2
    assert (net.out.in_features, net.out.out_features) == (34, 1)
    assert net.describe() == dict(kind="paper", in_channels=3, channels=32, blocks=2, position=True)
    assert net.min_size == 4


@pytest.mark.parametrize("use_position", [True, False])
def test_gradient_reaches_every_parameter(rng, use_position):
    net = policy(channels=6, blocks=2, position=use_position)
    x = torch.randn(6, 3, 12, 12, generator=rng)
    pos = position(6, torch.linspace(0, 1, 6))
    net(x, pos).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_position_changes_the_logits_iff_enabled(rng):
    x = torch.randn(4, 3, 10, 10, generator=rng)
    with_pos = policy(channels=6).eval()
    assert not torch.allclose(with_pos(x, position(4, 0.1)), with_pos(x, position(4, 0.9)))
    without = policy(channels=6, position=False).eval()
    assert torch.equal(without(x, position(4, 0.1)), without(x, position(4, 0.9)))
    assert torch.equal(without(x, position(4, 0.1)), without(x))


def test_missing_or_misshaped_position_raises(rng):
    net = policy(channels=4)
    x = torch.randn(3, 3, 8, 8, generator=rng)
    with pytest.raises(ValueError, match="position"):
        net(x)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        net(x, torch.zeros(3, 1))


@pytest.mark.parametrize("blocks, shape", [(2, (2, 3, 3, 8)), (3, (2, 3, 8, 7)), (1, (1, 3, 1, 5))])
def test_too_small_input_raises_with_the_shape(blocks, shape):
    net = policy(channels=4, blocks=blocks)
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        net(torch.zeros(shape), position(shape[0], 0.5))


def test_smallest_input_works(rng):
    net = policy(channels=4, blocks=3)
    assert net(torch.randn(2, 3, 8, 8, generator=rng), position(2, 0.5)).shape == (2,)


def test_wrong_channel_count_raises():
    with pytest.raises(ValueError, match="in_channels|3"):
        policy(channels=4)(torch.zeros(2, 2, 8, 8), position(2, 0.5))


@pytest.mark.parametrize("key", ["in_channels", "channels", "blocks"])
def test_bad_config_raises_naming_the_key(key):
    with pytest.raises(ValueError, match=f"policy.{key}"):
        ConvPolicyConfig(**{key: 0})
