"""``l2o fetch-data`` against a loopback HTTP server the test starts (never the internet): files checked
before they are written, a tampered file refused by name, altered local files found and replaced, the
layout the configs read, and the shipped checksum list of the standard sets."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from l2o.checksums import SUMS_FILE, check_folder, read_sums
from l2o.cli import main
from l2o.fetch import MANIFEST, FetchError, build_manifest, check_sets, fetch_sets, load_manifest

SETS = {"Train": ("remote/train", "denoising/Train"), "Test": ("remote/sub/test", "denoising/Test")}


def _png(path: Path, seed: int, size=(20, 24)) -> None:
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)
    imsave(path, image, check_contrast=False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def served(tmp_path):
    """A fake remote tree (2 sets, 5 PNGs), its checksum list, and a loopback server over it."""
    root = tmp_path / "remote_root"
    for i in range(3):
        _png(root / "remote/train" / f"t{i}.png", i)
    for i in range(2):
        _png(root / "remote/sub/test" / f"{i:02d}.png", 10 + i)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = tmp_path / "sets.json"
    manifest.write_text(json.dumps(build_manifest(root, SETS, base_url="http://127.0.0.1:9/unused")))
    yield root, url, manifest
    server.shutdown()
    server.server_close()


def test_fetch_downloads_checks_and_lays_out_the_sets(served, tmp_path):
    root, url, manifest = served
    dest = tmp_path / "data"
    summary = fetch_sets(dest, base_url=url, manifest=manifest, say=lambda line: None)
    assert summary == {"Train": {"kept": 0, "downloaded": 3}, "Test": {"kept": 0, "downloaded": 2}}
    for remote, local in SETS.values():
        names = sorted(p.name for p in (root / remote).iterdir())
        assert sorted(p.name for p in (dest / local).glob("*.png")) == names
        for name in names:
            assert (dest / local / name).read_bytes() == (root / remote / name).read_bytes()
        assert sorted(read_sums(dest / local)) == names
        assert not list((dest / local).glob(".*.tmp"))  # nothing half-written
    # a second run downloads nothing
    again = fetch_sets(dest, base_url=url, manifest=manifest, say=lambda line: None)
    assert again["Train"] == {"kept": 3, "downloaded": 0}
    assert check_sets(dest, manifest=manifest) == []


def test_a_tampered_download_is_refused_naming_the_file(served, tmp_path):
    root, url, manifest = served
    (root / "remote/sub/test/01.png").write_bytes(b"\x89PNG not the image the list names")
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"remote/sub/test/01\.png: refused, .*01\.png not written") as err:
        fetch_sets(dest, base_url=url, manifest=manifest, say=lambda line: None)
    assert "l2o fetch-data" in str(err.value)
    assert not (dest / "denoising/Test/01.png").exists()
    assert (dest / "denoising/Test/00.png").is_file()  # the intact files are kept
    assert not list((dest / "denoising/Test").glob(".*"))
    # the folder's checksum list is there, so the data stage names the missing file and the fix
    with pytest.raises(ValueError, match=r"01\.png is missing(.|\n)*l2o fetch-data"):
        check_folder(dest / "denoising/Test", "data.test_dir", (".png",))


def test_an_altered_local_file_is_found_and_downloaded_again(served, tmp_path):
    _, url, manifest = served
    dest = tmp_path / "data"
    fetch_sets(dest, base_url=url, manifest=manifest, say=lambda line: None)
    altered = dest / "denoising/Train/t1.png"
    altered.write_bytes(altered.read_bytes()[:-3] + b"abc")
    _png(dest / "denoising/Train/stray.png", 99)
    problems = check_sets(dest, manifest=manifest)
    assert any("t1.png is altered" in p for p in problems) and any("stray.png is not in" in p for p in problems)
    with pytest.raises(ValueError, match=r"data\.train_dir: (.|\n)*t1\.png is altered"):
        check_folder(dest / "denoising/Train", "data.train_dir", (".png",))
    said = []
    summary = fetch_sets(dest, base_url=url, manifest=manifest, say=said.append)
    assert summary["Train"] == {"kept": 2, "downloaded": 1}
    assert any("t1.png: altered" in line for line in said)
    assert check_folder(dest / "denoising/Test", "data.test_dir", (".png",)) == 2


def test_the_command_line_uses_the_env_base_url_and_checks_offline(served, tmp_path, monkeypatch, capsys):
    _, url, manifest = served
    dest = tmp_path / "data"
    monkeypatch.setenv("L2O_DATA_BASE_URL", url)
    assert main(["fetch-data", "--dest", str(dest), "--manifest", str(manifest), "--sets", "Test"]) == 0
    assert "Test: 2 downloaded" in capsys.readouterr().out
    assert not (dest / "denoising/Train").exists()
    assert main(["fetch-data", "--check", "--dest", str(dest), "--manifest", str(manifest), "--sets", "Test"]) == 0
    (dest / "denoising/Test/00.png").unlink()
    assert main(["fetch-data", "--check", "--dest", str(dest), "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "00.png is missing" in err and "does not exist (set Train)" in err and "run `l2o fetch-data`" in err
    assert main(["fetch-data", "--dest", str(dest), "--manifest", str(manifest), "--sets", "Nope"]) == 2


def test_an_unreachable_server_names_the_url_and_the_override(served, tmp_path):
    _, _, manifest = served
    with pytest.raises(FetchError, match=r"http://127\.0\.0\.1:9/.*cannot download.*--base-url"):
        fetch_sets(tmp_path / "d", manifest=manifest, sets=["Test"], say=lambda line: None, timeout=2)


def test_the_shipped_list_pins_the_standard_sets():
    listing = load_manifest(MANIFEST)
    counts = {name: len(entry["files"]) for name, entry in listing["sets"].items()}
    assert counts == {"Train400": 400, "Set12": 12, "BSD68": 68}
    commit = listing["commit"]
    assert len(commit) == 40 and commit in listing["base_url"]
    assert {e["local_dir"] for e in listing["sets"].values()} == {f"denoising/{n}" for n in counts}
    assert sum(size for e in listing["sets"].values() for _, size in e["files"].values()) > 10_000_000


def test_a_malformed_list_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base_url": "x", "sets": {"S": {"remote_dir": "r", "local_dir": "l",
                                                               "files": {"a.png": ["short", 1]}}}}))
    with pytest.raises(ValueError, match=r"bad\.json: set 'S', file 'a\.png'"):
        load_manifest(bad)


def test_sums_file_is_sha256sum_compatible(served, tmp_path):
    """The SHA256SUMS a fetch writes is what coreutils' sha256sum writes."""
    import shutil
    import subprocess

    _, url, manifest = served
    dest = tmp_path / "data"
    fetch_sets(dest, base_url=url, manifest=manifest, sets=["Test"], say=lambda line: None)
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum here")
    out = subprocess.run(["sha256sum", "-c", SUMS_FILE], cwd=dest / "denoising/Test", capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
