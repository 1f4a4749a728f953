"""The denoising task through the stages: losses on the patch scale, the plain baseline leaves the
heads alone, a checkpoint of the other task is refused, early exit, the showcase."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.tasks.contract import check_early_exit_mix
from l2o.tasks.registry import load_task, task_class
from l2o.train import baseline, stage1, stage2

TINY = yaml.safe_load((Path(__file__).resolve().parents[3] / "configs/tiny.yaml").read_text())
SECTION = TINY["denoising"]
OPT = dict(iterations=6, batch_size=8, lr=1e-3, val_every=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dn") / "data.npz"
    task_class("denoising").prepare_data(SECTION["data"], path)
    return path


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dn_run")
    kw = dict(task="denoising", data=data, progress=False)
    paths = {k: d / f"{k}.pt" for k in ("baseline", "stage1", "stage2")}
    baseline.run(out=paths["baseline"], model=SECTION["model"], baseline={**OPT, "gamma": 0.0}, **kw)
    stage1.run(out=paths["stage1"], model=SECTION["model"], init=paths["baseline"],
               stage1={**OPT, "init": "baseline", "beta": 0.1}, **kw)
    stage2.run(model_ckpt=paths["stage1"], out=paths["stage2"], policy={"channels": 8, "candidate_threshold": 0.0},
               stage2=OPT, **kw)
    return paths


def test_step_loss_is_the_patch_sum_of_squares(data):
    task = load_task("denoising", data, "cpu")
    batch = task.sample_batch(3, torch.Generator().manual_seed(0))
    states = torch.stack([batch["noisy"], batch["clean"]])  # (2, B, 1, P, P): the noisy input, a perfect estimate
    losses = task.step_losses(states, batch)
    P = task.patch_size
    assert batch["noisy"].shape[-1] == P
    assert torch.allclose(losses[:, 0], (batch["noisy"] - batch["clean"]).pow(2).sum(dim=(1, 2, 3)), rtol=1e-5)
    assert torch.all(losses[:, 1] == 0)


def test_plain_baseline_loss_reaches_the_trunk_and_not_the_heads(data):
    """gamma = 0: only the last output is computed and trained (the plain DnCNN); Stage I's
    loss over every output reaches the heads."""
    from l2o.stopping.objectives import stage1_loss

    task = load_task("denoising", data, "cpu")
    net = task.build_model(task.model_args(SECTION["model"]))
    batch = task.sample_batch(4, torch.Generator().manual_seed(1))
    T = net.num_steps
    task.step_losses(net(batch["noisy"], [T]), batch).mean().backward()
    assert all(p.grad is None for p in net.head_parameters())
    assert all(p.grad is not None for p in net.trunk_parameters())
    net.zero_grad(set_to_none=True)
    losses = task.step_losses(net(batch["noisy"]), batch)
    stage1_loss("full", losses, beta=1e4).backward()  # a soft oracle: every head learns
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.head_parameters())


def test_a_sharp_oracle_gives_a_head_far_behind_no_gradient():
    """Why the released recipe cannot train heads from a trained DnCNN: with beta = 0.1 on per-patch
    sums, an output 20 behind the best has weight exp(-200), which is 0 in float32."""
    from l2o.stopping.objectives import stage1_loss

    losses = torch.tensor([[25.0, 5.0]], requires_grad=True)  # an untrained head vs a trained last output
    stage1_loss("full", losses, beta=0.1).backward()
    assert losses.grad.tolist() == [[0.0, 1.0]]


def test_a_checkpoint_of_the_other_task_is_refused(data, tmp_path, tiny_problem_path):
    sr = tmp_path / "sr.pt"
    baseline.run(task="sparse_recovery", data=tiny_problem_path, out=sr, model={"T": 3},
                 baseline=dict(OPT, iterations=2), progress=False)
    with pytest.raises(ValueError, match="trained for task 'sparse_recovery'.*runs task 'denoising'"):
        stage2.run(task="denoising", data=data, model_ckpt=sr, out=tmp_path / "x.pt", policy={"channels": 8},
                   stage2=OPT, progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_a_head_beyond_the_depth_is_named(data):
    task = load_task("denoising", data, "cpu")
    net = task.build_model(task.model_args(SECTION["model"]))
    T = net.num_steps
    with pytest.raises(ValueError, match=f"1..{T}"):
        net(torch.zeros(1, 1, 16, 16), [T + 1])


@pytest.mark.parametrize("kind", ["fast", "paper"])
def test_early_exit_equals_the_all_heads_computation_at_the_stop(data, kind):
    """On whole test images, every candidate head, both policies, with a mix of stops (asserted)."""
    task = load_task("denoising", data, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args(SECTION["model"])).eval()
    pol = task.build_policy(task.policy_args({"kind": kind, "hidden": [8], "channels": 8})).eval()
    candidates = list(range(1, net.num_steps + 1))
    batch = next(task.eval_batches("test"))
    assert len(check_early_exit_mix(task, net, pol, batch, candidates)) > 1


def test_showcase_is_an_unseen_noise_level(data, trained):
    task = load_task("denoising", data, "cpu")
    ckpt = load_checkpoint(trained["stage2"], "stopping", task)
    net, pol = build_model(task, ckpt, trained["stage2"]).eval(), build_policy(task, ckpt, trained["stage2"]).eval()
    show = task.showcase({"baseline": (net, None, None), "stop": (net, pol, ckpt["candidate_steps"])})
    assert float(show["sigma"]) == 75.0  # tiny.yaml tests 35, 55, 75: 65 is not there, the largest is shown
    assert show["clean"].shape == show["noisy"].shape == show["stop"].shape == show["baseline"].shape
    assert 1 <= int(show["stop_step"]) <= net.num_steps


def test_predict_denoises_user_images_with_early_exit(data, trained, tmp_path):
    import numpy as np

    from l2o.predict import predict_file

    images = np.random.default_rng(0).random((3, 20, 24)).astype(np.float32)
    np.save(tmp_path / "noisy.npy", images)
    summary = predict_file(task="denoising", model=trained["stage2"], data=data, inputs=tmp_path / "noisy.npy",
                           out=tmp_path / "pred.npz", device="cpu")
    assert summary["examples"] == 3
    with np.load(tmp_path / "pred.npz") as out:
        assert out["prediction"].shape == (3, 1, 20, 24) and out["stop_step"].shape == (3,)
    np.save(tmp_path / "bad.npy", images[..., None].repeat(3, axis=-1))
    with pytest.raises(ValueError, match="bad.npy has shape"):
        predict_file(task="denoising", model=trained["stage2"], data=data, inputs=tmp_path / "bad.npy",
                     out=tmp_path / "x.npz", device="cpu")


def test_noise_level_estimate_sees_sigma_not_the_image():
    from l2o.tasks.denoising.policy import noise_sigma_estimate

    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 96).view(1, 1, 1, 96).expand(1, 1, 96, 96)  # smooth content
    for sigma in (15, 35, 75):
        noisy = ramp + sigma / 255 * torch.randn(1, 1, 96, 96, generator=g)
        assert abs(float(noise_sigma_estimate(noisy)) * 255 - sigma) < 0.1 * sigma


def test_the_mass_floor_gives_every_head_gradient():
    """beta 0.1 on a patch's summed squared error makes q* winner-take-all: heads 2 dB behind get
    exactly no gradient; with a floor eps each head gets at least eps / T of it."""
    from l2o.stopping.objectives import stage1_loss
    from l2o.stopping.oracle import oracle_distribution

    losses = torch.tensor([[40.0, 25.0, 6.0, 6.3, 20.0]], requires_grad=True)  # per-patch SSE of 5 heads
    assert (oracle_distribution(losses.detach(), 0.1)[0, [0, 1, 4]] == 0).all()
    stage1_loss("full", losses, 0.1).backward()
    assert (losses.grad[0, [0, 1, 4]] == 0).all()
    losses.grad = None
    stage1_loss("full", losses, 0.1, mass_floor=0.1).backward()
    assert (losses.grad[0] >= 0.1 / 5 - 1e-7).all() and float(losses.grad.sum()) == pytest.approx(1.0)
