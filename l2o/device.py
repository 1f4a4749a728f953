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
    """The job's CPU threads (None: leave as is): ``torch.set_num_threads`` if torch is imported,
    else ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, which torch reads when it is (a job that never
    needs torch does not pay for importing it; torch then caps the count at the CPU's cores)."""
    import sys

    if not threads:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(threads))
