"""bench/denoising.py at tiny sizes: the controlled policy stops where it is told, the FLOP model
orders costs as it should, and the files are written."""

from __future__ import annotations

import json

from bench.denoising import conv_flops, dncnn_flops, main


def test_flop_model():
    px = 16 * 16
    full = dncnn_flops(6, 8, "conv2", px)
    assert full == conv_flops(1, 8, px) + 4 * conv_flops(8, 8, px) + conv_flops(8, 1, px)
    early = [dncnn_flops(6, 8, "conv1", px, s) for s in range(1, 6)]
    assert early == sorted(early)  # stopping later costs more
    assert dncnn_flops(6, 8, "conv1", px, 5) > full  # at T a stop model also paid for the heads it read
    assert dncnn_flops(6, 8, "conv1", px, 2, policy_channels=4) > dncnn_flops(6, 8, "conv1", px, 2)


def test_quick_run_writes_results(tmp_path, capsys):
    assert main(["--layers", "5", "--channels", "4", "--policy-channels", "4", "--size", "16", "--images", "2",
                 "--sigmas", "35", "55", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    result = json.loads(next(tmp_path.glob("denoising-*.json")).read_text())
    assert result["images"] == 4 and {r["stop"] for r in result["rows"]} == {1, 2, 3, 4}
    assert all(r["early_exit_images_per_s"] > 0 for r in result["rows"])
    assert "| every image stops at |" in (tmp_path / "denoising-latest.md").read_text()
