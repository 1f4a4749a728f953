"""Sequential stopping at inference: stop_index and the early-exit path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.stopping.distribution import stop_distribution
from l2o.stopping.inference import predict_early_exit, stop_index
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask

F64 = torch.float64
T = 6


# -- stop_index ---------------------------------------------------------------------


def test_stop_index_deterministic():
    logits = torch.tensor(
        [
            [-1.0, 2.0, -3.0],  # first pi > 0.5 at 1
            [-1.0, -1.0, -1.0],  # never: the last step
            [5.0, 5.0, -9.0],  # at once
            [0.0, 0.0, 0.0],  # pi = 0.5 exactly is not > 0.5
            [-1.0, -1.0, 9.0],  # the last column is ignored (stop there anyway)
        ]
    )
    assert torch.equal(stop_index(logits), torch.tensor([1, 2, 0, 2, 2]))


def test_stop_index_single_candidate():
    assert torch.equal(stop_index(torch.tensor([[-3.0], [3.0]])), torch.tensor([0, 0]))


def test_stop_index_with_uniforms():
    logits = torch.zeros(3, 3)  # pi = 0.5 everywhere
    u = torch.tensor([[0.7, 0.3, 0.9], [0.7, 0.8, 0.1], [0.9, 0.9, 0.99]])
    assert torch.equal(stop_index(logits, u), torch.tensor([1, 2, 2]))
    # sampled stop at u < pi: with pi = sigmoid(2) = 0.881, u = 0.88 stops, u = 0.89 does not
    logits = torch.tensor([[2.0, 2.0, 0.0]])
    assert stop_index(logits, torch.tensor([[0.88, 0.0, 0.0]])).item() == 0
    assert stop_index(logits, torch.tensor([[0.89, 0.0, 0.0]])).item() == 1


def test_stop_index_does_not_modify_inputs():
    logits = torch.tensor([[-1.0, -2.0]])
    u = torch.tensor([[0.9, 0.9]])
    stop_index(logits, u)
    stop_index(logits)
    assert torch.equal(logits, torch.tensor([[-1.0, -2.0]]))


def test_sampled_stop_index_follows_q(rng):
    """Sampled stops are distributed as q_phi; 5 binomial standard deviations per step."""
    N = 20000
    logits = torch.tensor([[-1.0, 0.5, -0.3, 0.0]]).expand(N, 4)
    u = torch.rand(N, 4, generator=rng)
    counts = torch.bincount(stop_index(logits, u), minlength=4).double() / N
    q = stop_distribution(logits[:1].double())[0]
    tol = 5 * (q * (1 - q) / N).sqrt()
    assert ((counts - q).abs() < tol).all(), (counts, q)


# -- predict_early_exit vs compute-everything --------------------------------------


class CountingPolicy(nn.Module):
    """Wraps a policy and records the batch size of each call."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.sizes: list[int] = []

    def forward(self, features):
        self.sizes.append(features.shape[1])
        return self.policy(features)


@pytest.fixture(scope="module")
def setup(tiny_problem):
    """A float64 task on the tiny problem's validation set, an untrained LISTA (T=6) and a
    random policy whose bias is shifted so that examples stop at various steps."""
    arrays = tiny_problem.arrays
    task = SparseRecoveryTask(torch.from_numpy(arrays["A"]).double(), [20.0, 30.0, 40.0], 0.1)
    model = task.build_model({"T": T}).double().eval()
    torch.manual_seed(0)
    policy = StopPolicy(StopPolicyConfig(task.policy_in_features(), [16, 8])).double().eval()
    batch = {k: torch.from_numpy(arrays[f"val_{k}"]).double() for k in ("y", "x", "snr")}
    with torch.no_grad():
        policy.net[-1].weight.mul_(30.0)  # spread the logits over examples
        logits = _reference_logits(task, model, policy, batch, list(range(1, T + 1)))[1]
        policy.net[-1].bias.sub_(logits[:, :-1].quantile(0.7) - 0.01)
    return task, model, policy, batch


