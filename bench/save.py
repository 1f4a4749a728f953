"""Writing a stand-alone benchmark's result: the JSON (every number) and the latest Markdown."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path


def save_result(out: Path, name: str, result: dict, markdown: str) -> Path:
    """``out/<name>-<UTC stamp>.json`` (from ``result["when"]``, ISO 8601) and ``out/<name>-latest.md``;
    returns the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = result["when"].replace(":", "").replace("+0000", "Z")
    path = out / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{name}-latest.md").write_text(markdown)
    return path


def record(out: Path, name: str, module: str, argv: list[str] | None, body: dict,
           render: Callable[[dict], str]) -> Path:
    """A benchmark's result with its header (``when``, ``machine``, the ``command`` as run), rendered,
    saved with :func:`save_result` and printed; returns the JSON's path.

    :param module: the benchmark's module (``bench.early_exit``), for the command line.
    :param argv: the arguments it was given (None: this process's own).
    """
    import torch

    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
              "command": " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)]), **body}
    markdown = render(result)
    path = save_result(out, name, result, markdown)
    print(markdown)
    print(f"written {path}")
    return path
