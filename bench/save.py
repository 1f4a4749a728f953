"""Writing a stand-alone benchmark's result: the JSON (every number) and the latest Markdown."""

from __future__ import annotations

import json
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
