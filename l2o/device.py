"""Device and thread choice, made at run time (never at import)."""

from __future__ import annotations

import os


def resolve_device(name: str | None = None) -> str:
    """``cuda`` when available, else ``cpu``; ``name`` or ``$L2O_DEVICE`` overrides."""
    import torch

    name = name or os.environ.get("L2O_DEVICE", "auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return name


def set_threads(threads: int | None) -> None:
    """The job's CPU threads (None: leave as is), for every thread pool in the process: torch's
    (``torch.set_num_threads`` if torch is imported), the BLAS and OpenMP pools already loaded
    (numpy's OpenBLAS spins its idle threads, which takes a core from the job beside it:
    threadpoolctl), and through ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``
    those loaded later (torch itself when a job imports it after this; BM3D's library)."""
    import sys

    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(int(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(threads))