def _reference_logits(task, model, policy, batch, candidates):
    """The compute-everything path: all T states, then the policy at the candidate steps."""
    with torch.no_grad():
        states = model(task.model_inputs(batch))  # (T, B, n)
        steps = torch.tensor(candidates)
        logits = policy(task.policy_features(batch, states[steps - 1], steps, T)).T  # (B, K)
    return states, logits


CANDIDATE_SETS = [list(range(1, T + 1)), [2, 4, 6], [1, 5, 6], [3, 6], [6]]


@pytest.mark.parametrize("candidates", CANDIDATE_SETS, ids=str)
@pytest.mark.parametrize("mode", ["deterministic", "sampled"])
def test_early_exit_equals_compute_everything(setup, candidates, mode):
    task, model, policy, batch = setup
    B = batch["y"].shape[0]
    states, logits = _reference_logits(task, model, policy, batch, candidates)
    uniforms = None
    if mode == "sampled":
        uniforms = torch.rand(B, len(candidates), generator=torch.Generator().manual_seed(7), dtype=F64)
        margin = (uniforms - torch.sigmoid(logits))[:, :-1].abs()
    else:
        margin = logits[:, :-1].abs()
    if len(candidates) > 1:  # no decision so close to the threshold that rounding could flip it
        assert margin.min() > 1e-9
    idx = stop_index(logits, uniforms)
    ref_step = torch.tensor(candidates)[idx]
    ref_pred = states[ref_step - 1, torch.arange(B)]

    counting = CountingPolicy(policy)
    pred, step = predict_early_exit(task, model, counting, batch, candidates, uniforms)
    assert step.dtype == torch.long and step.shape == (B,)
    assert torch.equal(step, ref_step)
    assert pred.shape == (B, task.n)
    assert torch.allclose(pred, ref_pred, rtol=0, atol=1e-12)
    # the policy is evaluated only at candidate steps before T, on the examples still running
    active = [int((ref_step >= t).sum()) for t in candidates[:-1]]
    assert counting.sizes == [a for a in active if a > 0]
    if len(candidates) == T:  # the bias shift gives a real mix of stop steps
        assert len(set(step.tolist())) >= 3


def test_early_exit_drops_stopped_examples_from_the_model(setup, monkeypatch):
    task, model, policy, batch = setup
    candidates = list(range(1, T + 1))
    _, logits = _reference_logits(task, model, policy, batch, candidates)
    ref_step = torch.tensor(candidates)[stop_index(logits)]
    sizes = []
    real_step = model.step

    def counting_step(t, x, y):
        sizes.append(y.shape[0])
        return real_step(t, x, y)

    monkeypatch.setattr(model, "step", counting_step)
    predict_early_exit(task, model, policy, batch, candidates)
    assert sizes == [int((ref_step >= t).sum()) for t in range(1, T + 1) if (ref_step >= t).any()]
    assert sum(sizes) < T * batch["y"].shape[0]  # compute saved


def test_early_exit_all_stop_at_first_candidate(setup):
    task, model, _, batch = setup
    always = StopPolicy(StopPolicyConfig(task.policy_in_features(), [4])).double()
    with torch.no_grad():
        always.net[-1].weight.zero_()
        always.net[-1].bias.fill_(10.0)
    pred, step = predict_early_exit(task, model, always, batch, [2, 4, 6])
    assert (step == 2).all()
    assert torch.allclose(pred, model(batch["y"])[1], atol=1e-12)


def test_early_exit_never_stops_before_T(setup):
    task, model, _, batch = setup
    never = StopPolicy(StopPolicyConfig(task.policy_in_features(), [4])).double()
    with torch.no_grad():
        never.net[-1].weight.zero_()
        never.net[-1].bias.fill_(-10.0)
    pred, step = predict_early_exit(task, model, never, batch, [1, 3, 6])
    assert (step == T).all()
    assert torch.allclose(pred, model(batch["y"])[-1], atol=1e-12)


@pytest.mark.parametrize("candidates", [[1, 2, 3], [2, 4, 7], [6, 5]], ids=str)
def test_last_candidate_must_be_T(setup, candidates):
    task, model, policy, batch = setup
    with pytest.raises(ValueError, match=f"T={T}"):
        predict_early_exit(task, model, policy, batch, candidates)
