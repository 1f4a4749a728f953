"""CPU cost of the DnCNN-stop networks: ``python -m bench.dncnn_cost [--quick]``.

Seconds per training iteration (forward + backward + Adam step; median of ``--repeats``
undisturbed iterations after ``--warmup``, ``torch.set_num_threads(--threads)``) of

* **plain**: the DnCNN baseline, loss on the last output only (``forward(steps=[T])``),
  Adam over the trunk;
* **stage1**: loss on all T outputs (soft-min of the per-patch SSE, beta 0.1), Adam over
  trunk + heads;
* **stage2**: the model frozen (eval, ``torch.no_grad()``) computing all T outputs, then the
  policy CNN (:class:`~l2o.models.conv_policy.ConvStopPolicy`, default config) forward +
  backward + Adam on the T x B step images (forward KL to the oracle, beta 0.1);

and seconds to run all heads (and the last output only) on a batch of five 256 x 256
images, in eval mode under ``no_grad``. Prints one Markdown table on stdout, a row as each
case finishes, and nothing else (progress goes to stderr); writes no file. ``--only``
re-times chosen rows (e.g. those marked ``*``).

The machine may be shared: each timed call is kept only if other processes used at most
``--max-other-cpu`` cores meanwhile (:class:`bench.load.CpuLoad`); disturbed calls are
repeated, after a pause, for up to ``--patience`` seconds per measurement, after which the
disturbed calls are used too and the cell is marked ``*``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

KINDS = ("plain", "stage1", "stage2")
#: Stage I again with the model and input in ``torch.channels_last`` (an A/B, not a default)
CHANNELS_LAST = "stage1_cl"


@dataclass(frozen=True)
class Case:
    """One model size and batch shape, and which iteration kinds to time."""

    layers: int
    channels: int
    head: str
    patch: int
    batch: int
    kinds: tuple[str, ...] = KINDS
    infer: bool = False  # also time inference on 5 x 256^2 (once per model size)

    @property
    def tag(self) -> str:
        """``layers/channels/head/patch/batch``, as ``--only`` takes it."""
        return f"{self.layers}/{self.channels}/{self.head}/{self.patch}/{self.batch}"


def cases(quick: bool) -> list[Case]:
    """The grid: the core (layers {8,10,12} x channels {32,64} x heads, patch 40, batch 32)
    plus channel 48, 17 layers, patch 50 / batch 64, and the paper size for Stage I."""
    if quick:
        return [
            Case(4, 8, "conv1", 16, 4, kinds=KINDS + (CHANNELS_LAST,), infer=True),
            Case(4, 8, "conv2", 16, 4),
        ]
    out = [
        Case(L, C, head, 40, 32, kinds=KINDS + (CHANNELS_LAST,), infer=True)
        for L in (8, 10, 12)
        for C in (32, 64)
        for head in ("conv1", "conv2")
    ]
    out += [Case(L, 48, "conv1", 40, 32, infer=True) for L in (8, 10, 12)]
    out += [Case(17, C, "conv1", 40, 32, infer=True) for C in (32, 48, 64)]
    out += [Case(17, 64, "conv2", 40, 32, kinds=("stage1",), infer=True)]
    for L, C, head in ((10, 32, "conv1"), (10, 64, "conv2")):
        out += [
            Case(L, C, head, 50, 32),
            Case(L, C, head, 40, 64),
            Case(L, C, head, 50, 64),
        ]
    out += [Case(20, 64, "conv2", 50, 16, kinds=("stage1", "plain"))]
    return out


@dataclass(frozen=True)
class Timing:
    """Wall seconds of the kept calls: ``median``, ``min``; ``loaded`` if disturbed calls count."""

    median: float
    min: float
    loaded: bool


@dataclass(frozen=True)
class Guard:
    """How to recognise and wait out other processes' load (see the module docstring)."""

    probe: object  # bench.load.CpuLoad
    max_other_cpu: float = 0.25
    patience: float = 60.0
    pause: float = 1.0
    min_window: float = 0.5  # /proc/stat counts 10 ms ticks: time short calls in groups


