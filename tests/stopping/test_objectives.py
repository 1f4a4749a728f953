"""Stage I losses (full soft-min, sampled, no_entropy) and the joint objective."""

from __future__ import annotations

import math

import pytest
import torch

from l2o.stopping.distribution import entropy
from l2o.stopping.objectives import (
    STAGE1_LOSSES,
    joint_objective,
    no_entropy_loss,
    sampled_oracle_loss,
    soft_min_loss,
    stage1_loss,
)
from l2o.stopping.oracle import oracle_distribution

F64 = torch.float64


class TinyStepModel(torch.nn.Module):
    """K 'steps', each a linear predictor: l_t = (x . w_t - y)^2, (B, K)."""

    def __init__(self, K: int, d: int, generator: torch.Generator):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(K, d, generator=generator, dtype=F64))

    def forward(self, x, y):
        return (x @ self.w.T - y[:, None]).pow(2)


def _tiny_problem(rng, B=5, K=4, d=3):
    model = TinyStepModel(K, d, rng)
    x = torch.randn(B, d, generator=rng, dtype=F64)
    y = torch.randn(B, generator=rng, dtype=F64)
    return model, x, y


# -- full: the soft-min -----------------------------------------------------------


def test_soft_min_hand_case():
    # l = (1, 2), beta = 0.5: -0.5 * log(e^-2 + e^-4)
    losses = torch.tensor([[1.0, 2.0]], dtype=F64)
    expected = -0.5 * math.log(math.exp(-2.0) + math.exp(-4.0))
    assert soft_min_loss(losses, 0.5).item() == pytest.approx(expected, abs=1e-14)


def test_soft_min_equals_neg_beta_logsumexp(rng):
    losses = torch.rand(6, 5, generator=rng, dtype=F64) * 3
    for beta in (0.1, 0.28, 2.0):
        expected = (-beta * torch.logsumexp(-losses / beta, dim=1)).mean()
        assert torch.allclose(soft_min_loss(losses, beta), expected, atol=1e-14)
        # a soft minimum: below the hard minimum by at most beta log K
        per = -beta * torch.logsumexp(-losses / beta, dim=1)
        assert (per <= losses.min(dim=1).values + 1e-12).all()
        assert (per >= losses.min(dim=1).values - beta * math.log(5) - 1e-12).all()


def test_soft_min_with_prior_hand_case():
    # -beta log sum_t p(t) exp(-l_t/beta), p = (0.25, 0.75), l = (1, 2), beta = 1
    losses = torch.tensor([[1.0, 2.0]], dtype=F64)
    lp = torch.tensor([0.25, 0.75], dtype=F64).log()
    expected = -math.log(0.25 * math.exp(-1.0) + 0.75 * math.exp(-2.0))
    assert soft_min_loss(losses, 1.0, lp).item() == pytest.approx(expected, abs=1e-14)


def test_soft_min_does_not_underflow():
    # the released code's log(sum(exp(-l/beta))) gives +inf here
    losses = torch.tensor([[1e3, 2e3]])
    val = soft_min_loss(losses, 0.14)
    assert torch.isfinite(val)
    assert val.item() == pytest.approx(1e3, rel=1e-6)


def test_soft_min_gradient_wrt_losses_is_the_oracle(rng):
    B, K, beta = 6, 5, 0.3
    losses = (torch.rand(B, K, generator=rng, dtype=F64) * 2).requires_grad_()
    (grad,) = torch.autograd.grad(soft_min_loss(losses, beta), losses)
    q = oracle_distribution(losses.detach(), beta)
    assert torch.allclose(grad, q / B, atol=1e-14)  # the loss is a batch mean


def test_soft_min_gradient_wrt_losses_with_prior(rng):
    B, K, beta = 3, 4, 0.7
    losses = torch.rand(B, K, generator=rng, dtype=F64).requires_grad_()
    lp = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64).log()
    (grad,) = torch.autograd.grad(soft_min_loss(losses, beta, lp), losses)
    assert torch.allclose(grad, oracle_distribution(losses.detach(), beta, lp) / B, atol=1e-14)


