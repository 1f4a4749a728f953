"""DnCNN with heads: shapes, step-wise use, the plain DnCNN as last output, gradients, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from l2o.models.dncnn import BN_WEIGHT_CLAMP, DnCNN, DnCNNConfig

F64 = torch.float64


def small(head: str = "conv2", layers: int = 6, channels: int = 8, seed: int = 0) -> DnCNN:
    torch.manual_seed(seed)
    return DnCNN(DnCNNConfig(layers=layers, channels=channels, head=head))


def warm_bn(model: DnCNN, rng: torch.Generator) -> DnCNN:
    """Give the BN layers non-trivial running stats and affine params, then switch to eval."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.normal_(0.0, 0.1, generator=rng)
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 1, 12, 12, generator=rng, dtype=next(model.parameters()).dtype))
    return model.eval()


@pytest.mark.parametrize("head", ["conv1", "conv2"])
@pytest.mark.parametrize("H, W", [(8, 8), (7, 11), (13, 5)])
def test_one_output_per_step_of_input_shape(rng, head, H, W):
    model = small(head)
    assert model.num_steps == 5
    noisy = torch.rand(3, 1, H, W, generator=rng)
    out = model(noisy)
    assert out.shape == (5, 3, 1, H, W)


def test_paper_size_has_19_steps_and_18_heads():
    model = DnCNN(DnCNNConfig())
    assert model.num_steps == 19
    assert len(model.heads) == 18 and len(model.trunk) == 19
    assert model.describe() == dict(layers=20, channels=64, head="conv2", image_channels=1)


@pytest.mark.parametrize("head", ["conv1", "conv2"])
def test_forward_steps_are_rows_of_forward(rng, head):
    model = warm_bn(small(head).double(), rng)
    noisy = torch.rand(2, 1, 9, 10, generator=rng, dtype=F64)
    full = model(noisy)
    for steps in ([1], [2, 5], [1, 3, 4], [5]):
        sub = model(noisy, steps=steps)
        assert torch.allclose(sub, full[[t - 1 for t in steps]], atol=1e-12)


def test_forward_steps_rejects_bad_lists(rng):
    model = small()
    noisy = torch.rand(1, 1, 6, 6, generator=rng)
    for steps in ([], [0], [6], [3, 2], [2, 2]):
        with pytest.raises(ValueError):
            model(noisy, steps=steps)


@pytest.mark.parametrize("head", ["conv1", "conv2"])
def test_step_readout_loop_equals_forward(rng, head):
    model = warm_bn(small(head).double(), rng)
    noisy = torch.rand(3, 1, 10, 7, generator=rng, dtype=F64)
    full = model(noisy)
    f = model.init_state(noisy)
    for t in range(1, model.num_steps + 1):
        f = model.step(t, f, noisy)
        assert f.shape == (3, 8, 10, 7)
        assert torch.allclose(model.readout(t, f, noisy), full[t - 1], atol=1e-12)


def test_rows_can_be_dropped_between_steps(rng):
    model = warm_bn(small().double(), rng)
    noisy = torch.rand(4, 1, 8, 8, generator=rng, dtype=F64)
    full = model(noisy)
    keep = torch.tensor([True, False, True, False])
    f = model.step(1, model.init_state(noisy), noisy)[keep]
    for t in range(2, model.num_steps + 1):
        f = model.step(t, f, noisy[keep])
    last = model.readout(model.num_steps, f, noisy[keep])
    assert torch.allclose(last, full[-1, keep], atol=1e-12)


def test_last_output_is_the_plain_dncnn(rng):
    model = warm_bn(small(layers=5, channels=6).double(), rng)
    noisy = torch.rand(2, 1, 9, 9, generator=rng, dtype=F64)

    def bn(x, m):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    # m_1 = conv + ReLU; m_2..m_{D-1} = conv + BN + ReLU; m_D = conv; estimate = y - m_D(...)
    h = F.relu(F.conv2d(noisy, model.trunk[0][0].weight, padding=1))
    for block in model.trunk[1:]:
        conv, norm = block[0], block[1]
        h = F.relu(bn(F.conv2d(h, conv.weight, padding=1), norm))
    expected = noisy - F.conv2d(h, model.final.weight, padding=1)
    assert torch.allclose(model(noisy)[-1], expected, atol=1e-12)
    assert torch.allclose(model(noisy, steps=[model.num_steps])[0], expected, atol=1e-12)


def test_no_conv_has_a_bias():
    model = small()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)


