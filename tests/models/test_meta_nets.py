"""MAML's base networks: shapes, features/head split, batch-statistics BN, masked BN, config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from l2o.models.meta_nets import (
    Conv4Net,
    MetaNetConfig,
    MLPNet,
    build_meta_net,
    masked_batch_norm,
)

F64 = torch.float64


def conv4(image_size: int = 16, channels: int = 4, in_channels: int = 1, ways: int = 3) -> Conv4Net:
    torch.manual_seed(0)
    config = MetaNetConfig(kind="conv4", in_channels=in_channels, image_size=image_size,
                           channels=channels, out_features=ways)
    return build_meta_net(config).double()


@pytest.mark.parametrize("size, side", [(16, 1), (20, 1), (28, 1), (32, 2), (47, 2)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_conv4_shapes(rng, size, side, in_channels):
    net = conv4(size, channels=4, in_channels=in_channels, ways=5)
    assert isinstance(net, Conv4Net)
    assert net.feature_dim == 4 * side * side
    x = torch.randn(6, in_channels, size, size, generator=rng, dtype=F64)
    assert net.features(x).shape == (6, net.feature_dim)
    assert net(x).shape == (6, 5)


def test_mlp_shapes_and_features_are_last_hidden(rng):
    torch.manual_seed(0)
    net = build_meta_net(MetaNetConfig(kind="mlp", in_features=2, hidden=[7, 5], out_features=1))
    assert isinstance(net, MLPNet) and net.feature_dim == 5
    x = torch.randn(9, 2, generator=rng)
    h = torch.relu(net.body.layers[1](torch.relu(net.body.layers[0](x))))
    assert torch.equal(net.features(x), h)
    assert torch.allclose(net(x), net.head(h))
    assert net(x).shape == (9, 1)


@pytest.mark.parametrize("kind", ["conv4", "mlp"])
def test_forward_is_head_of_features(rng, kind):
    net = conv4() if kind == "conv4" else build_meta_net(MetaNetConfig(kind="mlp")).double()
    shape = (4, 1, 16, 16) if kind == "conv4" else (4, 1)
    x = torch.randn(*shape, generator=rng, dtype=F64)
    assert torch.allclose(net(x), net.head(net.features(x)))
    names = [n for n, _ in net.named_parameters()]
    assert names[-2:] == ["head.weight", "head.bias"]
    assert all(n.startswith("body.") for n in names[:-2])


def test_bn_uses_batch_statistics_in_eval_too(rng):
    net = conv4()
    assert list(net.buffers()) == []  # no running statistics
    x = torch.randn(5, 1, 16, 16, generator=rng, dtype=F64)
    out_train = net.train()(x)
    out_eval = net.eval()(x)
    assert torch.equal(out_train, out_eval)
    # batch statistics: an example's output depends on the rest of the batch
    assert not torch.allclose(net(x[:2])[0], out_eval[0])


@pytest.mark.parametrize("mask", [None, "ones"])
def test_composite_bn_equals_fused_batch_norm(rng, mask):
    x = 3.0 + torch.randn(5, 3, 4, 4, generator=rng, dtype=F64)
    w, b = torch.rand(3, generator=rng, dtype=F64), torch.rand(3, generator=rng, dtype=F64)
    ref = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    m = None if mask is None else torch.ones(5, dtype=F64)
    assert torch.allclose(masked_batch_norm(x, m, w, b, eps=1e-5), ref, atol=1e-12)


def test_conv4_block_is_conv_batchnorm_relu_pool(rng):
    net = conv4()
    block = net.body.blocks[0]
    x = torch.randn(5, 1, 16, 16, generator=rng, dtype=F64)
    ref = F.max_pool2d(torch.relu(block.bn(block.conv(x))), 2)  # the fused nn.BatchNorm2d
    assert torch.allclose(block(x), ref, atol=1e-12)


def test_masked_rows_do_not_enter_the_statistics(rng):
    net = conv4()
    x = torch.randn(4, 1, 16, 16, generator=rng, dtype=F64)
    garbage = 1e3 * torch.randn(3, 1, 16, 16, generator=rng, dtype=F64)
    padded = torch.cat([x, garbage])
    mask = torch.tensor([1.0] * 4 + [0.0] * 3, dtype=F64)
    assert torch.allclose(net(padded, mask)[:4], net(x), atol=1e-10)
    assert torch.allclose(net.features(padded, mask)[:4], net.features(x), atol=1e-10)


@pytest.mark.parametrize("kwargs, key", [
    (dict(kind="resnet"), "model.kind"),
    (dict(channels=0), "model.channels"),
    (dict(in_channels=0), "model.in_channels"),
    (dict(out_features=0), "model.out_features"),
    (dict(in_features=0), "model.in_features"),
    (dict(image_size=14), "model.image_size"),
    (dict(kind="mlp", hidden=[]), "model.hidden"),
    (dict(kind="mlp", hidden=[40, 0]), "model.hidden"),
])
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        MetaNetConfig(**kwargs)


def test_mlp_ignores_image_size():
    assert MetaNetConfig(kind="mlp", image_size=8).kind == "mlp"