def _weighted_step_gradient(model, x, y, weights):
    """sum_b sum_t weights[b, t] grad l_{b,t} / B, one autograd call per (b, t)."""
    losses = model(x, y)
    B, K = losses.shape
    total = torch.zeros_like(model.w)
    for b in range(B):
        for t in range(K):
            (g,) = torch.autograd.grad(losses[b, t], model.w, retain_graph=True)
            total += weights[b, t] * g
    return total / B


def test_soft_min_parameter_gradient_is_oracle_weighted_step_gradients(rng):
    beta = 0.5
    model, x, y = _tiny_problem(rng)
    (grad,) = torch.autograd.grad(soft_min_loss(model(x, y), beta), model.w)
    q = oracle_distribution(model(x, y).detach(), beta)
    expected = _weighted_step_gradient(model, x, y, q)
    assert torch.allclose(grad, expected, atol=1e-12)


# -- sampled ------------------------------------------------------------------------


def test_sampled_value_is_a_drawn_step_loss():
    losses = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], dtype=F64)
    g = torch.Generator().manual_seed(0)
    vals = {round(sampled_oracle_loss(losses, 2.0, generator=g).item(), 9) for _ in range(50)}
    possible = {round((a + b) / 2, 9) for a in (1.0, 2.0, 3.0) for b in (10.0, 20.0, 30.0)}
    assert vals <= possible and len(vals) > 1


def test_sampled_is_reproducible_with_a_seed():
    losses = torch.rand(32, 6, generator=torch.Generator().manual_seed(1))
    a = [sampled_oracle_loss(losses, 0.3, generator=torch.Generator().manual_seed(5)) for _ in range(3)]
    assert all(torch.equal(a[0], v) for v in a)


def test_sampled_draw_follows_the_oracle():
    """N identical rows drawn in one call; the one-hot gradient reveals each drawn step.

    q* = (4, 2, 1)/7; each empirical frequency within 5 binomial standard deviations.
    """
    N = 20000
    row = torch.tensor([0.0, math.log(2.0), math.log(4.0)], dtype=F64)
    losses = row.expand(N, 3).clone().requires_grad_()
    g = torch.Generator().manual_seed(0)
    (grad,) = torch.autograd.grad(sampled_oracle_loss(losses, 1.0, generator=g), losses)
    drawn = grad.argmax(dim=1)
    for t, qt in enumerate([4 / 7, 2 / 7, 1 / 7]):
        freq = (drawn == t).double().mean().item()
        assert abs(freq - qt) < 5 * math.sqrt(qt * (1 - qt) / N)


def _step_jacobian(model, x, y):
    """grad_w l_{b,t} for every (b, t): (B, K, *w.shape)."""
    losses = model(x, y)
    B, K = losses.shape
    return torch.stack([
        torch.stack([torch.autograd.grad(losses[b, t], model.w, retain_graph=True)[0]
                     for t in range(K)])
        for b in range(B)
    ])


def test_sampled_gradient_is_unbiased(rng):
    """Average of N sampled parameter gradients vs the full one (fixed seed).

    The N draws are made in one call on N stacked copies of the batch; the one-hot
    gradient w.r.t. the losses tells which step each copy drew, and the chain rule
    (checked end to end below for single draws) gives each copy's parameter gradient.
    Draws are i.i.d., so the per-coordinate mean has standard error std/sqrt(N); with
    12 coordinates, P(|z| > 5 anywhere) ~ 1e-5 for an unbiased estimator.
    """
    beta, N, B, K = 0.5, 20000, 5, 4
    model, x, y = _tiny_problem(rng, B=B, K=K, d=3)
    (full,) = torch.autograd.grad(soft_min_loss(model(x, y), beta), model.w)
    J = _step_jacobian(model, x, y)  # (B, K, K, d)

    # end to end: a single sampled loss back-propagated through the model
    for seed in range(3):
        losses = model(x, y)
        drawn = torch.autograd.grad(
            sampled_oracle_loss(losses, beta, generator=torch.Generator().manual_seed(seed)),
            losses, retain_graph=True)[0].argmax(dim=1)
        (g,) = torch.autograd.grad(
            sampled_oracle_loss(model(x, y), beta, generator=torch.Generator().manual_seed(seed)),
            model.w)
        assert torch.allclose(g, J[torch.arange(B), drawn].mean(dim=0), atol=1e-12)

    stacked = model(x, y).detach().repeat(N, 1).requires_grad_()  # (N*B, K), copy r = rows rB..rB+B-1
    g = torch.Generator().manual_seed(123)
    (gl,) = torch.autograd.grad(sampled_oracle_loss(stacked, beta, generator=g), stacked)
    drawn = gl.argmax(dim=1).view(N, B)
    samples = J[torch.arange(B).expand(N, B), drawn].mean(dim=1)  # (N, K, d): one gradient per copy
    mean, se = samples.mean(dim=0), samples.std(dim=0) / math.sqrt(N)
    assert (se > 0).all()
    z = (mean - full) / se
    assert z.abs().max() < 5.0, z
    # the test has power: uniform weights (a biased estimator) are many standard errors away
    uniform = _weighted_step_gradient(model, x, y, torch.full((B, K), 1.0 / K, dtype=F64))
    assert ((uniform - full) / se).abs().max() > 10.0


