"""Regression task families: format, ranges, determinism, and the exact linear-regression losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from l2o.tasks.few_shot.regression import (
    LinearConfig,
    SinusoidConfig,
    fixed_regression_tasks,
    linear_expected_query_loss,
    linear_gd_iterates,
    linear_optimal_steps,
    linear_query_loss,
    sample_regression_tasks,
)


def test_sinusoid_batch(rng):
    cfg = SinusoidConfig(shots=[2, 6], query_points=7)
    b = sample_regression_tasks(cfg, 200, rng)
    assert b["support_x"].shape == (200, 6, 1) and b["support_y"].shape == (200, 6, 1)
    assert b["query_x"].shape == (200, 7, 1) and b["query_y"].shape == (200, 7, 1)
    assert b["support_mask"].dtype == torch.float32 and b["shots"].dtype == torch.int64
    assert set(b["shots"].tolist()) == set(range(2, 7))
    assert torch.equal(b["support_mask"].sum(1), b["shots"].float())
    assert torch.all(b["support_mask"][:, 1:] <= b["support_mask"][:, :-1])
    A, phi = b["amplitude"], b["phase"]
    assert A.min() >= 0.1 and A.max() <= 5.0 and phi.min() >= 0.0 and phi.max() <= math.pi
    assert A.max() - A.min() > 4.0 and phi.max() - phi.min() > 2.5  # the ranges are used
    x = b["query_x"]
    assert x.min() >= -5.0 and x.max() <= 5.0
    assert torch.allclose(b["query_y"], A.view(-1, 1, 1) * torch.sin(x - phi.view(-1, 1, 1)), atol=1e-5)
    m = b["support_mask"].unsqueeze(-1) > 0
    expect = A.view(-1, 1, 1) * torch.sin(b["support_x"] - phi.view(-1, 1, 1))
    assert torch.allclose(b["support_y"][m], expect[m], atol=1e-5)
    assert torch.all(b["support_x"][~m] == 0) and torch.all(b["support_y"][~m] == 0)


def test_sinusoid_noise():
    b = sample_regression_tasks(SinusoidConfig(noise_std=0.3), 400, torch.Generator().manual_seed(0))
    clean = b["amplitude"].view(-1, 1, 1) * torch.sin(b["query_x"] - b["phase"].view(-1, 1, 1))
    assert abs(float((b["query_y"] - clean).std()) - 0.3) < 0.02


def test_linear_batch():
    cfg = LinearConfig(dim=5, noise_std=0.0, shots=[1, 8], query_points=4)
    b = sample_regression_tasks(cfg, 500, torch.Generator().manual_seed(1))
    assert b["support_x"].shape == (500, 8, 5) and b["query_y"].shape == (500, 4, 1) and b["weights"].shape == (500, 5)
    w = b["weights"]
    assert torch.allclose(b["query_y"][..., 0], torch.einsum("bqd,bd->bq", b["query_x"], w), atol=1e-5)
    assert abs(float(b["query_x"].pow(2).sum(-1).mean()) - 1.0) < 0.05  # x ~ N(0, I/d)
    assert abs(float(w.pow(2).mean()) - 1.0) < 0.1


def test_determinism_and_fixed_sets():
    for cfg in (SinusoidConfig(), LinearConfig(dim=3, shots=[1, 5])):
        a = sample_regression_tasks(cfg, 3, torch.Generator().manual_seed(4))
        b = sample_regression_tasks(cfg, 3, torch.Generator().manual_seed(4))
        assert all(torch.equal(a[k], b[k]) for k in a)
        f1 = fixed_regression_tasks(cfg, n_tasks=7, seed=2, chunk=3)
        f2 = fixed_regression_tasks(cfg, n_tasks=7, seed=2, chunk=5)
        assert [t["shots"].shape[0] for t in f1] == [3, 3, 1]
        for k in f1[0]:
            assert torch.equal(torch.cat([t[k] for t in f1]), torch.cat([t[k] for t in f2]))
        val = fixed_regression_tasks(cfg, n_tasks=7, seed=2, split="val")
        assert not torch.equal(val[0]["query_x"], torch.cat([t["query_x"] for t in f1]))


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: SinusoidConfig(amplitude=[0.0, 1.0]), "data.amplitude"),
        (lambda: SinusoidConfig(phase=[2.0, 1.0]), "data.phase"),
        (lambda: SinusoidConfig(shots=[5, 2]), "data.shots"),
        (lambda: SinusoidConfig(noise_std=-1.0), "data.noise_std"),
        (lambda: SinusoidConfig(query_points=0), "data.query_points"),
        (lambda: LinearConfig(dim=0), "data.dim"),
        (lambda: LinearConfig(shots=[0, 3]), "data.shots"),
    ],
)
def test_config_errors(make, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make()


def test_gd_iterates_match_autograd_on_mse():
    """The formulas' inner loss is F.mse_loss over the real support points."""
    cfg = LinearConfig(dim=4, shots=[2, 5])
    b = sample_regression_tasks(cfg, 3, torch.Generator().manual_seed(5))
    lr, T = 0.3, 4
    v_all = linear_gd_iterates(b["support_x"], b["support_y"], b["support_mask"], lr, T)
    for i in range(3):
        k = int(b["shots"][i])
        X, y = b["support_x"][i, :k].double(), b["support_y"][i, :k, 0].double()
        v = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        for t in range(T):
            (g,) = torch.autograd.grad(F.mse_loss(X @ v, y), v)
            v = (v - lr * g).detach().requires_grad_()
            assert torch.allclose(v, v_all[i, t + 1], atol=1e-10)