def time_seconds(fn: Callable[[], object], warmup: int, repeats: int, guard: Guard) -> Timing:
    """Median and min wall seconds of ``repeats`` undisturbed calls of ``fn`` after ``warmup``.

    Calls shorter than ``guard.min_window`` are timed in groups (one sample = a group's
    mean), so that the load probe sees a window it can resolve.
    """
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        fn()
    group = max(1, math.ceil(guard.min_window / max(time.perf_counter() - t0, 1e-6)))
    clean, disturbed = [], []
    deadline = time.monotonic() + guard.patience
    while len(clean) < repeats:
        mark = guard.probe.start()
        t0 = time.perf_counter()
        for _ in range(group):
            fn()
        seconds = (time.perf_counter() - t0) / group
        if guard.probe.stop(mark)["other_cores"] <= guard.max_other_cpu:
            clean.append(seconds)
            continue
        disturbed.append(seconds)
        if time.monotonic() > deadline and len(clean) + len(disturbed) >= repeats:
            break
        time.sleep(guard.pause)
    # out of patience: the fastest disturbed calls make up the number
    kept = clean + sorted(disturbed)[: max(repeats - len(clean), 0)]
    return Timing(statistics.median(kept), min(kept), loaded=len(clean) < repeats)


def forward_mflop_per_pixel(layers: int, channels: int, head: str, steps: str = "all") -> float:
    """Multiply-adds x 2 per pixel of one forward: trunk + final conv, plus the heads if ``all``."""
    C, k = channels, 9
    trunk = 2 * k * (C + (layers - 2) * C * C + C)
    if steps != "all":
        return trunk / 1e6
    per_head = 2 * k * (C * C + C) if head == "conv2" else 2 * k * C
    return (trunk + (layers - 2) * per_head) / 1e6


def make_iterations(case: Case, seed: int = 0) -> dict[str, Callable[[], object]]:
    """One closure per iteration kind, each doing forward + backward + Adam step."""
    import torch

    from l2o.models.conv_policy import ConvPolicyConfig, ConvStopPolicy
    from l2o.models.dncnn import DnCNN, DnCNNConfig
    from l2o.stopping.distribution import stop_log_distribution
    from l2o.stopping.imitation import forward_kl_loss
    from l2o.stopping.objectives import soft_min_loss
    from l2o.stopping.oracle import oracle_log_distribution

    torch.manual_seed(seed)
    B, P = case.batch, case.patch
    clean = torch.rand(B, 1, P, P)
    sigma = torch.rand(B, 1, 1, 1) * 55.0 / 255.0
    noisy = clean + sigma * torch.randn_like(clean)
    beta = 0.1
    cfg = DnCNNConfig(layers=case.layers, channels=case.channels, head=case.head)

    def per_patch_sse(xs):  # (K, B, 1, P, P) -> (B, K)
        return (xs - clean).square().flatten(2).sum(-1).T

    out: dict[str, Callable[[], object]] = {}
    if "plain" in case.kinds:
        plain = DnCNN(cfg).train()
        opt_plain = torch.optim.Adam(plain.trunk_parameters(), lr=1e-3)

        def plain_iteration():
            opt_plain.zero_grad(set_to_none=True)
            loss = per_patch_sse(plain(noisy, steps=[plain.num_steps])).mean()
            loss.backward()
            opt_plain.step()

        out["plain"] = plain_iteration
    if "stage1" in case.kinds:
        model = DnCNN(cfg).train()
        opt_model = torch.optim.Adam(model.parameters(), lr=1e-4)

        def stage1_iteration():
            opt_model.zero_grad(set_to_none=True)
            loss = soft_min_loss(per_patch_sse(model(noisy)), beta)
            loss.backward()
            opt_model.step()

        out["stage1"] = stage1_iteration
    if CHANNELS_LAST in case.kinds:
        cl = torch.channels_last
        model_cl = DnCNN(cfg).train().to(memory_format=cl)
        opt_cl = torch.optim.Adam(model_cl.parameters(), lr=1e-4)
        noisy_cl, clean_cl = noisy.contiguous(memory_format=cl), clean.contiguous(memory_format=cl)

        def stage1_cl_iteration():
            opt_cl.zero_grad(set_to_none=True)
            sse = (model_cl(noisy_cl) - clean_cl).square().flatten(2).sum(-1).T
            loss = soft_min_loss(sse, beta)
            loss.backward()
            opt_cl.step()

        out[CHANNELS_LAST] = stage1_cl_iteration
    if "stage2" in case.kinds:
        frozen = DnCNN(cfg).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        policy = ConvStopPolicy(ConvPolicyConfig()).train()
        opt_policy = torch.optim.Adam(policy.parameters(), lr=1e-4)
        T = frozen.num_steps
        t = torch.arange(1, T + 1, dtype=torch.float32) / T
        position = torch.stack([t, 1 - t], dim=-1).repeat_interleave(B, dim=0)  # (T*B, 2)

        def stage2_iteration():
            with torch.no_grad():
                xs = frozen(noisy)  # (T, B, 1, P, P)
                log_q_oracle = oracle_log_distribution(per_patch_sse(xs), beta)
                y = noisy.expand_as(xs)
                feats = torch.cat([y, y - xs, xs], dim=2).flatten(0, 1)  # (T*B, 3, P, P)
            opt_policy.zero_grad(set_to_none=True)
            logits = policy(feats, position).view(T, B).T  # (B, T)
            loss = forward_kl_loss(stop_log_distribution(logits), log_q_oracle)
            loss.backward()
            opt_policy.step()

        out["stage2"] = stage2_iteration
    return out


