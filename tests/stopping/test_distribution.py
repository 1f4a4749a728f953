"""The stop-time distribution q_phi(t) = pi_t prod_{tau<t} (1 - pi_tau) computed in log space."""

from __future__ import annotations

import math

import pytest
import torch

from l2o.stopping.distribution import (
    entropy,
    stop_distribution,
    stop_distribution_from_probs,
    stop_log_distribution,
)


def test_hand_case():
    # pi = (0.5, 0.5, ignored): q = (0.5, 0.5*0.5, 0.5*0.5)
    q = stop_distribution(torch.tensor([[0.0, 0.0, 123.0]], dtype=torch.float64))
    assert torch.allclose(q, torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64), atol=1e-15)


def test_hand_case_three_steps_unequal():
    # pi_1 = sigmoid(log 3) = 0.75, pi_2 = sigmoid(-log 3) = 0.25:
    # q = (0.75, 0.25 * 0.25, 0.25 * 0.75)
    logits = torch.tensor([[math.log(3.0), -math.log(3.0), 0.0]], dtype=torch.float64)
    q = stop_distribution(logits)
    expected = torch.tensor([[0.75, 0.0625, 0.1875]], dtype=torch.float64)
    assert torch.allclose(q, expected, atol=1e-15)


def test_sums_to_one_and_equals_product_form(rng):
    logits = 3.0 * torch.randn(16, 9, generator=rng, dtype=torch.float64)
    q = stop_distribution(logits)
    assert q.shape == (16, 9)
    assert (q >= 0).all()
    assert torch.allclose(q.sum(dim=1), torch.ones(16, dtype=torch.float64), atol=1e-12)
    ref = stop_distribution_from_probs(torch.sigmoid(logits))
    assert torch.allclose(q, ref, rtol=1e-12, atol=1e-15)


def test_float32_sums_to_one(rng):
    logits = 3.0 * torch.randn(64, 20, generator=rng)
    q = stop_distribution(logits)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)


def test_last_logit_is_ignored(rng):
    logits = torch.randn(4, 5, generator=rng)
    other = logits.clone()
    other[:, -1] = torch.tensor([-1e4, 1e4, 0.0, float("nan")])
    assert torch.equal(stop_log_distribution(logits), stop_log_distribution(other))


def test_single_candidate_is_certain():
    # K = 1: the only step is the last one, where the policy stops for sure
    assert torch.equal(stop_distribution(torch.tensor([[-7.0], [7.0]])), torch.ones(2, 1))


@pytest.mark.parametrize("big", [100.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saturated_logits_stay_finite(big, dtype):
    logits = torch.tensor(
        [
            [big, -big, big, -big, 0.0],  # stops at once
            [-big, -big, -big, -big, 0.0],  # never stops before the end
            [-big, big, -big, big, 0.0],  # stops at the second step
            [-big, -big, -big, big, big],  # stops at the fourth step
        ],
        dtype=dtype,
    )
    log_q = stop_log_distribution(logits)
    assert torch.isfinite(log_q).all()
    q = log_q.exp()
    expected = torch.zeros_like(q)
    expected[0, 0] = expected[1, 4] = expected[2, 1] = expected[3, 3] = 1.0
    assert torch.allclose(q, expected, atol=1e-30)
    # the log mass of the impossible steps is of the order of -big (never -inf/NaN)
    assert log_q.min() <= -big + 1
    assert torch.allclose(q, stop_distribution_from_probs(torch.sigmoid(logits)), atol=1e-30)


@pytest.mark.parametrize("big", [100.0, 1e4])
def test_saturated_logits_have_finite_gradients(big):
    logits = torch.tensor(
        [[big, -big, big, 0.0], [-big, -big, -big, 0.0], [-big, big, 1.0, 0.0]],
        requires_grad=True,
    )
    log_q = stop_log_distribution(logits)
    target = torch.tensor([[0.1, 0.2, 0.3, 0.4]]).expand(3, 4)
    # forward-KL-like and entropy-like uses of log q
    loss = -(target * log_q).sum() - entropy(log_q).sum() + (log_q.exp() * log_q).sum()
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.isfinite(loss)


def test_gradient_matches_product_form(rng):
    logits = torch.randn(3, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, generator=rng, dtype=torch.float64)
    (g_log,) = torch.autograd.grad((stop_distribution(logits) * w).sum(), logits)
    (g_prod,) = torch.autograd.grad(
        (stop_distribution_from_probs(torch.sigmoid(logits)) * w).sum(), logits
    )
    assert torch.allclose(g_log, g_prod, atol=1e-12)
    assert torch.all(g_log[:, -1] == 0)  # the last logit is ignored


def test_rejects_non_2d():
    with pytest.raises(ValueError, match="shape"):
        stop_log_distribution(torch.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        stop_log_distribution(torch.zeros(2, 3, 4))


def test_entropy_hand_cases():
    q = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    h = entropy(q.log())
    expected = torch.tensor([math.log(2.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))],
                            dtype=torch.float64)
    assert torch.allclose(h, expected, atol=1e-15)
    # zero-mass steps contribute 0 (0 log 0 = 0), not NaN
    one_hot = torch.log(torch.tensor([[0.0, 1.0, 0.0]]))
    assert entropy(one_hot).item() == 0.0
