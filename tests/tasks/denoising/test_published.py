"""The published BSD68 rows (Zhang et al. 2017) beside ours: one task's table, the standard table
across the four tasks of configs/denoising-standard.yaml, and the command that prints it."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from l2o.report.render import render_markdown
from l2o.tasks.denoising.published import PUBLISHED, SOURCE, main, section, standard_table, task_table

BSD68 = {"source": "folders", "test_dir": "data/denoising/BSD68", "train_sigmas": [55], "train_sigma_mode": "uniform",
         "test_sigmas": [15, 25, 50]}


def _rows(task, values: dict) -> list[dict]:
    return [{"task": task, "method": m, "condition": f"sigma{s}", "metric": "psnr", "value": v}
            for (m, s), v in values.items()]


def _summary() -> pd.DataFrame:
    rows = _rows("denoising", {("bm3d", 15): 31.10, ("bm3d", 25): 28.60, ("bm3d", 50): 25.65,
                               ("dncnn", 15): 30.9, ("dncnn", 25): 28.5, ("dncnn", 50): 25.5,
                               ("dncnn_stop", 25): 28.4})
    for s, v in ((15, 31.2), (25, 28.7), (50, 25.7)):
        rows += _rows(f"denoising_sigma{s}", {("dncnn", s): v, ("dncnn_stop", s): v - 0.1})
    rows.append({"task": "denoising", "method": "dncnn", "condition": "sigma25", "metric": "ssim", "value": 0.8})
    return pd.DataFrame(rows)


def test_task_table_puts_ours_beside_the_published_rows():
    s = _summary()
    table = task_table(s[s.task == "denoising"], BSD68, [15, 25, 50])
    assert list(table["σ"]) == [15, 25, 50]
    row = table.iloc[1]
    assert row["ours: BM3D"] == "28.60" and row["published BM3D"] == "28.57" and row["BM3D − published"] == "+0.03"
    assert row["DnCNN − published DnCNN-B"] == "-0.66"  # blind training: compared with DnCNN-B (29.16)
    assert table.iloc[0]["ours: DnCNN-stop"] == "–"
    nonblind = {**BSD68, "train_sigmas": [25], "train_sigma_mode": "set", "test_sigmas": [25]}
    t25 = task_table(s[s.task == "denoising_sigma25"], nonblind, [25])
    assert list(t25.columns)[-1] == "DnCNN − published DnCNN-S" and t25.iloc[0, -1] == "-0.53"


def test_no_published_rows_off_bsd68_or_off_the_published_sigmas():
    s = _summary()
    assert task_table(s, {"source": "skimage", "test_dir": None}, [15, 25]) is None
    assert task_table(s, {**BSD68, "test_dir": "data/denoising/Set12"}, [25]) is None
    assert task_table(s, BSD68, [35, 45]) is None


def test_the_report_section_renders(tmp_path):
    res = SimpleNamespace(summary=_summary()[lambda d: d.task == "denoising"],
                          data_meta={"config": BSD68, "images": {"test": [{"name": f"t{i}"} for i in range(68)]}})
    parts = section(res)
    assert len(parts) == 1 and SOURCE in parts[0][0]
    md = render_markdown("t", [("Blind denoising", parts)], tmp_path / "r.md")
    assert "| 25 |" in md and "28.57" in md and "29.16" in md
    res.data_meta["images"]["test"] = res.data_meta["images"]["test"][:12]  # 12 images: not BSD68
    assert section(res) == []


def test_the_standard_table_across_tasks_and_its_command(tmp_path, capsys):
    table = standard_table(_summary())
    assert table.iloc[1]["BM3D ours / published"] == "28.60 / 28.57"
    assert table.iloc[1]["non-blind DnCNN ours / DnCNN-S"] == "28.70 / 29.23"
    assert table.iloc[2]["blind DnCNN ours / DnCNN-B"] == "25.50 / 26.23"
    assert table.iloc[0]["blind DnCNN-stop (ours)"] == "–"
    _summary().to_csv(tmp_path / "summary.csv", index=False)
    assert main([str(tmp_path / "summary.csv")]) == 0
    out = capsys.readouterr().out
    assert SOURCE in out and "28.60 / 28.57" in out
    assert main([str(tmp_path / "missing.csv")]) == 2


def test_the_published_numbers_are_the_papers():
    assert PUBLISHED["BM3D"] == {15: 31.07, 25: 28.57, 50: 25.62}
    assert PUBLISHED["DnCNN-S"] == {15: 31.73, 25: 29.23, 50: 26.23}
    assert PUBLISHED["DnCNN-B"] == {15: 31.61, 25: 29.16, 50: 26.23}
