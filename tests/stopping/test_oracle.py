"""The oracle q*(t) ∝ p(t) exp(-l_t / beta)."""

from __future__ import annotations

import math

import pytest
import torch

from l2o.stopping.oracle import (
    check_beta,
    log_prior_from_probs,
    oracle_distribution,
    oracle_log_distribution,
    oracle_logits,
)

F64 = torch.float64


def test_equals_softmax_of_negative_losses_over_beta(rng):
    losses = torch.rand(8, 7, generator=rng, dtype=F64) * 5
    for beta in (0.05, 0.28, 1.0, 3.0):
        q = oracle_distribution(losses, beta)
        assert torch.allclose(q, torch.softmax(-losses / beta, dim=1), atol=1e-14)
        assert torch.allclose(q.sum(dim=1), torch.ones(8, dtype=F64), atol=1e-14)


def test_hand_case():
    # l = (0, ln 2, ln 4), beta = 1: weights (1, 1/2, 1/4) -> (4/7, 2/7, 1/7)
    losses = torch.tensor([[0.0, math.log(2.0), math.log(4.0)]], dtype=F64)
    q = oracle_distribution(losses, beta=1.0)
    assert torch.allclose(q, torch.tensor([[4 / 7, 2 / 7, 1 / 7]], dtype=F64), atol=1e-15)
    # beta = 0.5 squares the weights: (1, 1/4, 1/16) / (21/16)
    q = oracle_distribution(losses, beta=0.5)
    assert torch.allclose(q, torch.tensor([[16 / 21, 4 / 21, 1 / 21]], dtype=F64), atol=1e-15)


def test_beta_to_zero_is_argmin_one_hot():
    losses = torch.tensor([[3.0, 1.0, 2.0, 1.5], [0.2, 0.3, 0.1, 5.0]], dtype=F64)
    q = oracle_distribution(losses, beta=1e-3)  # smallest gap 0.1 -> exp(-100) leakage
    expected = torch.nn.functional.one_hot(losses.argmin(dim=1), 4).to(F64)
    assert torch.allclose(q, expected, atol=1e-40)
    assert torch.isfinite(oracle_log_distribution(losses, beta=1e-3)).all()


def test_beta_to_infinity_is_uniform():
    losses = torch.tensor([[3.0, 1.0, 2.0, 1.5]], dtype=F64)
    q = oracle_distribution(losses, beta=1e8)  # deviation ~ spread / beta = 2e-8
    assert torch.allclose(q, torch.full((1, 4), 0.25, dtype=F64), atol=1e-8)


def test_beta_to_infinity_is_the_prior():
    losses = torch.tensor([[3.0, 1.0, 2.0, 1.5]], dtype=F64)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    q = oracle_distribution(losses, beta=1e8, log_prior=prior.log())
    assert torch.allclose(q, prior.unsqueeze(0), atol=1e-8)


def test_with_prior_proportional_to_prior_times_exp():
    # p = (0.5, 0.3, 0.2), l = (1, 0, 2), beta = 1:
    # weights (0.5/e, 0.3, 0.2/e^2), normalised by hand
    w = [0.5 * math.exp(-1.0), 0.3, 0.2 * math.exp(-2.0)]
    expected = torch.tensor([[x / sum(w) for x in w]], dtype=F64)
    losses = torch.tensor([[1.0, 0.0, 2.0]], dtype=F64)
    log_prior = torch.tensor([0.5, 0.3, 0.2], dtype=F64).log()
    assert torch.allclose(oracle_distribution(losses, 1.0, log_prior), expected, atol=1e-15)
    # an unnormalised prior gives the same oracle (normalised by log_prior_from_probs / softmax)
    lp = log_prior_from_probs(torch.tensor([5.0, 3.0, 2.0], dtype=F64))
    assert torch.allclose(lp.exp(), torch.tensor([0.5, 0.3, 0.2], dtype=F64), atol=1e-15)
    assert torch.allclose(oracle_distribution(losses, 1.0, lp), expected, atol=1e-15)
    # per-example prior (B, K)
    lp2 = torch.stack([log_prior, torch.full((3,), -math.log(3.0), dtype=F64)])
    q2 = oracle_distribution(losses.expand(2, 3), 1.0, lp2)
    assert torch.allclose(q2[0], expected[0], atol=1e-15)
    assert torch.allclose(q2[1], torch.softmax(-losses[0], dim=0), atol=1e-15)


def test_zero_prior_mass_means_zero_oracle_mass():
    losses = torch.tensor([[5.0, 0.0, 1.0]], dtype=F64)
    lp = log_prior_from_probs(torch.tensor([1.0, 0.0, 1.0], dtype=F64))
    q = oracle_distribution(losses, 1.0, lp)
    assert q[0, 1] == 0.0
    assert torch.allclose(q.sum(), torch.tensor(1.0, dtype=F64))


def test_logits_are_unnormalised_log_oracle():
    losses = torch.tensor([[1.0, 2.0]])
    assert torch.equal(oracle_logits(losses, 0.5), torch.tensor([[-2.0, -4.0]]))


def test_large_losses_stay_finite():
    losses = torch.tensor([[1e4, 1e4 + 1.0, 2e4]])
    log_q = oracle_log_distribution(losses, beta=0.01)
    assert torch.isfinite(log_q).all()
    assert torch.allclose(log_q.exp(), torch.tensor([[1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("beta", [0.0, -1.0, -1e-9, float("inf"), float("nan")])
def test_bad_beta_raises(beta):
    losses = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="beta"):
        check_beta(beta)
    with pytest.raises(ValueError, match="beta"):
        oracle_distribution(losses, beta)
    with pytest.raises(ValueError, match="beta"):
        oracle_log_distribution(losses, beta)


def test_bad_prior_raises():
    with pytest.raises(ValueError, match="prior"):
        log_prior_from_probs(torch.tensor([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="prior"):
        log_prior_from_probs(torch.zeros(3))
