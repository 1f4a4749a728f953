"""LISTA: ISTA at initialisation, soft thresholds, shapes, the step-wise interface."""

from __future__ import annotations

import pytest
import torch

from l2o.models.lista import LISTA, LISTAConfig, smooth_soft_threshold, soft_threshold

F64 = torch.float64


def reference_ista(A: torch.Tensor, y: torch.Tensor, T: int, L: float, rho: float) -> torch.Tensor:
    """x <- soft(x + A^T (y - A x) / L, rho / L), x_0 = 0; all T iterates, (T, B, n)."""
    x = torch.zeros(y.shape[0], A.shape[1], dtype=y.dtype)
    out = []
    for _ in range(T):
        v = x + (y - x @ A.T) @ A / L
        x = torch.sign(v) * torch.clamp(v.abs() - rho / L, min=0.0)
        out.append(x)
    return torch.stack(out)


@pytest.fixture
def problem(tiny_problem):
    A = torch.from_numpy(tiny_problem.arrays["A"]).double()
    y = torch.from_numpy(tiny_problem.arrays["val_y"][:40]).double()
    return A, y


@pytest.mark.parametrize("L, rho", [(3.0, 0.1), (7.0, 0.3)])
def test_ista_initialisation_reproduces_ista(problem, L, rho):
    A, y = problem
    T = 8
    model = LISTA(LISTAConfig(m=A.shape[0], n=A.shape[1], T=T, L=L, rho=rho), A).double()
    xs = model(y)
    ref = reference_ista(A, y, T, L, rho)
    assert xs.shape == ref.shape == (T, y.shape[0], A.shape[1])
    # float32 weights built from A (rounding ~1e-7), iterates of order 1
    assert torch.allclose(xs, ref, atol=1e-5)
    assert (xs[-1] == 0).any() and (xs[-1] != 0).any()  # the threshold is active


def test_ista_initialisation_weights(problem):
    A, _ = problem
    cfg = LISTAConfig(m=20, n=40, T=3, L=3.0, rho=0.1)
    model = LISTA(cfg, A)
    for t in range(3):
        assert torch.allclose(model.W1[t].double(), A.T / 3.0, atol=1e-7)
        assert torch.allclose(model.W2[t].double(), torch.eye(40, dtype=F64) - A.T @ A / 3.0, atol=1e-6)
    assert torch.allclose(model.theta, torch.full((3,), 0.1 / 3.0))


def test_smooth_variant_differs(problem):
    A, y = problem
    exact = LISTA(LISTAConfig(m=20, n=40, T=5), A).double()
    smooth = LISTA(LISTAConfig(m=20, n=40, T=5, soft_threshold="smooth"), A).double()
    diff = (exact(y) - smooth(y)).abs().max()
    assert diff > 1e-3
    # ... but it is the same map far from zero (sign(v) ~ 2 sigmoid(5 v) - 1 for |v| >> 1/5)
    v = torch.tensor([-5.0, 5.0], dtype=F64)
    assert torch.allclose(smooth_soft_threshold(v, 0.5), soft_threshold(v, 0.5), atol=1e-10)


def test_soft_threshold_values():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert torch.equal(soft_threshold(v, 1.0), torch.tensor([-1.0, 0.0, 0.0, 0.0, 2.0]))
    # smooth: (2 sigmoid(5 v) - 1) max(|v| - theta, 0); v = 2, theta = 1 -> (2 sigmoid(10) - 1)
    s = smooth_soft_threshold(torch.tensor([2.0, -2.0, 0.5], dtype=F64), 1.0)
    k = 2 * torch.sigmoid(torch.tensor(10.0, dtype=F64)) - 1
    assert torch.allclose(s, torch.stack([k, -k, torch.tensor(0.0, dtype=F64)]), atol=1e-15)


@pytest.mark.parametrize("T", [1, 0, -3])
def test_T_below_2_raises(T):
    with pytest.raises(ValueError, match="T must be >= 2"):
        LISTAConfig(m=4, n=8, T=T)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="soft_threshold"):
        LISTAConfig(m=4, n=8, T=3, soft_threshold="hard")
    with pytest.raises(ValueError, match="L"):
        LISTAConfig(m=4, n=8, T=3, L=0.0)


def test_wrong_A_shape_raises():
    with pytest.raises(ValueError, match=r"\(4, 8\)"):
        LISTA(LISTAConfig(m=4, n=8, T=3), torch.zeros(8, 4))


def test_forward_shapes_and_truncation(problem):
    A, y = problem
    model = LISTA(LISTAConfig(m=20, n=40, T=6), A).double()
    xs = model(y)
    assert xs.shape == (6, y.shape[0], 40)
    assert model.num_steps == 6
    head = model(y, num_steps=3)
    assert head.shape == (3, y.shape[0], 40)
    assert torch.equal(head, xs[:3])


def test_step_wise_use_equals_forward(problem):
    A, y = problem
    model = LISTA(LISTAConfig(m=20, n=40, T=4), A).double()
    x = model.init_state(y)
    assert x.shape == (y.shape[0], 40) and (x == 0).all()
    xs = model(y)
    for t in range(1, 5):
        x = model.step(t, x, y)
        assert torch.allclose(x, xs[t - 1], atol=1e-14)


def test_untied_layers_are_independent(problem):
    A, y = problem
    model = LISTA(LISTAConfig(m=20, n=40, T=3), A).double()
    before = model(y)
    with torch.no_grad():
        model.theta[2] += 1.0  # only the last layer changes
    after = model(y)
    assert torch.equal(before[:2], after[:2])
    assert not torch.equal(before[2], after[2])


def test_without_A_starts_at_zero():
    model = LISTA(LISTAConfig(m=3, n=5, T=2))
    assert (model(torch.randn(4, 3)) == 0).all()


def test_contract_smoke(rng):
    """Forward, backward and shapes: the interface the training stages rely on."""
    m, n, T, B = 6, 10, 3, 5
    A = torch.randn(m, n, generator=rng) / m**0.5
    model = LISTA(LISTAConfig(m=m, n=n, T=T), A)
    y = torch.randn(B, m, generator=rng)
    x_true = torch.randn(B, n, generator=rng)
    xs = model(y)
    assert xs.shape == (T, B, n) and xs.dtype == torch.float32
    loss = (xs - x_true).pow(2).sum(dim=-1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    assert model.W1.grad.abs().sum() > 0 and model.theta.grad.abs().sum() > 0
    assert model.describe() == {"m": m, "n": n, "T": T, "L": 3.0, "rho": 0.1,
                                "soft_threshold": "exact", "smooth_sharpness": 5.0}
    # the description rebuilds the same architecture
    clone = LISTA(LISTAConfig(**model.describe()))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(y), xs.detach())