def test_sampled_gradient_wrt_losses_is_one_hot():
    losses = torch.rand(4, 5, generator=torch.Generator().manual_seed(2)).requires_grad_()
    (grad,) = torch.autograd.grad(sampled_oracle_loss(losses, 0.3, generator=torch.Generator()), losses)
    assert torch.equal((grad > 0).sum(dim=1), torch.ones(4, dtype=torch.long))
    assert torch.allclose(grad.sum(dim=1), torch.full((4,), 0.25))


# -- no_entropy ---------------------------------------------------------------------


def test_no_entropy_value_is_oracle_expectation():
    losses = torch.tensor([[0.0, math.log(2.0), math.log(4.0)]], dtype=F64)
    expected = (4 * 0.0 + 2 * math.log(2.0) + 1 * math.log(4.0)) / 7
    assert no_entropy_loss(losses, 1.0).item() == pytest.approx(expected, abs=1e-14)


def test_no_entropy_gradient_flows_through_the_oracle(rng):
    # d/dl_t sum_s q_s l_s = q_t - (q_t / beta) (l_t - sum_s q_s l_s)
    B, K, beta = 4, 5, 0.4
    losses = (torch.rand(B, K, generator=rng, dtype=F64) * 2).requires_grad_()
    (grad,) = torch.autograd.grad(no_entropy_loss(losses, beta), losses)
    l = losses.detach()
    q = oracle_distribution(l, beta)
    mean = (q * l).sum(dim=1, keepdim=True)
    assert torch.allclose(grad, (q - q / beta * (l - mean)) / B, atol=1e-14)
    assert not torch.allclose(grad, q / B, atol=1e-3)  # differs from the full loss' gradient


def test_no_entropy_parameter_gradient_differs_from_full(rng):
    beta = 0.5
    model, x, y = _tiny_problem(rng)
    (g_full,) = torch.autograd.grad(soft_min_loss(model(x, y), beta), model.w)
    (g_ne,) = torch.autograd.grad(no_entropy_loss(model(x, y), beta), model.w)
    assert (g_full - g_ne).abs().max() > 1e-3


# -- dispatch -----------------------------------------------------------------------