def make_inference(case: Case, seed: int = 0) -> dict[str, Callable[[], object]]:
    """All heads / the last output only, on 5 x 1 x 256 x 256 (one image at 5 noise levels)."""
    import torch

    from l2o.models.dncnn import DnCNN, DnCNNConfig

    torch.manual_seed(seed)
    model = DnCNN(DnCNNConfig(layers=case.layers, channels=case.channels, head=case.head)).eval()
    clean = torch.rand(1, 1, 256, 256).expand(5, -1, -1, -1)
    sigma = torch.tensor([15.0, 25.0, 35.0, 55.0, 75.0]).view(5, 1, 1, 1) / 255.0
    noisy = clean + sigma * torch.randn(5, 1, 256, 256)

    def run(steps):
        def f():
            with torch.no_grad():
                model(noisy, steps=steps)

        return f

    return {"all": run(None), "last": run([model.num_steps])}


def fmt(x: Timing | None) -> str:
    """``median (min)``, ``*`` when disturbed calls had to be used."""
    return "—" if x is None else f"{x.median:.3f} ({x.min:.3f}){'*' if x.loaded else ''}"


def cpu_load_probe():
    """:class:`bench.load.CpuLoad`, importable also when this file runs as a script."""
    try:
        from bench.load import CpuLoad
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from bench.load import CpuLoad
    return CpuLoad()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script works")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--infer-warmup", type=int, default=1)
    parser.add_argument("--infer-repeats", type=int, default=3)
    parser.add_argument("--max-other-cpu", type=float, default=0.25,
                        help="cores other processes may use during a kept call")
    parser.add_argument("--patience", type=float, default=60.0,
                        help="seconds per measurement to wait out other processes' load")
    parser.add_argument("--only", nargs="+", metavar="L/C/HEAD/PATCH/BATCH",
                        help="time only these cases of the grid (e.g. 12/64/conv1/40/32)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    guard = Guard(cpu_load_probe(), args.max_other_cpu, args.patience)
    grid = cases(args.quick)
    if args.only:
        unknown = set(args.only) - {c.tag for c in grid}
        if unknown:
            parser.error(f"not in the grid: {sorted(unknown)}; choose from {[c.tag for c in grid]}")
        grid = [c for c in grid if c.tag in args.only]

    load0, started = os.getloadavg()[0], time.perf_counter()
    print(
        f"DnCNN-stop CPU cost, seconds: torch {torch.__version__}, {args.threads} threads. "
        f"Training: one iteration (forward + backward + Adam), median (min) of {args.repeats} "
        f"after {args.warmup} warm-ups. Inference: all heads / the last output only on "
        f"5 x 1 x 256 x 256 (eval, no_grad), median (min) of {args.infer_repeats} after "
        f"{args.infer_warmup}. Calls kept when other processes used <= {args.max_other_cpu} "
        "cores; * = out of patience, disturbed calls used.\n",
        flush=True,
    )
    print(
        "| layers | ch | head | T | patch | batch | fwd MFLOP/px (all heads) | plain | Stage I "
        "| Stage II | Stage I, channels_last | infer all heads | infer last only |"
    )
    print("|" + "---|" * 13, flush=True)
    for case in grid:  # one row at a time, so that an interrupted run keeps its rows
        secs = {}
        for kind, fn in make_iterations(case).items():
            secs[kind] = time_seconds(fn, args.warmup, args.repeats, guard)
            print(f"{case.tag} {kind}: {fmt(secs[kind])} s", file=sys.stderr, flush=True)
        if case.infer:
            for kind, fn in make_inference(case).items():
                secs[kind] = time_seconds(fn, args.infer_warmup, args.infer_repeats, guard)
                print(f"{case.tag} infer {kind}: {fmt(secs[kind])} s", file=sys.stderr, flush=True)
        mflop = forward_mflop_per_pixel(case.layers, case.channels, case.head)
        columns = ("plain", "stage1", "stage2", CHANNELS_LAST, "all", "last")
        cells = [fmt(secs.get(k)) for k in columns]
        print(
            f"| {case.layers} | {case.channels} | {case.head} | {case.layers - 1} | {case.patch} "
            f"| {case.batch} | {mflop:.3g} | " + " | ".join(cells) + " |",
            flush=True,
        )
    print(
        f"\nLoad average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
        f"{(time.perf_counter() - started) / 60:.1f} min in all."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
