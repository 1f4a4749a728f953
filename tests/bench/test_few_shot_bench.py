"""bench/few_shot.py at tiny sizes: the controlled policy stops where told, the memory workers run in
fresh processes, the files are written."""

from __future__ import annotations

import json

from bench.few_shot import main


def test_quick_run_writes_results(tmp_path):
    assert main(["--channels", "4", "--size", "16", "--ways", "3", "--shots", "2", "--steps", "3",
                 "--tasks-per-batch", "3", "--batches", "1", "--meta-batch", "2", "--stops", "1", "2",
                 "--repeats", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    result = json.loads(next(tmp_path.glob("few-shot-*.json")).read_text())
    assert [r["stop"] for r in result["early_exit"]["rows"]] == [1, 2]
    assert {m["kind"] for m in result["memory"]} == {"plain", "full", "sampled"}
    assert all(m["peak_mib"] > 0 for m in result["memory"])
    assert "| every task stops at |" in (tmp_path / "few-shot-latest.md").read_text()