def test_stage1_loss_dispatch(rng):
    losses = torch.rand(4, 3, generator=rng, dtype=F64)
    assert STAGE1_LOSSES == ("full", "sampled", "no_entropy")
    assert torch.equal(stage1_loss("full", losses, 0.3), soft_min_loss(losses, 0.3))
    assert torch.equal(stage1_loss("no_entropy", losses, 0.3), no_entropy_loss(losses, 0.3))
    a = stage1_loss("sampled", losses, 0.3, generator=torch.Generator().manual_seed(9))
    b = sampled_oracle_loss(losses, 0.3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_stage1_unknown_loss_raises():
    with pytest.raises(ValueError, match="'bogus'"):
        stage1_loss("bogus", torch.zeros(1, 2), 1.0)


@pytest.mark.parametrize("fn", [soft_min_loss, sampled_oracle_loss, no_entropy_loss])
def test_stage1_losses_reject_bad_beta(fn):
    with pytest.raises(ValueError, match="beta"):
        fn(torch.zeros(1, 2), -0.1)


# -- joint objective --------------------------------------------------------------


def test_joint_objective_hand_case_no_prior():
    # l = (1, 3), q = (0.25, 0.75), beta = 0.5:
    # E_q l = 0.25 + 2.25 = 2.5; H = -(0.25 ln 0.25 + 0.75 ln 0.75)
    losses = torch.tensor([[1.0, 3.0]], dtype=F64)
    log_q = torch.tensor([[0.25, 0.75]], dtype=F64).log()
    H = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    expected = 2.5 - 0.5 * H
    assert joint_objective(losses, log_q, 0.5).item() == pytest.approx(expected, abs=1e-14)


def test_joint_objective_hand_case_with_prior():
    # same, plus p = (0.8, 0.2): E_q l + beta KL(q || p)
    losses = torch.tensor([[1.0, 3.0]], dtype=F64)
    log_q = torch.tensor([[0.25, 0.75]], dtype=F64).log()
    lp = torch.tensor([0.8, 0.2], dtype=F64).log()
    kl = 0.25 * math.log(0.25 / 0.8) + 0.75 * math.log(0.75 / 0.2)
    expected = 2.5 + 0.5 * kl
    assert joint_objective(losses, log_q, 0.5, lp).item() == pytest.approx(expected, abs=1e-14)


def test_joint_objective_uniform_prior_shifts_by_beta_log_k(rng):
    # KL(q || uniform) = log K - H(q)
    losses = torch.rand(3, 4, generator=rng, dtype=F64)
    log_q = torch.log_softmax(torch.randn(3, 4, generator=rng, dtype=F64), dim=1)
    lp = torch.full((4,), -math.log(4.0), dtype=F64)
    a = joint_objective(losses, log_q, 0.7)
    b = joint_objective(losses, log_q, 0.7, lp)
    assert b.item() == pytest.approx(a.item() + 0.7 * math.log(4.0), abs=1e-13)


def test_joint_objective_minimised_by_the_oracle(rng):
    # min_q E_q l - beta H(q) = soft-min, attained at q = q*
    losses = torch.rand(5, 6, generator=rng, dtype=F64) * 3
    beta = 0.4
    q_star = oracle_distribution(losses, beta)
    at_oracle = joint_objective(losses, q_star.log(), beta)
    assert at_oracle.item() == pytest.approx(soft_min_loss(losses, beta).item(), abs=1e-12)
    for _ in range(5):
        other = torch.log_softmax(torch.randn(5, 6, generator=rng, dtype=F64), dim=1)
        assert joint_objective(losses, other, beta) > at_oracle


def test_joint_objective_gradients_reach_both(rng):
    losses = torch.rand(2, 3, generator=rng, dtype=F64).requires_grad_()
    logits = torch.randn(2, 3, generator=rng, dtype=F64).requires_grad_()
    joint_objective(losses, torch.log_softmax(logits, dim=1), 0.3).backward()
    assert losses.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    # d/dl = q / B
    assert torch.allclose(losses.grad, torch.softmax(logits.detach(), dim=1) / 2, atol=1e-14)


def test_joint_objective_zero_mass_step_no_prior():
    # 0 log 0 = 0: a step the policy never reaches contributes nothing
    losses = torch.tensor([[1.0, 3.0]], dtype=F64)
    log_q = torch.tensor([[1.0, 0.0]], dtype=F64).log()
    assert joint_objective(losses, log_q, 0.5).item() == pytest.approx(1.0, abs=1e-14)
    assert entropy(log_q).item() == 0.0


def test_joint_objective_zero_mass_step_with_prior():
    # KL(q || p) with the same convention 0 log(0 / p) = 0 as the entropy term:
    # q = (1, 0), p = (0.8, 0.2): KL = log(1 / 0.8)
    losses = torch.tensor([[1.0, 3.0]], dtype=F64)
    log_q = torch.tensor([[1.0, 0.0]], dtype=F64).log()
    lp = torch.tensor([0.8, 0.2], dtype=F64).log()
    expected = 1.0 + 0.5 * math.log(1 / 0.8)
    assert joint_objective(losses, log_q, 0.5, lp).item() == pytest.approx(expected, abs=1e-14)


def test_joint_objective_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        joint_objective(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)
