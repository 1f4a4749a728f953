"""The stop policy MLP: config checks, shapes, gradients, and its sigmoid = P(stop)."""

from __future__ import annotations

import pytest
import torch

from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.stopping.distribution import stop_distribution
from l2o.stopping.inference import stop_index


def test_default_architecture_is_the_papers():
    policy = StopPolicy(StopPolicyConfig(1002))
    linears = [m for m in policy.net if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (1002, 256), (256, 128), (128, 16), (16, 1)
    ]
    assert sum(isinstance(m, torch.nn.ReLU) for m in policy.net) == 3


@pytest.mark.parametrize("in_features, hidden", [(0, [4]), (3, [4, 0]), (3, [-1])])
def test_bad_sizes_raise(in_features, hidden):
    with pytest.raises(ValueError, match="positive"):
        StopPolicyConfig(in_features, hidden)


def test_no_hidden_layer_is_logistic_regression():
    policy = StopPolicy(StopPolicyConfig(3, []))
    assert len(policy.net) == 1


def test_contract_smoke(rng):
    K, B, F = 4, 5, 7
    policy = StopPolicy(StopPolicyConfig(F, [8, 3]))
    feats = torch.randn(K, B, F, generator=rng)
    logits = policy(feats)
    assert logits.shape == (K, B)
    assert policy(feats[0]).shape == (B,)
    assert torch.allclose(policy(feats[0]), logits[0])
    log_q_target = torch.log_softmax(torch.randn(B, K, generator=rng), dim=1)
    q = stop_distribution(logits.T)
    loss = -(log_q_target.exp() * q.clamp_min(1e-30).log()).sum(dim=1).mean()
    loss.backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    clone = StopPolicy(StopPolicyConfig(**policy.describe()))
    clone.load_state_dict(policy.state_dict())
    assert torch.equal(clone(feats), logits.detach())


@pytest.mark.parametrize("bias, expected", [(10.0, 0), (-10.0, 3)])
def test_sigmoid_is_probability_of_stopping(rng, bias, expected):
    # the paper's pi (stop), not the released LISTA code's probability of continuing
    policy = StopPolicy(StopPolicyConfig(5, [4]))
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.fill_(bias)
    logits = policy(torch.randn(4, 6, 5, generator=rng)).T  # (B, K)
    assert (stop_index(logits) == expected).all()
    assert torch.allclose(stop_distribution(logits)[:, expected], torch.ones(6), atol=1e-3)
