"""The few-shot tasks through the stages: bad input named before work, the sampled Stage I unbiased
for the full soft-min on MAML, divergence handled, the policy's input without query labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from l2o.stopping.objectives import soft_min_loss
from l2o.tasks.registry import load_task, task_class
from l2o.train.stage1 import sampled_step_loss

TINY = yaml.safe_load((Path(__file__).resolve().parents[3] / "configs/tiny.yaml").read_text())


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    path = tmp_path_factory.mktemp("fsr") / "data.npz"
    task_class("few_shot_regression").prepare_data(TINY["few_shot_regression"]["data"], path)
    return path


@pytest.mark.parametrize("name, data, needle", [
    ("few_shot_classification", {"shots": [3, 1]}, "data.shots"),
    ("few_shot_classification", {"shots": [0, 2]}, "data.shots"),
    ("few_shot_classification", {"source": "omniglot"}, "data.root"),
    ("few_shot_classification", {"source": "omniglot", "root": "/no/such/folder"}, "/no/such/folder"),
    ("few_shot_classification", {"ways": 1}, "data.ways"),
    ("few_shot_regression", {"family": "cubic"}, "data.family"),
    ("few_shot_regression", {"shots": [5, 2]}, "data.shots"),
])
def test_bad_data_config_is_named_before_work(tmp_path, name, data, needle):
    with pytest.raises((ValueError, FileNotFoundError), match=needle.replace(".", r"\.")):
        task_class(name).prepare_data(data, tmp_path / "data.npz")
    assert not (tmp_path / "data.npz").exists()


def test_more_ways_than_classes_is_named(tmp_path):
    data = {**TINY["few_shot_classification"]["data"], "ways": 50}
    with pytest.raises(ValueError, match="data.ways = 50"):
        task_class("few_shot_classification").prepare_data(data, tmp_path / "data.npz")


def test_too_few_steps_is_named(regression):
    task = load_task("few_shot_regression", regression, "cpu")
    with pytest.raises(ValueError, match="num_steps"):
        task.model_args({"num_steps": 1})


def test_sampled_stage1_is_unbiased_for_the_soft_min_on_maml(regression):
    task = load_task("few_shot_regression", regression, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args({"net": {"hidden": [16]}, "num_steps": 4, "inner_lr": 0.2}))
    batch = task.sample_batch(8, torch.Generator().manual_seed(1))
    beta = 0.5
    soft_min_loss(task.step_losses(net(task.model_inputs(batch)), batch), beta).backward()
    full = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    gen, draws = torch.Generator().manual_seed(2), 300
    for _ in range(draws):
        (sampled_step_loss(task, net, batch, beta, gen) / draws).backward()
    num = sum(((p.grad - f) ** 2).sum() for p, f in zip(net.parameters(), full)).sqrt()
    den = sum((f ** 2).sum() for f in full).sqrt()
    assert num / den < 0.15, f"mean sampled meta-gradient is {num / den:.3f} away from the full one"


def test_a_diverged_task_keeps_its_last_good_loss_and_is_counted(regression):
    task = load_task("few_shot_regression", regression, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args({"net": {"hidden": [8]}, "num_steps": 4, "inner_lr": 0.3}))
    batch = task.sample_batch(3, torch.Generator().manual_seed(0))
    batch["support_y"] = batch["support_y"].clone()
    batch["support_y"][1] *= 1e20  # task 1 blows up
    with torch.no_grad():
        states = net(task.model_inputs(batch))
    losses = task.step_losses(states, batch)
    assert bool(torch.isfinite(losses).all())
    assert torch.equal(losses[1], losses[1, :1].expand(4))  # rejected from step 1 on: theta_0's loss
    metrics = task.step_metrics(states, batch)
    assert metrics["diverged"][1, -1] == 1 and metrics["diverged"][[0, 2]].sum() == 0
    summary = task.summarise({k: v[:, -1].numpy() for k, v in metrics.items()})
    assert summary["diverged_pct"] == pytest.approx(100 / 3)


def test_the_policy_never_sees_query_labels(regression):
    task = load_task("few_shot_regression", regression, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args({"net": {"hidden": [8]}, "num_steps": 3, "inner_lr": 0.1}))
    batch = task.sample_batch(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        states = net(task.model_inputs(batch))
        steps = torch.arange(1, 4)
        f = task.policy_features(batch, states, steps, 3)
        g = task.policy_features({**batch, "query_y": torch.randn_like(batch["query_y"]) * 100}, states, steps, 3)
    assert f.shape == (3, 4, task.policy_in_features()) and torch.equal(f, g)
