"""What a benchmark run is given: the problem, batch and repeat sizes (:data:`PAPER`, or
:data:`QUICK` for ``--quick``) and the run-time :class:`Options`; :data:`REPO`, the checkout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """Problem, batch and repeat sizes of one run (the paper's, or tiny ones for ``--quick``)."""

    m: int = 250
    n: int = 500
    T: int = 20
    hidden: tuple[int, ...] = (256, 128, 16)
    batch_baseline: int = 512
    batch_stage1: int = 1024
    batch_stage2: int = 256
    test_per_snr: int = 1000  # 3 SNR levels -> 3000 test examples
    val_per_snr: int = 1000
    infer_batch: int = 1000  # l2o.predict's default chunk
    matmul_n: int = 2048
    matmul_repeats: int = 10
    warmup: int = 2
    repeats: int = 7
    fista_max_steps: int = 1000
    fista_val_examples: int = 300
    fista_L_grid: tuple[float, ...] = (2.5, 3.0, 4.0, 5.0)
    fista_rho_grid: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    snakemake_repeats: int = 5


PAPER = Sizes()
QUICK = Sizes(
    m=64, n=128, T=10, hidden=(64, 32, 8), batch_baseline=128, batch_stage1=256, batch_stage2=64,
    test_per_snr=100, val_per_snr=50, infer_batch=100, matmul_n=512, matmul_repeats=5,
    warmup=1, repeats=3, fista_max_steps=200, fista_val_examples=150, snakemake_repeats=2,
)


@dataclass
class Options:
    """Run-time choices (the command line, minus the sizes)."""

    device: str = "cpu"
    threads: int | None = None
    allow_loaded: bool = False
    max_other_cpu: float = 0.25  # cores other processes may use before the run refuses
    load_interval: float = 1.0
    wait_idle: float = 0.0  # seconds to wait (and retry) for an idle machine before refusing
    in_process: bool = False
    skip: tuple[str, ...] = ()
    checkpoint: Path | None = None
    data: Path | None = None
    fista_L: float | None = None
    fista_rho: float | None = None
    mean_stop: float | None = None  # default T/2
    stop_spread: float | None = None  # default T/8
    seed: int = 0
    quick: bool = False