def test_exact_expected_loss_matches_monte_carlo():
    """linear_expected_query_loss (given X) = MC over weights, support noise and a query point."""
    d, k, lr, T, n = 4, 3, 0.4, 6, 20_000
    cfg = LinearConfig(dim=d, noise_std=0.5, weight_std=1.0, shots=[1, 8])
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1, k, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    exact = linear_expected_query_loss(X, torch.ones(1, k), cfg, lr, T)[0]
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (X[0] @ w.T).T + 0.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    v = linear_gd_iterates(X.expand(n, k, d), y, torch.ones(n, k), lr, T)  # (n, T+1, d)
    xq = torch.randn(n, 1, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    yq = (xq[:, 0] * w).sum(-1) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    mc = ((xq * v).sum(-1) - yq.unsqueeze(1)).pow(2)  # (n, T+1)
    err = mc.std(0) / math.sqrt(n)
    assert torch.all((mc.mean(0) - exact).abs() < 4 * err + 1e-3), (mc.mean(0), exact)
    # given the task, the query expectation is |v_t - w|^2 / d + sigma^2
    per_task = linear_query_loss({"support_x": X.expand(n, k, d), "support_y": y, "support_mask": torch.ones(n, k),
                                  "weights": w}, cfg, lr, T)
    assert torch.all((per_task.mean(0) - exact).abs() < 4 * per_task.std(0) / math.sqrt(n) + 1e-3)
    assert not torch.allclose(exact, exact[:1].expand_as(exact), rtol=0.05)  # the steps do differ


def test_padding_is_ignored_by_exact_losses():
    cfg = LinearConfig(dim=3)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(1, 4, 3, generator=g)
    padded = torch.cat([X, torch.randn(1, 2, 3, generator=g)], dim=1)
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0]])
    a = linear_expected_query_loss(X, torch.ones(1, 4), cfg, 0.5, 5)
    b = linear_expected_query_loss(padded, mask, cfg, 0.5, 5)
    assert torch.allclose(a, b)


def test_optimal_steps_grow_with_shots():
    cfg = LinearConfig(dim=20, noise_std=0.5)
    shots, losses, t_star = linear_optimal_steps(cfg, lr=0.5, steps=10, shots=[1, 2, 5, 10], n_tasks=300)
    assert losses.shape == (4, 11) and list(shots) == [1, 2, 5, 10]
    assert list(t_star) == sorted(t_star) and t_star[0] <= 3 and t_star[-1] == 10


def test_clean_grid_is_the_noise_free_function(rng):
    cfg = SinusoidConfig(noise_std=0.5, clean_points=50)
    b = sample_regression_tasks(cfg, 8, rng)
    assert b["clean_x"].shape == (8, 50, 1) and b["clean_y"].shape == (8, 50, 1)
    assert torch.allclose(b["clean_x"][0, :, 0], torch.linspace(-5, 5, 50))
    A, phi = b["amplitude"].view(-1, 1, 1), b["phase"].view(-1, 1, 1)
    assert torch.allclose(b["clean_y"], A * torch.sin(b["clean_x"] - phi), atol=1e-6)
    # the noisy query targets are off the function, the clean ones on it
    assert not torch.allclose(b["query_y"], A * torch.sin(b["query_x"] - phi), atol=0.1)
    # the clean draws come last: the rest of the batch is what it was without them
    lin = LinearConfig(dim=3, clean_points=5)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with_clean = sample_regression_tasks(lin, 4, g1)
    assert torch.allclose(with_clean["clean_y"][..., 0], torch.einsum("bgd,bd->bg", with_clean["clean_x"],
                                                                      with_clean["weights"]))
    again = sample_regression_tasks(LinearConfig(dim=3, clean_points=1), 4, g2)
    assert torch.equal(with_clean["query_y"], again["query_y"])


def test_honest_oracle_chooses_on_noisy_points_and_scores_noise_free():
    """A planted noisy query point makes step 0 look best; the noise-free error says step 2. The honest
    oracle chooses step 0 (what it can see) and is scored on the noise-free error there; the optimistic one
    reads the noise-free minimum."""
    import numpy as np

    from l2o.tasks.few_shot.task import FewShotRegressionTask

    comps = {"query_mse": np.array([[0.1, 0.5, 0.9]]), "mse": np.array([[3.0, 2.0, 1.0]]),
             "diverged": np.zeros((1, 3))}
    honest = FewShotRegressionTask.honest_oracle(None, comps)
    assert honest["mse"].tolist() == [3.0]


def test_summary_names_do_not_collide_with_the_stop_rules_readings():
    """Each reading of a stopping model is summarised as ``<name><suffix>`` (suffix ``_median`` for the
    median stop rule): the robust median over tasks must have a name of its own, or the report's
    "median rule" row silently reads (and averages) both."""
    import numpy as np

    from l2o.stopping.rules import RULES
    from l2o.tasks.few_shot.task import FewShotRegressionTask

    summary = FewShotRegressionTask.summarise(None, {"mse": np.array([1.0, 2.0, 30.0]),
                                                     "query_mse": np.array([1.0, 2.0, 3.0])})
    assert summary["mse_task_median"] == 2.0
    suffixed = {f"{name}_{rule}" for name in summary for rule in RULES}
    assert not suffixed & set(summary)
