"""The matmul rate: float32 FLOP/s of a square matmul (the yardstick of the FLOP bounds) and
of LISTA's own GEMM shapes."""

from __future__ import annotations

from bench.config import Options, Sizes
from bench.timing import time_repeats


def measure_matmul_rate(sizes: Sizes, opts: Options) -> dict:
    """Best float32 rate of a square ``N x N`` matmul (FLOP/s), ``N = sizes.matmul_n``: the
    yardstick of the FLOP bounds. For reference also the rate of LISTA's own GEMMs at the
    Stage I batch (``x W2^T`` and ``y W1^T``), which are smaller and thinner."""
    import torch

    N, B, m, n = sizes.matmul_n, sizes.batch_stage1, sizes.m, sizes.n
    g = torch.Generator().manual_seed(opts.seed)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(opts.device)  # noqa: E731
    a, b = rand(N, N), rand(N, N)
    timing = time_repeats(lambda: a @ b, 2, sizes.matmul_repeats, opts.device)
    flops = 2 * N**3
    shapes = {}
    for name, (x, w) in {f"x W2^T ({B}x{n} @ {n}x{n})": (rand(B, n), rand(n, n)),
                         f"y W1^T ({B}x{m} @ {m}x{n})": (rand(B, m), rand(n, m))}.items():
        t = time_repeats(lambda: x @ w.T, 2, sizes.matmul_repeats, opts.device)
        shapes[name] = {"flops_per_s": 2 * x.shape[0] * x.shape[1] * w.shape[0] / t["min"], "timing": t}
    return {"n": N, "flops": flops, "timing": timing, "flops_per_s": flops / timing["min"],
            "gflops_per_s_median": flops / timing["median"] / 1e9, "lista_shapes": shapes}
