"""The sparse-recovery task: losses, policy features, sampling, NMSE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2o.models.lista import LISTA
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.tasks.base import select_rows
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask, nmse_db, squared_error

F64 = torch.float64


@pytest.fixture
def task(tiny_problem):
    return SparseRecoveryTask.from_arrays(tiny_problem.arrays, [20.0, 30.0, 40.0], 0.1)


def test_from_arrays(task, tiny_problem):
    assert (task.m, task.n) == (20, 40)
    assert torch.equal(task.A, torch.from_numpy(tiny_problem.arrays["A"]))
    assert task.train_set is None
    assert task.policy_in_features() == 2 * 20 + 40 + 2
    assert task.name == "sparse_recovery"


def test_step_losses_hand_case():
    task = SparseRecoveryTask(torch.eye(2), [20.0], 0.5)
    states = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, -1.0]]])  # (K=2, B=2, n=2)
    batch = {"y": torch.zeros(2, 2), "x": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}
    losses = task.step_losses(states, batch)
    # example 0: step 1 |(0,-1)|^2 = 1, step 2 |(0,1)|^2 = 1; example 1: 1, then 9 + 4 = 13
    assert torch.equal(losses, torch.tensor([[1.0, 1.0], [1.0, 13.0]]))
    assert torch.equal(squared_error(states, batch["x"]), losses.T)


def test_policy_features_hand_case():
    A = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])  # m = 2, n = 3
    task = SparseRecoveryTask(A, [20.0], 0.5)
    y = torch.tensor([[1.0, 1.0]])
    x1 = torch.tensor([[1.0, 0.0, 0.0]])
    x3 = torch.tensor([[0.0, 1.0, 1.0]])
    states = torch.stack([x1, x3])  # steps 1 and 3 of T = 4
    feats = task.policy_features({"y": y, "x": torch.full((1, 3), 9.0)}, states, torch.tensor([1, 3]), 4)
    assert feats.shape == (2, 1, 2 * 2 + 3 + 2)
    # [y, y - A x_t, x_t, t/T, 1 - t/T]
    expected0 = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.25, 0.75]  # A x1 = (1, 0)
    expected1 = [1.0, 1.0, -1.0, 1.0, 0.0, 1.0, 1.0, 0.75, 0.25]  # A x3 = (2, 0)
    assert torch.equal(feats[0, 0], torch.tensor(expected0))
    assert torch.equal(feats[1, 0], torch.tensor(expected1))


def test_policy_features_do_not_see_the_label(task, rng):
    batch = task.sample_batch(8, rng)
    states = torch.randn(3, 8, 40, generator=rng)
    steps = torch.tensor([2, 4, 5])
    f1 = task.policy_features(batch, states, steps, 5)
    f2 = task.policy_features({**batch, "x": torch.zeros_like(batch["x"])}, states, steps, 5)
    assert torch.equal(f1, f2)
    assert f1.shape == (3, 8, task.policy_in_features())


def test_build_model_is_lista_at_ista(task):
    model = task.build_model({"T": 3, "L": 4.0})
    assert isinstance(model, LISTA) and model.num_steps == 3
    assert torch.allclose(model.W1[0], task.A.T / 4.0)
    with pytest.raises(ValueError, match="T must be"):
        task.build_model({"T": 1})


def test_sample_batch_shapes_and_determinism(task):
    a = task.sample_batch(16, torch.Generator().manual_seed(3))
    b = task.sample_batch(16, torch.Generator().manual_seed(3))
    c = task.sample_batch(16, torch.Generator().manual_seed(4))
    assert a["y"].shape == (16, 20) and a["x"].shape == (16, 40) and a["snr"].shape == (16,)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x"], c["x"])
    assert set(a["snr"].tolist()) <= {20.0, 30.0, 40.0}


def test_sample_batch_statistics(task):
    """Fresh batches follow the problem: sparsity 0.1 (binomial, 5 std), all three SNR
    levels about equally often, y - A x at the drawn SNR (block-mean within 1 dB: per-example
    std ~ 8.69/sqrt(2*20) = 1.4 dB and bias ~ +0.46 dB at m = 20, 1300+ examples per level)."""
    N = 4000
    batch = task.sample_batch(N, torch.Generator().manual_seed(0))
    frac = (batch["x"] != 0).double().mean().item()
    assert abs(frac - 0.1) < 5 * math.sqrt(0.09 / (N * 40))
    counts = torch.bincount((batch["snr"] / 10 - 2).long(), minlength=3).double() / N
    assert ((counts - 1 / 3).abs() < 5 * math.sqrt(2 / 9 / N)).all()
    clean = batch["x"].double() @ task.A.double().T
    noise = batch["y"].double() - clean
    keep = clean.std(dim=1) > 0
    measured = 20 * torch.log10(clean.std(dim=1) / noise.std(dim=1))
    for level in (20.0, 30.0, 40.0):
        sel = keep & (batch["snr"] == level)
        assert abs(measured[sel].mean().item() - level) < 1.0


def test_sample_batch_from_fixed_training_set():
    train = {"y": torch.arange(10.0).view(5, 2), "x": torch.arange(15.0).view(5, 3),
             "snr": torch.tensor([20.0, 30.0, 40.0, 20.0, 30.0])}
    task = SparseRecoveryTask(torch.ones(2, 3), [20.0, 30.0, 40.0], 0.1, train_set=train)
    batch = task.sample_batch(7, torch.Generator().manual_seed(0))
    assert batch["y"].shape == (7, 2)
    rows = (batch["y"][:, 0] / 2).long()
    assert torch.equal(batch["x"], train["x"][rows]) and torch.equal(batch["snr"], train["snr"][rows])


def test_select_rows():
    batch = {"a": torch.arange(4), "b": torch.arange(8).view(4, 2)}
    sub = select_rows(batch, torch.tensor([True, False, True, False]))
    assert torch.equal(sub["a"], torch.tensor([0, 2])) and torch.equal(sub["b"], torch.tensor([[0, 1], [4, 5]]))


def test_nmse_db_is_ratio_of_means():
    assert nmse_db(np.array([1.0, 3.0]), np.array([10.0, 30.0])) == pytest.approx(-10.0)
    # not the mean of per-example dB: (1/1, 1/100) -> ratio of means 2/101
    assert nmse_db(np.array([1.0, 1.0]), np.array([1.0, 100.0])) == pytest.approx(10 * math.log10(2 / 101))
    assert nmse_db(torch.tensor([2.0]), torch.tensor([2.0])) == pytest.approx(0.0)


def test_ista_init_nmse_is_finite_on_val(task, tiny_problem):
    model = task.build_model({"T": 5})
    y = torch.from_numpy(tiny_problem.arrays["val_y"])
    x = torch.from_numpy(tiny_problem.arrays["val_x"])
    with torch.no_grad():
        se = task.step_losses(model(y), {"y": y, "x": x})
    db = nmse_db(se[:, -1].numpy(), x.pow(2).sum(dim=1).numpy())
    assert math.isfinite(db) and db < 0  # better than predicting zero


@pytest.mark.parametrize("shape", [(5, 13, 11), (13, 11), (2, 3, 13, 11)])
def test_squared_error_values_and_gradients(shape):
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(13, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(squared_error(states, target), (states - target).pow(2).sum(-1), rtol=1e-12)
    assert torch.autograd.gradcheck(squared_error, (states, target))


def test_squared_error_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="target's shape"):
        squared_error(torch.zeros(4, 3, 5), torch.zeros(3, 6))


def _policy_problem(dtype=F64):
    gen = torch.Generator().manual_seed(5)
    m, n, K, B = 6, 10, 4, 7
    task = SparseRecoveryTask(torch.randn(m, n, generator=gen, dtype=dtype), [20.0], 0.3)
    policy = StopPolicy(StopPolicyConfig(task.policy_in_features(), [8, 5])).to(dtype)
    batch = {"y": torch.randn(B, m, generator=gen, dtype=dtype)}
    states = torch.randn(K, B, n, generator=gen, dtype=dtype, requires_grad=True)
    steps = torch.tensor([2, 3, 5, 8])
    return task, policy, batch, states, steps


def test_stop_logit_fn_equals_the_policy_on_the_features():
    task, policy, batch, states, steps = _policy_problem()
    outs = []
    for logits_of in (task.stop_logit_fn(policy),
                      lambda b, s, k, T: policy(task.policy_features(b, s, k, T))):
        policy.zero_grad(set_to_none=True)
        states.grad = None
        logits = logits_of(batch, states, steps, 8)  # (K, B)
        (logits * torch.arange(logits.numel(), dtype=F64).view_as(logits)).sum().backward()
        outs.append([logits.detach(), states.grad.clone(), *[p.grad.clone() for p in policy.parameters()]])
    assert outs[0][0].shape == (4, 7)
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_stop_logit_fn_falls_back_for_other_policies():
    task, _, batch, states, steps = _policy_problem()
    other = torch.nn.Sequential(torch.nn.Linear(task.policy_in_features(), 1), torch.nn.Flatten(-2)).double()
    logits = task.stop_logit_fn(other)(batch, states, steps, 8)
    assert torch.equal(logits, other(task.policy_features(batch, states, steps, 8)))
