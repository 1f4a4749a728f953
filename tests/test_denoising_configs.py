"""The two denoising configs on the standard sets, as overlays on config.yaml: a dry run plans the
jobs they promise (four models and one BM3D table; Table 6 with its matched control), against a
fake data tree with the right file counts (a dry run reads no image)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COUNTS = {"Train400": 400, "Set12": 12, "BSD68": 68}


def _fake_sets(work: Path, counts=COUNTS) -> None:
    for name, n in counts.items():
        folder = work / "data/denoising" / name
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i:03d}.png").write_bytes(b"")


def _dry_run(work: Path, overlay: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(work), "--configfile", str(REPO / "config.yaml"), str(REPO / overlay)],
                          capture_output=True, text=True, timeout=300)


def _job_counts(out: str) -> dict[str, int]:
    stats = out.split("Job stats:")[1].split("Reasons:")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_the_standard_benchmark_plans_four_models_and_one_bm3d(tmp_path):
    _fake_sets(tmp_path)
    run = _dry_run(tmp_path, "configs/denoising-standard.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = _job_counts(run.stdout)
    assert {k: jobs.get(k) for k in ("data", "baseline", "stage1", "stage2", "evaluate", "classical")} == {
        "data": 4, "baseline": 4, "stage1": 4, "stage2": 4, "evaluate": 4, "classical": 4}
    cfg = yaml.safe_load((REPO / "configs/denoising-standard.yaml").read_text())
    assert cfg["tasks"] == ["denoising", "denoising_sigma15", "denoising_sigma25", "denoising_sigma50"]
    assert [cfg[t]["classical"]["bm3d"] for t in cfg["tasks"]] == [True, False, False, False]
    for s in (15, 25, 50):
        data = cfg[f"denoising_sigma{s}"]["data"]
        assert data["train_sigmas"] == data["test_sigmas"] == [s] and data["test_dir"] == "data/denoising/BSD68"
    assert cfg["denoising"]["data"]["test_sigmas"] == [15, 25, 50]


def test_table6_plans_its_models_and_bm3d_on_bsd68(tmp_path):
    _fake_sets(tmp_path)
    run = _dry_run(tmp_path, "configs/table6-bsd68.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = _job_counts(run.stdout)
    assert {k: jobs.get(k) for k in ("data", "classical", "baseline", "stage1", "stage2", "evaluate")} == {
        "data": 1, "classical": 1, "baseline": 1, "stage1": 1, "stage2": 1, "evaluate": 1}
    section = yaml.safe_load((REPO / "configs/table6-bsd68.yaml").read_text())["denoising"]
    data = section["data"]
    assert data["test_sigmas"] == [35, 45, 55, 65, 75] and max(data["train_sigmas"]) == 55
    # the plain DnCNN is the matched control: Stage I starts from scratch with its budget
    assert section["stage1"]["init"] == "scratch" or section["matched"]["enabled"]
    assert {k: section["stage1"][k] for k in ("iterations", "batch_size", "lr")} == {
        k: section["baseline"][k] for k in ("iterations", "batch_size", "lr")}


@pytest.mark.parametrize("overlay", ["configs/denoising-standard.yaml", "configs/table6-bsd68.yaml"])
def test_a_partial_download_stops_the_run_before_any_job(tmp_path, overlay):
    _fake_sets(tmp_path, {**COUNTS, "BSD68": 60})
    run = _dry_run(tmp_path, overlay)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "data.test_dir: image folder data/denoising/BSD68 holds 60 images" in out, out
    assert "l2o fetch-data" in out and "Job stats" not in out
