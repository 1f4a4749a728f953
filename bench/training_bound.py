"""Training cost against a bound, for denoising's and MAML's Stage I (sparse recovery's is
``python -m bench.run``): seconds per iteration beside the convolution FLOPs of the iteration
divided by the rate the same machine reaches on those very convolutions (measured in the same run).

* **denoising** (DnCNN-stop, config sizes): forward of the trunk and every head on a batch of
  patches, backward (weights and inputs, no input gradient for the first layer), Adam.
  FLOPs: each 3x3 convolution ``2 * 9 * C_in * C_out * pixels`` forward, twice that backward.
* **MAML** (Stage I, few-shot classification at the config's sizes): T second-order inner steps
  per task on its support set (forward and gradient: 3 forward's worth of convolutions per
  support image and step), the query set read at each step (1), and the meta-gradient through all
  of it (twice the forward work: 6 per support image and step, 2 per query image). So per task
  ``T (9 S + 3 Q) F`` with F the forward FLOPs of one image and S, Q the support and query sizes
  (S averaged over the shot range).

Yardstick (the "rate"): float32 FLOP/s of the model's own convolutions run forward alone, batched
as large as the iteration batches them, no autograd, best of the repeats. The ratio measured /
bound is how much the iteration costs beyond doing exactly those convolutions at that rate:
autograd and its bookkeeping, batch norm, pooling, element-wise work, Python.

    python -m bench.training_bound                  # config.yaml's sizes, this machine's threads
    python -m bench.training_bound --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.save import record
from bench.timing import time_repeats

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def conv_flops(c_in: int, c_out: int, pixels: int) -> int:
    """FLOPs (2 x multiply-adds) of a 3x3 convolution producing ``pixels`` outputs per channel.

    >>> conv_flops(1, 1, 1)
    18
    """
    return 2 * 9 * c_in * c_out * pixels


def dncnn_iteration_flops(layers: int, channels: int, head: str, patch: int, batch: int) -> dict:
    """Forward and backward convolution FLOPs of one DnCNN-stop training iteration (every head read)."""
    px = patch * patch
    C = channels
    first, middle, final = conv_flops(1, C, px), conv_flops(C, C, px), conv_flops(C, 1, px)
    head_f = conv_flops(C, 1, px) if head == "conv1" else conv_flops(C, C, px) + conv_flops(C, 1, px)
    forward = first + (layers - 2) * middle + final + (layers - 2) * head_f
    backward = 2 * forward - first  # weights and inputs; the image needs no gradient
    return {"forward": batch * forward, "backward": batch * backward, "total": batch * (forward + backward)}


def conv4_image_flops(channels: int, image: int, in_channels: int = 1) -> int:
    """Forward FLOPs of MAML's conv4 body on one image (each block: conv at its size, then a 2x2 pool).

    >>> conv4_image_flops(1, 16)  # 18 x (256 + 64 + 16 + 4) pixels
    6120
    """
    total, side, c_in = 0, image, in_channels
    for _ in range(4):
        total += conv_flops(c_in, channels, side * side)
        side //= 2
        c_in = channels
    return total


def maml_iteration_flops(channels: int, image: int, ways: int, shots: list[int], query_shots: int,
                         T: int, batch: int) -> dict:
    """Convolution FLOPs of one second-order MAML Stage I meta-iteration (see the module docstring)."""
    F = conv4_image_flops(channels, image)
    S = ways * (shots[0] + shots[1]) / 2.0
    Q = ways * query_shots
    per_task = T * (9 * S + 3 * Q) * F
    return {"image_forward": F, "support_mean": S, "query": Q, "total": batch * per_task}


def best_rate(fn, flops: int, repeats: int) -> float:
    """FLOP/s of ``fn`` at its fastest of ``repeats`` timed calls (one untimed first), without grad."""
    with torch.no_grad():
        return flops / time_repeats(fn, 1, repeats, "cpu")["min"]


def measure_denoising(section: dict, workdir: Path, repeats: int) -> dict:
    from l2o.stopping.objectives import stage1_loss
    from l2o.tasks.registry import load_task, task_class
    from l2o.train.loop import make_adam

    data = workdir / "denoising.npz"
    task_class("denoising").prepare_data(dict(section["data"]), data)
    task = load_task("denoising", data, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args(section["model"])).train()
    s1 = section["stage1"]
    opt, gen = make_adam(list(net.parameters()), s1["lr"], 0.0), torch.Generator().manual_seed(0)
    B, P = int(s1["batch_size"]), int(section["data"]["patch_size"])

    def step():
        batch = task.sample_batch(B, gen)
        loss = stage1_loss(s1.get("loss", "full"), task.step_losses(net(task.model_inputs(batch)), batch),
                           float(s1["beta"]), mass_floor=float(s1.get("mass_floor", 0.0)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    timing = time_repeats(step, 2, repeats, "cpu")
    m = section["model"]
    flops = dncnn_iteration_flops(int(m["layers"]), int(m["channels"]), m.get("head", "conv2"), P, B)
    C = int(m["channels"])
    conv = torch.nn.Conv2d(C, C, 3, padding=1, bias=False)
    x = torch.randn(B, C, P, P)
    rate = best_rate(lambda: conv(x), conv_flops(C, C, P * P) * B, repeats)
    bound = flops["total"] / rate
    return {"what": f"DnCNN-stop Stage I, {m['layers']} layers, {C} channels, {m.get('head')} heads, batch {B} of "
                    f"{P}x{P} patches", "timing": timing, "flops": flops, "rate_flops_per_s": rate,
            "rate_of": f"conv3x3 {C}->{C} on ({B}, {C}, {P}, {P}), forward", "bound_s": bound,
            "ratio": timing["median"] / bound}


def measure_maml(section: dict, workdir: Path, repeats: int) -> dict:
    from l2o.stopping.objectives import stage1_loss
    from l2o.tasks.registry import load_task, task_class
    from l2o.train.loop import make_adam

    data = workdir / "fsc.npz"
    task_class("few_shot_classification").prepare_data(dict(section["data"]), data)
    task = load_task("few_shot_classification", data, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args(section["model"]))
    s1 = section["stage1"]
    opt, gen = make_adam(list(net.parameters()), s1["lr"], 0.0), torch.Generator().manual_seed(0)
    B = int(s1["batch_size"])

    def step():
        batch = task.sample_batch(B, gen)
        loss = stage1_loss("full", task.step_losses(net(task.model_inputs(batch)), batch), float(s1["beta"]),
                           mass_floor=float(s1.get("mass_floor", 0.0)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    timing = time_repeats(step, 2, repeats, "cpu")
    d, m = section["data"], section["model"]
    C, H = int(net.net.config.channels), int(net.net.config.image_size)
    flops = maml_iteration_flops(C, H, int(d["ways"]), list(d["shots"]), int(d["query_shots"]), int(m["num_steps"]), B)
    n_images = int(round(B * flops["support_mean"]))
    x = torch.rand(n_images, 1, H, H)
    body = net.net.body
    rate = best_rate(lambda: body(x), conv4_image_flops(C, H) * n_images, repeats)
    bound = flops["total"] / rate
    return {"what": f"MAML Stage I, conv4-{C} on {H}x{H}, {d['ways']}-way {d['shots']}-shot, T = {m['num_steps']}, "
                    f"meta-batch {B}, second order", "timing": timing, "flops": flops, "rate_flops_per_s": rate,
            "rate_of": f"the conv4 body forward on {n_images} images (the meta-batch's support sets)",
            "bound_s": bound, "ratio": timing["median"] / bound}


def render(result: dict) -> str:
    lines = [f"# Training cost against its bound — {result['when']}", "", f"{result['machine']}; "
             f"`{result['command']}`.", "", "| stage | s/iteration (median) | conv GFLOP/iteration | rate (GFLOP/s) "
             "| bound (s) | measured / bound |", "|---|---|---|---|---|---|"]
    for r in result["measurements"]:
        lines.append(f"| {r['what']} | {r['timing']['median']:.3f} | {r['flops']['total'] / 1e9:.2f} | "
                     f"{r['rate_flops_per_s'] / 1e9:.1f} | {r['bound_s']:.3f} | {r['ratio']:.2f}× |")
    lines += ["", "Rate: the model's own convolutions run forward alone at the iteration's batch (" +
              "; ".join(r["rate_of"] for r in result["measurements"]) + ")."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training_bound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        measurements = [measure_denoising(config["denoising"], Path(tmp), args.repeats),
                        measure_maml(config["few_shot_classification"], Path(tmp), args.repeats)]
    record(args.out, "training-bound", "bench.training_bound", argv, {"measurements": measurements}, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
