"""The compute-aware prior p(t) ∝ exp(-lambda c_t) and the objectives that use it."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.imitation import stage2_loss
from l2o.stopping.objectives import STAGE1_LOSSES, draw_oracle_steps, joint_objective, stage1_loss
from l2o.stopping.oracle import oracle_distribution, oracle_log_distribution
from l2o.stopping.prior import (
    PRIOR_COSTS,
    check_prior_lambda,
    compute_log_prior,
    measure_step_seconds,
    prior_from_checkpoint,
    prior_record,
    step_costs,
)

F64 = torch.float64
LAMBDAS = [0.0, 0.1, 0.5, 1.0, 5.0]


# -- step_costs ------------------------------------------------------------------------


def test_cost_kinds():
    assert PRIOR_COSTS == ("steps", "seconds")


def test_step_costs_are_the_step_numbers():
    c = step_costs(4)
    assert c.dtype == F64
    assert torch.equal(c, torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64))


def test_seconds_are_rescaled_so_the_last_step_costs_T():
    # (0.2, 0.4, 1.0) s -> x 3 / 1.0 = (0.6, 1.2, 3.0)
    c = step_costs(3, [0.2, 0.4, 1.0])
    assert torch.allclose(c, torch.tensor([0.6, 1.2, 3.0], dtype=F64), atol=1e-15)
    assert c[-1].item() == 3.0
    # a tensor works the same, and the scale of the seconds does not matter
    assert torch.allclose(step_costs(3, torch.tensor([2.0, 4.0, 10.0])), c, atol=1e-15)
    # steps of equal cost: seconds proportional to t give c_t = t
    assert torch.allclose(step_costs(5, [0.01 * t for t in range(1, 6)]), step_costs(5), atol=1e-12)


def test_small_timing_dips_are_flattened():
    # step 2 measured slightly faster than step 1 (noise): flattened to step 1's time
    c = step_costs(3, [1.0, 0.9, 2.0])
    assert torch.allclose(c, torch.tensor([1.5, 1.5, 3.0], dtype=F64), atol=1e-15)


@pytest.mark.parametrize("seconds, match", [
    ([1.0, 2.0], r"shape \(3,\)"),
    ([[1.0, 2.0, 3.0]], r"shape \(3,\)"),
    ([0.0, 1.0, 2.0], "> 0"),
    ([-1.0, 1.0, 2.0], "> 0"),
    ([1.0, float("nan"), 2.0], "finite"),
    ([1.0, float("inf"), 2.0], "finite"),
    ([1.0, 2.0, 0.5], "step 3"),  # far below step 2's time: not noise
])
def test_bad_seconds_raise(seconds, match):
    with pytest.raises(ValueError, match=match):
        step_costs(3, seconds)


@pytest.mark.parametrize("num_steps", [0, -2, 2.5])
def test_bad_num_steps_raise(num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        step_costs(num_steps)


# -- compute_log_prior -----------------------------------------------------------------


def test_lambda_zero_is_no_prior():
    assert compute_log_prior(step_costs(5), 0.0) is None
    assert compute_log_prior(step_costs(5), 0) is None
    assert compute_log_prior(step_costs(5), 0.0, steps=[2, 5]) is None


@pytest.mark.parametrize("lam", [-0.1, float("nan"), float("inf"), "much", None, True])
def test_bad_lambda_raises_naming_the_key(lam):
    with pytest.raises(ValueError, match="prior_lambda"):
        compute_log_prior(step_costs(3), lam)
    with pytest.raises(ValueError, match="prior_lambda"):
        check_prior_lambda(lam)


def test_log_prior_hand_case():
    # c = (1, 2, 3), lambda = ln 2: p ∝ (1/2, 1/4, 1/8) = (4, 2, 1) / 7
    lp = compute_log_prior(step_costs(3), math.log(2.0))
    assert lp.dtype == F64
    assert torch.allclose(lp.exp(), torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=F64), atol=1e-15)


def test_prior_restricted_to_candidates_sums_to_one():
    costs = step_costs(6, [0.1, 0.15, 0.3, 0.31, 0.5, 0.9])
    for lam in LAMBDAS[1:]:
        for steps in ([1, 2, 3, 4, 5, 6], [2, 4, 6], [3], [1, 6]):
            lp = compute_log_prior(costs, lam, steps=steps)
            assert lp.shape == (len(steps),)
            assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-14)
            # the prior over all steps, conditioned on the candidates
            full = compute_log_prior(costs, lam).exp()
            cond = full[[t - 1 for t in steps]] / full[[t - 1 for t in steps]].sum()
            assert torch.allclose(lp.exp(), cond, atol=1e-14)
    # c = (1, 2, 3), lambda = 1, candidates {1, 3}: (e^-1, e^-3) / (e^-1 + e^-3) = (1, e^-2) / (1 + e^-2)
    lp = compute_log_prior(step_costs(3), 1.0, steps=[1, 3])
    e2 = math.exp(-2.0)
    assert torch.allclose(lp.exp(), torch.tensor([1 / (1 + e2), e2 / (1 + e2)], dtype=F64), atol=1e-15)


@pytest.mark.parametrize("steps", [[], [0, 1], [2, 2], [3, 1], [1, 4]])
def test_bad_candidate_steps_raise(steps):
    with pytest.raises(ValueError, match="steps"):
        compute_log_prior(step_costs(3), 1.0, steps=steps)


def test_prior_record_and_old_checkpoints():
    rec = prior_record(0.5, "seconds", step_costs(3, [1.0, 2.0, 4.0]))
    assert rec == {"lambda": 0.5, "cost": "seconds", "costs": [0.75, 1.5, 3.0]}
    assert prior_from_checkpoint({"prior": rec}, 3) == rec
    assert prior_from_checkpoint({"beta": 0.28}, 2) == {"lambda": 0.0, "cost": "steps", "costs": [1.0, 2.0]}
    with pytest.raises(ValueError, match="3 step costs"):
        prior_from_checkpoint({"prior": rec}, 4)
    with pytest.raises(ValueError, match="prior_cost"):
        prior_record(0.5, "flops", [1.0])


# -- lambda = 0 is today's objectives, bit for bit ---------------------------------------


def test_lambda_zero_equals_the_prior_free_objectives(rng):
    losses = torch.rand(16, 5, generator=rng, dtype=torch.float32) * 3
    logits = torch.randn(16, 5, generator=rng)
    log_q = stop_log_distribution(logits)
    lp = compute_log_prior(step_costs(5), 0.0)
    for name in STAGE1_LOSSES:
        a = stage1_loss(name, losses, 0.28, generator=torch.Generator().manual_seed(1))
        b = stage1_loss(name, losses, 0.28, lp, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b), name
    assert torch.equal(joint_objective(losses, log_q, 0.28), joint_objective(losses, log_q, 0.28, lp))
    assert torch.equal(draw_oracle_steps(losses, 0.28, generator=torch.Generator().manual_seed(2)),
                       draw_oracle_steps(losses, 0.28, lp, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(oracle_log_distribution(losses, 0.28), oracle_log_distribution(losses, 0.28, lp))


# -- the oracle with a prior ---------------------------------------------------------------


def test_oracle_with_prior_hand_case():
    losses = torch.tensor([[0.0, math.log(2.0), math.log(4.0)]], dtype=F64)
    lp = compute_log_prior(step_costs(3), math.log(2.0))
    # beta = 1: exp(-l) = (1, 1/2, 1/4), exp(-lambda c) = (1/2, 1/4, 1/8)
    # -> (1/2, 1/8, 1/32) = (16, 4, 1) / 21
    q = oracle_distribution(losses, 1.0, lp)
    assert torch.allclose(q, torch.tensor([[16 / 21, 4 / 21, 1 / 21]], dtype=F64), atol=1e-15)
    # beta = 0.5: exp(-l / beta) = (1, 1/4, 1/16) -> (1/2, 1/16, 1/128) = (64, 8, 1) / 73
    q = oracle_distribution(losses, 0.5, lp)
    assert torch.allclose(q, torch.tensor([[64 / 73, 8 / 73, 1 / 73]], dtype=F64), atol=1e-15)


def test_oracle_with_prior_is_softmax_of_losses_and_costs(rng):
    losses = torch.rand(8, 6, generator=rng, dtype=F64) * 4
    costs = step_costs(6, torch.rand(6, generator=rng, dtype=F64).cumsum(0) + 0.1)
    for beta in (0.1, 0.28, 2.0):
        for lam in LAMBDAS[1:]:
            q = oracle_distribution(losses, beta, compute_log_prior(costs, lam))
            assert torch.allclose(q, torch.softmax(-losses / beta - lam * costs, dim=1), atol=1e-13)


def test_joint_objective_with_prior_is_kl_to_the_prior(rng):
    losses = torch.rand(4, 3, generator=rng, dtype=F64)
    log_q = stop_log_distribution(torch.randn(4, 3, generator=rng, dtype=F64))
    lp = compute_log_prior(step_costs(3), 0.7)
    q = log_q.exp()
    want = ((q * losses).sum(1) + 0.3 * (q * (log_q - lp)).sum(1)).mean()
    assert torch.allclose(joint_objective(losses, log_q, 0.3, lp), want, atol=1e-14)


# -- the mean stop step falls with lambda ----------------------------------------------------


def flat_after_two(batch: int = 4, steps: int = 6) -> torch.Tensor:
    """Per-step losses that drop until step 2 and are flat after: with lambda = 0 the oracle
    spreads over steps 2..T; every lambda > 0 makes later steps costlier for nothing."""
    row = torch.tensor([3.0] + [1.0] * (steps - 1), dtype=F64)
    return row.expand(batch, steps).clone()


def expected_step(q: torch.Tensor) -> float:
    return float((q * torch.arange(1, q.shape[1] + 1, dtype=q.dtype)).sum(1).mean())


def test_oracle_mean_step_falls_with_lambda():
    losses, beta = flat_after_two(), 0.5
    costs = step_costs(losses.shape[1])
    means, early = [], []
    for lam in LAMBDAS:
        q = oracle_distribution(losses, beta, compute_log_prior(costs, lam))
        means.append(expected_step(q))
        early.append(q[:, :2].sum(1).mean().item())
    # lambda = 0: exp(-l / beta) ∝ (e^-4, 1, 1, 1, 1, 1), mean step just under 4
    assert means[0] == pytest.approx((1 * math.exp(-4) + 2 + 3 + 4 + 5 + 6) / (math.exp(-4) + 5), abs=1e-12)
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert all(a < b for a, b in zip(early, early[1:])), early  # mass moves to step 2 and earlier
    assert early[-1] > 0.99
    assert means[-1] < 2.0


def test_imitating_policy_mean_step_falls_with_lambda():
    """A policy trained by Stage II's loss on the prior's oracle (a free stop logit per step)."""
    losses, beta = flat_after_two(batch=8), 0.5
    costs = step_costs(losses.shape[1])
    means = []
    for lam in LAMBDAS:
        target = oracle_log_distribution(losses, beta, compute_log_prior(costs, lam))
        logits = torch.zeros(1, losses.shape[1], dtype=F64, requires_grad=True)
        opt = torch.optim.LBFGS([logits], max_iter=100, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure():
            opt.zero_grad()
            loss = stage2_loss("forward_kl", stop_log_distribution(logits.expand(losses.shape[0], -1)), target)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            q = stop_log_distribution(logits).exp()
        assert torch.allclose(q, target[:1].exp(), atol=1e-4), lam  # it learned the oracle
        means.append(expected_step(q))
    assert all(a > b for a, b in zip(means, means[1:])), means


# -- measure_step_seconds ---------------------------------------------------------------------


class SleepyModel(nn.Module):
    """Reaching step t takes t x 5 ms (busy wait); a batch norm whose statistics must not move."""

    num_steps = 3

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)
        self.calls = []

    def forward(self, inputs, steps=None):
        steps = steps or list(range(1, self.num_steps + 1))
        self.calls.append((list(steps), torch.is_grad_enabled(), self.training))
        start = time.perf_counter()
        while time.perf_counter() - start < 0.005 * steps[-1]:
            pass
        return torch.stack([self.bn(inputs) for _ in steps])


class Task:
    @staticmethod
    def model_inputs(batch):
        return batch["y"]


def test_measure_step_seconds():
    net = SleepyModel()
    net.train()
    before = net.bn.running_mean.clone()
    batch = {"y": torch.randn(5, 2) + 3.0}
    seconds = measure_step_seconds(Task(), net, batch, repeats=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert net.training  # its mode is back
    assert torch.equal(net.bn.running_mean, before)  # eval mode while timing
    assert net.calls[0][0] == [3]  # the warm-up
    assert [c[0] for c in net.calls[1:]] == [[1]] * 3 + [[2]] * 3 + [[3]] * 3
    assert not any(grad or training for _, grad, training in net.calls)
    # reaching step t waits t x 5 ms: lower bounds only (a busy machine only adds time)
    assert all(s >= 0.005 * t for t, s in enumerate(seconds, start=1)), seconds
    c = step_costs(3, seconds)
    assert c[-1].item() == pytest.approx(3.0, abs=1e-12) and bool((c[1:] >= c[:-1]).all())
    with pytest.raises(ValueError, match="repeats"):
        measure_step_seconds(Task(), net, batch, repeats=0)
