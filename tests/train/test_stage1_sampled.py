"""Stage I's sampled loss with the memory of one step: the same draws and value as sampling from
every step's losses, and unbiased for the soft-min's gradient."""

from __future__ import annotations

import torch

from l2o.stopping.objectives import sampled_oracle_loss, soft_min_loss
from l2o.tasks.registry import load_task
from l2o.train.stage1 import sampled_step_loss


def _setup(tiny_problem_path):
    task = load_task("sparse_recovery", tiny_problem_path, "cpu")
    torch.manual_seed(0)
    net = task.build_model({"T": 5}).double()
    with torch.no_grad():  # away from the ISTA start, so that the steps differ
        net.W2.mul_(1.05)
    batch = {k: v.double() if v.is_floating_point() else v
             for k, v in task.sample_batch(16, torch.Generator().manual_seed(1)).items()}
    task.A = task.A.double()
    return task, net, batch


def test_same_draws_and_value_as_sampling_every_step(tiny_problem_path):
    task, net, batch = _setup(tiny_problem_path)
    a = sampled_step_loss(task, net, batch, beta=0.5, generator=torch.Generator().manual_seed(3))
    losses = task.step_losses(net(batch["y"]), batch)
    b = sampled_oracle_loss(losses, beta=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, rtol=1e-12)


def test_unbiased_for_the_soft_min_gradient(tiny_problem_path):
    task, net, batch = _setup(tiny_problem_path)
    beta = 0.5
    net.zero_grad()
    soft_min_loss(task.step_losses(net(batch["y"]), batch), beta).backward()
    full = net.W1.grad.clone()
    gen = torch.Generator().manual_seed(5)
    draws = 400
    net.zero_grad()
    for _ in range(draws):
        (sampled_step_loss(task, net, batch, beta, gen) / draws).backward()
    sampled = net.W1.grad
    rel = (sampled - full).norm() / full.norm()
    assert rel < 0.1, f"mean sampled gradient is {rel:.3f} away from the full one (relative)"
    # and a single draw is not (the test can fail): the estimator has variance
    net.zero_grad()
    sampled_step_loss(task, net, batch, beta, gen).backward()
    assert (net.W1.grad - full).norm() / full.norm() > rel


def test_same_draws_and_value_with_a_prior(tiny_problem_path):
    from l2o.stopping.prior import compute_log_prior, step_costs

    task, net, batch = _setup(tiny_problem_path)
    lp = compute_log_prior(step_costs(5), 0.8)
    a = sampled_step_loss(task, net, batch, beta=0.5, generator=torch.Generator().manual_seed(3), log_prior=lp)
    losses = task.step_losses(net(batch["y"]), batch)
    b = sampled_oracle_loss(losses, beta=0.5, log_prior=lp, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, rtol=1e-12)
    # lambda 0 is the prior-free draw, bit for bit
    c = sampled_step_loss(task, net, batch, beta=0.5, generator=torch.Generator().manual_seed(3),
                          log_prior=compute_log_prior(step_costs(5), 0.0))
    d = sampled_step_loss(task, net, batch, beta=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(c, d)
