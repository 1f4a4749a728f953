"""Stage II imitation losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.imitation import (
    STAGE2_LOSSES,
    forward_kl_loss,
    map_loss,
    reverse_kl_loss,
    stage2_loss,
)

F64 = torch.float64
Q_ORACLE = [0.2, 0.5, 0.3]
Q_POLICY = [0.5, 0.25, 0.25]


def _logs(*rows):
    return torch.tensor(rows, dtype=F64).log()


def test_forward_kl_hand_case():
    # -sum q* log q_phi = -(0.2 ln 0.5 + 0.5 ln 0.25 + 0.3 ln 0.25)
    expected = -(0.2 * math.log(0.5) + 0.5 * math.log(0.25) + 0.3 * math.log(0.25))
    val = forward_kl_loss(_logs(Q_POLICY), _logs(Q_ORACLE))
    assert val.item() == pytest.approx(expected, abs=1e-14)


def test_forward_kl_is_kl_plus_oracle_entropy_and_batch_mean():
    # row 2: q_phi = q* -> cross-entropy = H(q*)
    h_oracle = -sum(p * math.log(p) for p in Q_ORACLE)
    kl = sum(p * math.log(p / r) for p, r in zip(Q_ORACLE, Q_POLICY))
    val = forward_kl_loss(_logs(Q_POLICY, Q_ORACLE), _logs(Q_ORACLE, Q_ORACLE))
    assert val.item() == pytest.approx(((kl + h_oracle) + h_oracle) / 2, abs=1e-14)


def test_map_hand_case():
    # argmax q* = step 1 (0.5): -ln q_phi(1) = -ln 0.25
    assert map_loss(_logs(Q_POLICY), _logs(Q_ORACLE)).item() == pytest.approx(math.log(4.0), abs=1e-14)
    # batch mean; second row's argmax is step 0
    val = map_loss(_logs(Q_POLICY, Q_POLICY), _logs(Q_ORACLE, [0.6, 0.3, 0.1]))
    assert val.item() == pytest.approx((math.log(4.0) + math.log(2.0)) / 2, abs=1e-14)


def test_reverse_kl_hand_case():
    expected = 0.5 * math.log(0.5 / 0.2) + 0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(0.25 / 0.3)
    val = reverse_kl_loss(_logs(Q_POLICY), _logs(Q_ORACLE))
    assert val.item() == pytest.approx(expected, abs=1e-14)
    assert reverse_kl_loss(_logs(Q_ORACLE), _logs(Q_ORACLE)).item() == pytest.approx(0.0, abs=1e-15)


def test_reverse_kl_zero_policy_mass_contributes_nothing():
    # q_phi = (0.5, 0.5, 0) against q* = (0.25, 0.25, 0.5): 0.5 ln 2 + 0.5 ln 2
    val = reverse_kl_loss(_logs([0.5, 0.5, 0.0]), _logs([0.25, 0.25, 0.5]))
    assert val.item() == pytest.approx(math.log(2.0), abs=1e-14)


@pytest.mark.parametrize("fn", [forward_kl_loss, map_loss, reverse_kl_loss])
def test_no_gradient_into_the_oracle(fn):
    logits = torch.tensor([[0.3, -0.2, 0.0]], dtype=F64, requires_grad=True)
    oracle = _logs(Q_ORACLE).requires_grad_()
    fn(stop_log_distribution(logits), oracle).backward()
    assert oracle.grad is None
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def _stop_logits_for(q):
    """Stop logits whose stop distribution is q: pi_t = q_t / (1 - sum_{s<t} q_s)."""
    q = torch.tensor(q, dtype=F64)
    survive = 1.0 - torch.cat([torch.zeros(1, dtype=F64), q.cumsum(0)[:-1]])
    pi = (q / survive).clamp(max=1.0)
    return torch.logit(pi[:-1]).tolist() + [0.0]


def test_forward_and_reverse_kl_are_stationary_at_the_oracle():
    logits = torch.tensor([_stop_logits_for(Q_ORACLE)], dtype=F64, requires_grad=True)
    log_q = stop_log_distribution(logits)
    assert torch.allclose(log_q.exp(), torch.tensor([Q_ORACLE], dtype=F64), atol=1e-14)
    for fn in (forward_kl_loss, reverse_kl_loss):
        (g,) = torch.autograd.grad(fn(stop_log_distribution(logits), _logs(Q_ORACLE)), logits)
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-12)


def test_stage2_dispatch():
    lq, lo = _logs(Q_POLICY), _logs(Q_ORACLE)
    assert STAGE2_LOSSES == ("forward_kl", "map", "reverse_kl")
    assert torch.equal(stage2_loss("forward_kl", lq, lo), forward_kl_loss(lq, lo))
    assert torch.equal(stage2_loss("map", lq, lo), map_loss(lq, lo))
    assert torch.equal(stage2_loss("reverse_kl", lq, lo), reverse_kl_loss(lq, lo))


def test_stage2_unknown_loss_raises():
    with pytest.raises(ValueError, match="'kl'"):
        stage2_loss("kl", _logs(Q_POLICY), _logs(Q_ORACLE))
