"""Bad input in image folders, caught before any work: a folder the config names that is missing or
holds too few images (named with its key, at parse time too), a file altered since `l2o fetch-data`
checked it, a corrupt file, an RGB image among grey ones; nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from skimage.io import imsave

from l2o.checksums import SUMS_FILE, format_sums, sha256_file
from l2o.tasks.denoising import images
from l2o.tasks.denoising.data import DenoisingDataConfig, load_dataset, write_dataset
from l2o.tasks.denoising.preflight import check_folders
from l2o.tasks.registry import check_section

REPO = Path(__file__).resolve().parents[3]


def _grey(seed: int, shape=(40, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _folders(root: Path, counts=(3, 2, 2), sums: bool = False) -> dict[str, str]:
    """Grey PNG folders ``root/{train,val,test}``; with ``sums``, a SHA256SUMS in each, as a fetch leaves."""
    dirs = {}
    for k, (split, n) in enumerate(zip(("train", "val", "test"), counts)):
        d = root / split
        d.mkdir(parents=True)
        for i in range(n):
            imsave(d / f"{split}{i}.png", _grey(10 * k + i), check_contrast=False)
        if sums:
            (d / SUMS_FILE).write_text(format_sums({p.name: sha256_file(p) for p in d.glob("*.png")}))
        dirs[f"{split}_dir"] = str(d)
    return dirs


def _config(dirs, **kw) -> DenoisingDataConfig:
    return DenoisingDataConfig(source="folders", patch_size=16, crop=32, train_scales=[1.0], **dirs, **kw)


def _no_reads(monkeypatch):
    """Make any image read fail loudly: the check must come first."""
    def refuse(path, convert):
        raise AssertionError(f"read {path} before the folders were checked")

    monkeypatch.setattr(images, "read_image", refuse)


def test_grey_folders_with_their_checksums_are_read(tmp_path):
    dirs = _folders(tmp_path / "img", sums=True)
    write_dataset(_config(dirs, expect_images={"train": 3, "val": 2, "test": 2}), tmp_path / "d.npz")
    data = load_dataset(tmp_path / "d.npz")
    assert data.names["test"] == ["test0.png", "test1.png"]
    np.testing.assert_allclose(data.test[0], _grey(20)[4:36, 4:36] / 255, atol=1e-7)


def test_expect_images_is_not_part_of_the_data(tmp_path):
    """A check, not data: the same images give the same hash with or without it."""
    dirs = _folders(tmp_path / "img")
    a = write_dataset(_config(dirs), tmp_path / "a.npz")["hash"]
    b = write_dataset(_config(dirs, expect_images={"test": 2}), tmp_path / "b.npz")["hash"]
    assert a == b


def test_too_few_images_names_the_key_and_folder_before_reading(tmp_path, monkeypatch):
    dirs = _folders(tmp_path / "img", counts=(3, 2, 1))
    _no_reads(monkeypatch)
    with pytest.raises(ValueError, match=r"data\.test_dir: image folder .*test holds only 1 images, "
                                         r"data\.expect_images\.test says 68"):
        write_dataset(_config(dirs, expect_images={"test": 68}), tmp_path / "d.npz")
    assert not list(tmp_path.glob("d*"))


def test_an_altered_file_is_named_with_the_fix_before_reading(tmp_path, monkeypatch):
    dirs = _folders(tmp_path / "img", sums=True)
    victim = Path(dirs["val_dir"]) / "val1.png"
    imsave(victim, _grey(99), check_contrast=False)  # a valid image, but not the one the list names
    _no_reads(monkeypatch)
    with pytest.raises(ValueError, match=r"data\.val_dir: (.|\n)*val1\.png is altered(.|\n)*`l2o fetch-data`"):
        write_dataset(_config(dirs), tmp_path / "d.npz")
    victim.unlink()
    with pytest.raises(ValueError, match=r"val1\.png is missing"):
        write_dataset(_config(dirs), tmp_path / "d.npz")
    assert not list(tmp_path.glob("d*"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio's legacy plugins, tried on the bad file
def test_a_corrupt_file_is_named_and_nothing_is_written(tmp_path):
    dirs = _folders(tmp_path / "img")
    (Path(dirs["test_dir"]) / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"cannot read image file .*zz_broken\.png"):
        write_dataset(_config(dirs), tmp_path / "d.npz")
    assert not list(tmp_path.glob("d*"))


def test_rgb_among_grey_is_refused_or_converted_as_configured(tmp_path):
    dirs = _folders(tmp_path / "img")
    rgb = np.dstack([_grey(1), _grey(2), _grey(3)])
    imsave(Path(dirs["train_dir"]) / "train9_rgb.png", rgb, check_contrast=False)
    with pytest.raises(ValueError, match=r"train9_rgb\.png is a colour image; set data\.color: convert"):
        write_dataset(_config(dirs), tmp_path / "d.npz")
    assert not list(tmp_path.glob("d*"))
    write_dataset(_config(dirs, color="convert"), tmp_path / "d.npz")
    assert load_dataset(tmp_path / "d.npz").names["train"][-1] == "train9_rgb.png"


@pytest.mark.parametrize("value, match", [
    ({"test": 0}, r"data\.expect_images\.test must be an integer >= 1"),
    ({"holdout": 3}, r"data\.expect_images must map"),
    ([68], r"data\.expect_images must map"),
])
def test_bad_expect_images_names_the_key(tmp_path, value, match):
    dirs = _folders(tmp_path / "img")
    with pytest.raises(ValueError, match=match):
        _config(dirs, expect_images=value)
    with pytest.raises(ValueError, match=r"expect_images is set but data\.source is not 'folders'"):
        DenoisingDataConfig(expect_images={"test": 2})


def test_preflight_names_key_folder_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative folders are read from the working directory
    dirs = _folders(tmp_path / "img")
    section = {"data": {"source": "folders", **dirs, "test_dir": "data/denoising/BSD68"}}
    with pytest.raises(ValueError, match=r"denoising\.data\.test_dir: image folder data/denoising/BSD68 does not "
                                         r"exist .*run `l2o fetch-data --dest data`"):
        check_section("denoising", section)
    check_folders("denoising", {"source": "folders", **dirs})  # all there: silent
    with pytest.raises(ValueError, match=r"denoising\.data\.val_dir: .* holds 2 images, "
                                         r"denoising\.data\.expect_images\.val says 12"):
        check_folders("denoising", {"source": "folders", **dirs, "expect_images": {"val": 12}})
    check_section("denoising", {"data": {"source": "skimage"}})  # nothing to check
    check_section("sparse_recovery", {})  # a task without checks


def test_the_workflow_stops_at_parse_time_naming_the_key(tmp_path):
    """`snakemake -n` on a config whose test folder is missing fails before any job, naming key and folder."""
    dirs = _folders(tmp_path / "img")
    cfg = {"tasks": ["denoising"], "tracking": {"enabled": False},
           "denoising": {"data": {"source": "folders", **dirs, "test_dir": str(tmp_path / "gone")}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                          "--directory", str(tmp_path / "work"), "--configfile", str(tmp_path / "c.yaml")],
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "denoising.data.test_dir: image folder" in out and str(tmp_path / "gone") in out, out
    assert "Job stats" not in out and not (tmp_path / "work/results").exists()
