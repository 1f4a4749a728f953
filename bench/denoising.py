"""Early exit for real in denoising: images per second with early exit vs all layers, beside the ideal.

A DnCNN with a head after each layer and a stop policy (the task's CNN) is run
three ways on the same noisy images (one batch per image, holding it at
several noise levels, as the evaluation does):

* **all layers**: the plain network, last output only (what DnCNN costs);
* **every head**: every head computed (what a stop model costs without early exit);
* **early exit** (:func:`l2o.stopping.inference.predict_early_exit`): each image runs
  up to its stop and leaves the batch; the policy runs at each step it reaches.

The policy is controlled so that every image stops at step ``s`` (its logit is a
function of the step position only), for several ``s``; the *ideal* speed-up of
early exit over all layers is the ratio of convolution FLOPs (policy included,
and without it), so the table says how much of the ideal the implementation
realises. With ``--checkpoint``/``--data`` a trained stopping model and its data
file's test images are used instead (its own stops).

    python -m bench.denoising                  # the default config's sizes (8 layers, 32 channels)
    python -m bench.denoising --layers 20 --channels 64 --head conv2    # the paper's
"""

from __future__ import annotations

import argparse
import platform
from datetime import datetime, timezone
from pathlib import Path

from bench.save import save_result
from bench.timing import time_repeats

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def conv_flops(c_in: int, c_out: int, pixels: int) -> int:
    """Multiply-adds x 2 of a 3x3 convolution over ``pixels`` positions.

    >>> conv_flops(1, 1, 1)
    18
    """
    return 2 * 9 * c_in * c_out * pixels


def policy_flops(channels: int, blocks: int, pixels: int) -> int:
    """FLOPs of the stop policy CNN on one image: conv(3 -> C), then a conv after each 2x2 pooling."""
    total, size = conv_flops(3, channels, pixels), pixels
    for _ in range(blocks):
        size //= 4
        total += conv_flops(channels, channels, size)
    return total


def dncnn_flops(layers: int, channels: int, head: str, pixels: int, stop: int | None = None,
                policy_channels: int = 0, policy_blocks: int = 2) -> int:
    """Convolution FLOPs for one image: all layers, last output only (``stop=None``), or early exit
    at ``stop``: trunk modules up to it, every head on the way (the policy reads each step's
    estimate), the policy after each step before T (``policy_channels`` > 0), the final conv at T.

    >>> dncnn_flops(3, 1, "conv1", 1) == 3 * conv_flops(1, 1, 1)  # 3 convs of 1 -> 1 channel
    True
    """
    C, T = channels, layers - 1
    modules = [conv_flops(1, C, pixels)] + [conv_flops(C, C, pixels)] * (layers - 2)  # m_1 .. m_T
    final = conv_flops(C, 1, pixels)
    if stop is None:
        return sum(modules) + final
    head_flops = conv_flops(C, 1, pixels) + (conv_flops(C, C, pixels) if head == "conv2" else 0)
    read = min(stop, T - 1)  # heads read and policy evaluations
    total = sum(modules[:stop]) + head_flops * read + (final if stop == T else 0)
    if policy_channels:
        total += policy_flops(policy_channels, policy_blocks, pixels) * read
    return total


def position_policy(policy, stop: int, T: int) -> None:
    """Make ``policy`` stop every image at step ``stop``: its logit depends on t/T only."""
    with torch.no_grad():
        for p in policy.parameters():
            p.zero_()
        w = policy.out.weight  # (1, C + 2); the last two inputs are (t/T, 1 - t/T)
        w[0, -2] = 100.0
        policy.out.bias.fill_(-100.0 * (stop - 0.5) / T)


