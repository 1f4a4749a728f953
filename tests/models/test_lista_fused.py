"""The hand-written LISTA forward/backward against autograd through the step-wise path."""

from __future__ import annotations

import pytest
import torch

from l2o.models.lista import LISTA, LISTAConfig
from l2o.models.lista_fused import lista_exact_forward

F64 = torch.float64


def perturbed_lista(T: int = 5, m: int = 7, n: int = 11, seed: int = 0, dtype=F64) -> LISTA:
    """A LISTA away from its ISTA initialisation, every theta > 0."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=gen, dtype=F64)
    net = LISTA(LISTAConfig(m, n, T), A).to(dtype)
    with torch.no_grad():
        for p in (net.W1, net.W2):
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=F64).to(dtype))
        net.theta.add_(0.05 * torch.rand(T, generator=gen, dtype=F64).to(dtype))
    return net


def values_and_grads(net: LISTA, forward, y: torch.Tensor, weights: torch.Tensor):
    net.zero_grad(set_to_none=True)
    y = y.detach().clone().requires_grad_(True)
    xs = forward(y)
    (xs * weights).sum().backward()
    return [xs.detach(), y.grad, net.W1.grad, net.W2.grad, net.theta.grad]


@pytest.mark.parametrize("num_steps", [None, 3])
def test_fused_equals_stepwise_values_and_gradients(num_steps):
    net = perturbed_lista()
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(13, 7, generator=gen, dtype=F64)
    K = num_steps or 5
    weights = torch.randn(K, 13, 11, generator=gen, dtype=F64)
    fused = values_and_grads(net, lambda v: net(v, num_steps=num_steps), y, weights)
    ref = values_and_grads(net, lambda v: net.forward_stepwise(v, num_steps), y, weights)
    names = ["iterates", "grad y", "grad W1", "grad W2", "grad theta"]
    for name, a, b in zip(names, fused, ref):
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), name
    assert (fused[0] == 0).any() and (fused[0] != 0).any()  # the threshold is active
    if num_steps:  # steps beyond K get no gradient
        assert torch.all(fused[2][K:] == 0) and torch.all(fused[4][K:] == 0)
    assert torch.all(fused[3][0] == 0)  # W2_1 meets x_0 = 0


def test_fused_float32_matches_stepwise():
    net = perturbed_lista(T=20, m=25, n=50, dtype=torch.float32)
    y = torch.randn(64, 25, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(net(y), net.forward_stepwise(y), rtol=1e-5, atol=1e-5)


def test_gradcheck():
    net = perturbed_lista(T=3, m=4, n=6)
    y = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    params = (net.W1.detach().clone().requires_grad_(True), net.W2.detach().clone().requires_grad_(True),
              net.theta.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lista_exact_forward, (y, *params))


def test_negative_threshold_falls_back_to_stepwise():
    net = perturbed_lista()
    with torch.no_grad():
        net.theta[2] = -0.1  # v - clamp(v, -theta, theta) is not the soft threshold then
    y = torch.randn(9, 7, dtype=F64, generator=torch.Generator().manual_seed(4))
    out = net(y)
    assert out.grad_fn is not None and "Stack" in type(out.grad_fn).__name__
    assert torch.equal(out, net.forward_stepwise(y))


def test_smooth_threshold_uses_stepwise():
    net = LISTA(LISTAConfig(7, 11, 4, soft_threshold="smooth"), torch.randn(7, 11)).double()
    y = torch.randn(3, 7, dtype=F64)
    assert torch.equal(net(y), net.forward_stepwise(y))


def test_fused_can_be_switched_off():
    net = perturbed_lista()
    net.fused = False
    y = torch.randn(9, 7, dtype=F64)
    assert "Stack" in type(net(y).grad_fn).__name__


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match=r"expected \(B, m\)"):
        lista_exact_forward(torch.zeros(3), torch.zeros(2, 4, 3), torch.zeros(2, 4, 4), torch.zeros(2))
