"""bench/save.py: a benchmark's result gets its header, its JSON and its latest Markdown."""

from __future__ import annotations

import json

from bench.save import record


def test_record_writes_the_header_the_json_and_the_markdown(tmp_path, capsys):
    path = record(tmp_path, "toy", "bench.toy", ["--fast"], {"rows": [1, 2]}, lambda r: f"# {r['command']}\n")
    result = json.loads(path.read_text())
    assert result["rows"] == [1, 2] and result["command"] == "python -m bench.toy --fast"
    assert {"when", "machine"} <= set(result) and path.name.startswith("toy-")
    assert (tmp_path / "toy-latest.md").read_text() == "# python -m bench.toy --fast\n"
    assert f"written {path}" in capsys.readouterr().out