def measure(args) -> dict:
    from l2o.models.conv_policy import ConvPolicyConfig, ConvStopPolicy
    from l2o.models.dncnn import DnCNN, DnCNNConfig
    from l2o.stopping.inference import predict_early_exit
    from l2o.tasks.denoising.task import DenoisingTask

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = DnCNN(DnCNNConfig(layers=args.layers, channels=args.channels, head=args.head)).eval()
    policy = ConvStopPolicy(ConvPolicyConfig(channels=args.policy_channels)).eval()
    T = net.num_steps
    task = DenoisingTask.__new__(DenoisingTask)  # only its policy input is used (no data file)
    task.patch_size = 40
    S, H = len(args.sigmas), args.size
    batches = []
    for _ in range(args.images):
        clean = torch.rand(1, 1, H, H, generator=gen).expand(S, 1, H, H)
        noise = torch.randn(S, 1, H, H, generator=gen) * (torch.tensor(args.sigmas) / 255.0).view(S, 1, 1, 1)
        batches.append({"noisy": clean + noise, "clean": clean, "sigma": torch.tensor(args.sigmas)})
    n_images = args.images * S
    candidates = list(range(1, T + 1))

    def all_layers():
        with torch.no_grad():
            for b in batches:
                net(b["noisy"], [T])

    def every_head():
        with torch.no_grad():
            for b in batches:
                net(b["noisy"])

    t_all = time_repeats(all_layers, warmup=1, repeats=args.repeats, device="cpu")["median"]
    t_heads = time_repeats(every_head, warmup=1, repeats=args.repeats, device="cpu")["median"]
    rows = []
    for stop in sorted({max(1, round(f * T)) for f in args.stop_fractions} | {T}):
        position_policy(policy, stop, T)

        def early():
            return [predict_early_exit(task, net, policy, b, candidates)[1] for b in batches]

        stops = torch.cat(early())
        assert bool((stops == stop).all()), f"controlled policy stopped at {stops.unique().tolist()}, not {stop}"
        t_early = time_repeats(early, warmup=1, repeats=args.repeats, device="cpu")["median"]
        px = H * H
        full = dncnn_flops(args.layers, args.channels, args.head, px, None)
        ideal = full / dncnn_flops(args.layers, args.channels, args.head, px, stop)
        ideal_policy = full / dncnn_flops(args.layers, args.channels, args.head, px, stop, args.policy_channels)
        speedup = t_all / t_early
        rows.append({"stop": stop, "early_exit_images_per_s": n_images / t_early,
                     "speedup_vs_all_layers": speedup, "ideal_speedup": ideal,
                     "ideal_speedup_with_policy": ideal_policy, "share_of_ideal_with_policy": speedup / ideal_policy})
    return {
        "config": vars(args) | {"T": T},
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "images": n_images,
        "all_layers_images_per_s": n_images / t_all,
        "every_head_images_per_s": n_images / t_heads,
        "rows": rows,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def render(result: dict) -> str:
    c = result["config"]
    lines = [
        f"# Denoising early exit — {result['when']}",
        "",
        f"DnCNN {c['layers']} layers, {c['channels']} channels, {c['head']} heads (T = {c['T']}), policy CNN "
        f"{c['policy_channels']} channels; {result['images']} images of {c['size']}x{c['size']} "
        f"({c['images']} images x {len(c['sigmas'])} noise levels, one batch per image); {result['machine']}.",
        "",
        f"All layers (plain DnCNN, last output only): **{result['all_layers_images_per_s']:.1f} images/s**; "
        f"every head computed (the stop model without early exit): {result['every_head_images_per_s']:.1f} images/s.",
        "",
        "| every image stops at | early exit (images/s) | speed-up vs all layers | ideal (FLOPs, with policy) "
        "| ideal (FLOPs, without the policy) | share of ideal |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['stop']} | {r['early_exit_images_per_s']:.1f} | {r['speedup_vs_all_layers']:.2f}x "
                     f"| {r['ideal_speedup_with_policy']:.2f}x | {r['ideal_speedup']:.2f}x "
                     f"| {r['share_of_ideal_with_policy']:.2f} |")
    lines += ["", "Ideal = FLOPs of all layers / FLOPs of early exit at that step (trunk up to it, every head "
              "read on the way for the policy, the policy at each step); below 1 means a stop model pays for "
              "its heads and policy, not that early exit is broken."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.denoising", description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--head", default="conv1", choices=["conv1", "conv2"])
    p.add_argument("--policy-channels", type=int, default=16)
    p.add_argument("--size", type=int, default=256, help="image side (pixels)")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--sigmas", type=float, nargs="+", default=[35, 45, 55, 65, 75])
    p.add_argument("--stop-fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result = measure(args)
    md = render(result)
    print(md)
    save_result(args.out, "denoising", result, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
