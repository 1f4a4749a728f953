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
    """``torch.set_num_threads`` from the job's thread count (None: leave as is)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
