"""Timing and memory primitives: repeated timings with warm-up and their spread, device
synchronisation, and the resident set size (now and peak) of this process."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

MIB = 1024**2


def sync(device: str) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def summarise(samples: list[float]) -> dict:
    """Median and spread (min, max, quartiles) of repeated timings, in seconds.

    >>> summarise([3.0, 1.0, 2.0])["median"]
    2.0
    """
    s = sorted(samples)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "q1": q[0], "q3": q[2],
            "repeats": len(s), "samples": samples}


def time_repeats(fn: Callable[[], object], warmup: int, repeats: int, device: str) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; :func:`summarise`."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - t0)
    return {**summarise(samples), "warmup": warmup}


def current_rss_mib() -> float:
    """Resident set size of this process now (Linux ``/proc/self/statm``), MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS of this process so far (``getrusage`` maxrss: KiB on Linux, bytes on macOS), MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024