def grads(params):
    return [p.grad for p in params]


def nonzero(g) -> bool:
    return g is not None and bool(g.abs().sum() > 0)


def test_last_step_loss_trains_the_trunk_only(rng):
    model = small()
    noisy = torch.rand(2, 1, 8, 8, generator=rng)
    model(noisy, steps=[model.num_steps]).square().sum().backward()
    assert all(g is None or not g.any() for g in grads(model.head_parameters()))
    assert all(nonzero(g) for g in grads(model.trunk_parameters()))


def test_head_loss_reaches_the_trunk_below_only(rng):
    model = small(layers=7)
    noisy = torch.rand(2, 1, 8, 8, generator=rng)
    t = 3
    model(noisy, steps=[t]).square().sum().backward()
    for i, module in enumerate(model.trunk, start=1):
        for p in module.parameters():
            assert nonzero(p.grad) if i <= t else p.grad is None, (i, p.shape)
    assert model.final.weight.grad is None
    for i, head in enumerate(model.heads, start=1):
        for p in head.parameters():
            assert nonzero(p.grad) if i == t else p.grad is None, (i, p.shape)


def test_trunk_and_head_parameters_partition_the_model():
    model = small()
    trunk = {id(p) for p in model.trunk_parameters()}
    heads = {id(p) for p in model.head_parameters()}
    assert not trunk & heads
    assert trunk | heads == {id(p) for p in model.parameters()}


def test_paper_size_trunk_has_the_plain_dncnn_parameter_count():
    model = DnCNN(DnCNNConfig(layers=20, channels=64, head="conv2"))
    # conv(1->64) + 18 x [conv(64->64) + BN weight, bias] + conv(64->1), no biases
    expected = 1 * 64 * 9 + 18 * (64 * 64 * 9 + 2 * 64) + 64 * 9
    assert expected == 667_008
    assert sum(p.numel() for p in model.trunk_parameters()) == expected
    # 18 heads conv(64->64) + BN + conv(64->1)
    assert sum(p.numel() for p in model.head_parameters()) == 18 * (64 * 64 * 9 + 2 * 64 + 64 * 9)


def test_initialisation_matches_the_released_code():
    torch.manual_seed(0)
    model = DnCNN(DnCNNConfig(layers=20, channels=64, head="conv1"))
    w = torch.cat([b[1].weight.detach() for b in model.trunk[1:]])
    assert w.abs().max() <= BN_WEIGHT_CLAMP
    # N(0, 0.059) clamped at 0.025: about 2 * P(Z > 0.425) = 67% of the weights sit on the clamp
    on_clamp = (w.abs() == BN_WEIGHT_CLAMP).float().mean()
    assert 0.55 < on_clamp < 0.8
    assert all(not b[1].bias.any() for b in model.trunk[1:])
    conv = model.trunk[5][0].weight.detach()  # Kaiming fan_in: std sqrt(2 / (64 * 9)) = 0.0589
    assert abs(conv.std().item() - (2 / (64 * 9)) ** 0.5) < 0.003
    torch.manual_seed(0)
    again = DnCNN(DnCNNConfig(layers=20, channels=64, head="conv1"))
    assert torch.equal(again.trunk[5][0].weight, model.trunk[5][0].weight)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(layers=2), "model.layers"),
        (dict(channels=0), "model.channels"),
        (dict(head="conv3"), "model.head"),
        (dict(image_channels=0), "model.image_channels"),
    ],
)
def test_bad_config_raises_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        DnCNNConfig(**kwargs)


def test_bad_step_index_raises():
    model = small()
    with pytest.raises(ValueError, match="1..5"):
        model.step(6, torch.zeros(1, 8, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="1..5"):
        model.readout(0, torch.zeros(1, 8, 4, 4), torch.zeros(1, 1, 4, 4))


def test_batch_rows_are_independent_in_eval_mode(rng):
    model = warm_bn(small(), rng)
    noisy = torch.rand(4, 1, 8, 8, generator=rng)
    with torch.no_grad():
        together = model(noisy)
        alone = torch.cat([model(noisy[i : i + 1]) for i in range(4)], dim=1)
    assert torch.allclose(together, alone, atol=1e-5)


def test_image_channels(rng):
    torch.manual_seed(0)
    model = DnCNN(DnCNNConfig(layers=4, channels=4, image_channels=3, head="conv1"))
    assert model(torch.rand(2, 3, 6, 6, generator=rng)).shape == (3, 2, 3, 6, 6)
