"""Denoising data: the builtin split, image folders, bad input, the file, noise, patches."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.io import imsave

from l2o.tasks.denoising.data import (
    BUILTIN_IMAGES,
    SPLITS,
    DenoisingDataConfig,
    builtin_folder,
    centre_crop,
    load_clean_images,
    load_dataset,
    write_dataset,
)
from l2o.tasks.denoising.noise import eval_set, noisy_image
from l2o.tasks.denoising.patches import PatchSampler, dihedral

SMALL_BUILTIN = dict(max_train_side=128, crop=64, train_scales=[1.0, 0.7])


def _gray(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _make_folders(root: Path, seed: int = 0) -> dict[str, str]:
    """3 train images 64x64 (.png, .TIF, .bmp), 2 val 40x48, 2 test 48x40; plus a stray text file."""
    rng = np.random.default_rng(seed)
    dirs = {split: root / split for split in SPLITS}
    for d in dirs.values():
        d.mkdir(parents=True)
    for name in ("a.png", "b.TIF", "c.bmp"):
        imsave(dirs["train"] / name, _gray(rng, (64, 64)), check_contrast=False)
    for i in range(2):
        imsave(dirs["val"] / f"v{i}.png", _gray(rng, (40, 48)), check_contrast=False)
        imsave(dirs["test"] / f"t{i}.png", _gray(rng, (48, 40)), check_contrast=False)
    (dirs["train"] / "README.txt").write_text("not an image")
    return {f"{split}_dir": str(d) for split, d in dirs.items()}


def _folder_config(dirs: dict[str, str], **kw) -> DenoisingDataConfig:
    return DenoisingDataConfig(**{"source": "folders", "patch_size": 16, "crop": 32, **dirs, **kw})


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    return _make_folders(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def builtin_file(tmp_path_factory):
    """The builtin set, small settings (training images <= 128 px), written once."""
    path = tmp_path_factory.mktemp("builtin") / "denoising.npz"
    meta = write_dataset(DenoisingDataConfig(**SMALL_BUILTIN), path)
    return path, meta


# -- the builtin split ----------------------------------------------------------------


def test_builtin_split_is_fixed_disjoint_and_shipped():
    names = [n for split in SPLITS for n in BUILTIN_IMAGES[split]]
    assert len(names) == len(set(names))
    assert {"motorcycle_left", "motorcycle_right"} <= set(BUILTIN_IMAGES["train"])
    for unsuitable in ("chessboard_GRAY", "phantom", "logo", "horse", "color"):
        assert unsuitable not in names
    folder = builtin_folder()
    for name in names:
        assert (folder / f"{name}.png").is_file() or (folder / f"{name}.jpg").is_file(), name


def test_builtin_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the builtin images must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    clean = load_clean_images(DenoisingDataConfig())
    for split in SPLITS:
        names, images = clean[split]
        assert names == BUILTIN_IMAGES[split]
        for name, image in zip(names, images):
            assert image.ndim == 2 and image.dtype == np.float32, name
            assert 0.0 <= image.min() and image.max() <= 1.0, name
            assert min(image.shape) >= 50, name
    sizes = dict(zip(clean["test"][0], (im.shape for im in clean["test"][1])))
    assert sizes["camera"] == (512, 512) and sizes["coffee"] == (400, 600)


def test_builtin_round_trip(builtin_file):
    path, meta = builtin_file
    data = load_dataset(path)
    assert data.data_hash == meta["hash"]
    assert data.config == DenoisingDataConfig(**SMALL_BUILTIN)
    assert meta["config"] == asdict(data.config)
    assert data.names["val"] == BUILTIN_IMAGES["val"] and data.names["test"] == BUILTIN_IMAGES["test"]
    # every training image at both scales, longer side <= 128 at scale 1, except page:
    # 191x384 -> 64x128 at scale 1, 45x90 at 0.7 (smaller than a 50x50 patch, left out)
    expected = [(n, s) for n in BUILTIN_IMAGES["train"] for s in (1.0, 0.7) if (n, s) != ("page", 0.7)]
    assert list(zip(data.names["train"], data.train_scale)) == expected
    assert [c["scale"] for c in meta["stored"]["train"]] == data.train_scale
    for image, scale in zip(data.train, data.train_scale):
        assert max(image.shape) <= (128 if scale == 1.0 else 90)
    for split in SPLITS:
        for image in getattr(data, split):
            assert image.ndim == 2 and image.dtype == np.float32
            assert 0.0 <= image.min() and image.max() <= 1.0
    assert all(im.shape == (64, 64) for im in data.test)
    assert meta["sigmas"] == {"train": [35.0, 45.0, 55.0], "val": [35.0, 45.0, 55.0],
                              "test": [35.0, 45.0, 55.0, 65.0, 75.0]}
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["hash"] == meta["hash"]
    assert [im["name"] for im in sidecar["images"]["test"]] == BUILTIN_IMAGES["test"]
    assert sidecar["images"]["test"][0]["size"] == [512, 512]  # as read; stored cropped
    assert sidecar["stored"]["test"][0]["size"] == [64, 64]
    with np.load(path, allow_pickle=False) as npz:
        assert "train/000" in npz.files and "config_json" in npz.files
    assert sorted(p.name for p in path.parent.iterdir()) == ["denoising.json", "denoising.npz"]


def test_builtin_hash_stable_across_writes(builtin_file, tmp_path):
    path, meta = builtin_file
    again = write_dataset(DenoisingDataConfig(**SMALL_BUILTIN), tmp_path / "again.npz")
    assert again["hash"] == meta["hash"]


# -- image folders --------------------------------------------------------------------


def test_folders_round_trip_and_hash(folders, tmp_path):
    config = _folder_config(folders)
    meta = write_dataset(config, tmp_path / "d.npz")
    data = load_dataset(tmp_path / "d.npz")
    assert data.names["train"] == ["a.png"] * 4 + ["b.TIF"] * 4 + ["c.bmp"] * 4  # README.txt ignored
    assert data.names["val"] == ["v0.png", "v1.png"]
    assert [im.shape for im in data.train[:4]] == [(64, 64), (58, 58), (51, 51), (45, 45)]
    assert [im.shape for im in data.val] == [(32, 32)] * 2
    # the stored scale-1 copy is the file's pixels / 255
    from skimage.io import imread

    np.testing.assert_allclose(data.train[0], imread(Path(folders["train_dir"]) / "a.png") / 255, atol=1e-7)
    assert write_dataset(config, tmp_path / "e.npz")["hash"] == meta["hash"]
    assert write_dataset(_folder_config(folders, seed=7), tmp_path / "f.npz")["hash"] != meta["hash"]
    assert write_dataset(_folder_config(folders, crop=24), tmp_path / "g.npz")["hash"] != meta["hash"]


def test_killed_write_leaves_no_file(folders, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(_folder_config(folders), tmp_path / "d.npz")
    assert list(tmp_path.iterdir()) == []


def test_scaled_copies_smaller_than_patch_are_left_out(folders, tmp_path):
    write_dataset(_folder_config(folders, patch_size=50), tmp_path / "d.npz")
    data = load_dataset(tmp_path / "d.npz")
    assert data.train_scale == [1.0, 0.9, 0.8] * 3  # 64 * 0.7 = 45 < 50


def _bad_folder(tmp_path, folders, split, files: dict[str, np.ndarray | bytes]) -> dict[str, str]:
    d = tmp_path / f"bad_{split}"
    d.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            imsave(d / name, content, check_contrast=False)
    return {**folders, f"{split}_dir": str(d)}


def test_missing_folder_names_key_and_path(folders, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"data\.test_dir.*nowhere"):
        write_dataset(_folder_config({**folders, "test_dir": str(missing)}), tmp_path / "d.npz")
    assert not (tmp_path / "d.npz").exists()


def test_empty_folder_names_key_and_path(folders, tmp_path):
    dirs = _bad_folder(tmp_path, folders, "val", {"notes.txt": b"hello"})
    with pytest.raises(ValueError, match=r"data\.val_dir.*bad_val.*no images"):
        write_dataset(_folder_config(dirs), tmp_path / "d.npz")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio's legacy plugins, tried on the bad file
def test_unreadable_image_names_file(folders, tmp_path):
    dirs = _bad_folder(tmp_path, folders, "train", {"broken.png": b"\x89PNG not really"})
    with pytest.raises(ValueError, match=r"broken\.png"):
        write_dataset(_folder_config(dirs), tmp_path / "d.npz")


def test_small_training_image_names_file_and_size(folders, tmp_path):
    dirs = _bad_folder(tmp_path, folders, "train", {"tiny.png": np.zeros((10, 64), np.uint8)})
    with pytest.raises(ValueError, match=r"tiny\.png is 10x64.*data\.patch_size = 16"):
        write_dataset(_folder_config(dirs), tmp_path / "d.npz")


def test_colour_image(folders, tmp_path):
    rgb = _gray(np.random.default_rng(1), (40, 40, 3))
    dirs = _bad_folder(tmp_path, folders, "test", {"colour.png": rgb})
    with pytest.raises(ValueError, match=r"colour\.png is a colour image.*data\.color"):
        write_dataset(_folder_config(dirs), tmp_path / "d.npz")
    write_dataset(_folder_config(dirs, color="convert"), tmp_path / "d.npz")
    data = load_dataset(tmp_path / "d.npz")
    expected = centre_crop(rgb2gray(rgb.astype(np.float32) / 255).astype(np.float32), 32)
    np.testing.assert_allclose(data.test[0], expected, atol=1e-6)


def test_gray_stored_as_rgb_or_opaque_rgba_is_gray(folders, tmp_path):
    gray = _gray(np.random.default_rng(2), (40, 40))
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    dirs = _bad_folder(tmp_path, folders, "val", {"g3.png": np.dstack([gray] * 3), "g4.png": rgba})
    write_dataset(_folder_config(dirs), tmp_path / "d.npz")  # color: error, yet accepted
    for image in load_dataset(tmp_path / "d.npz").val:
        np.testing.assert_allclose(image, centre_crop(gray / 255, 32), atol=1e-7)


def test_transparent_image_is_refused(folders, tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 128
    dirs = _bad_folder(tmp_path, folders, "val", {"glass.png": rgba})
    with pytest.raises(ValueError, match=r"glass\.png has transparent pixels"):
        write_dataset(_folder_config(dirs, color="convert"), tmp_path / "d.npz")


@pytest.mark.parametrize("kw, key", [
    (dict(train_sigmas=[]), r"data\.train_sigmas must list at least one"),
    (dict(val_sigmas=[]), r"data\.val_sigmas must list at least one"),
    (dict(test_sigmas=[35, -1]), r"data\.test_sigmas must hold numbers > 0"),
    (dict(train_sigmas=45), r"data\.train_sigmas must be a list"),
    (dict(train_scales=[1.0, 0.0]), r"data\.train_scales"),
    (dict(patch_size=4), r"data\.patch_size"),
    (dict(source="bsd"), r"data\.source"),
    (dict(train_sigma_mode="gauss"), r"data\.train_sigma_mode"),
    (dict(color="keep"), r"data\.color"),
    (dict(source="folders", train_dir="x", val_dir="y"), r"data\.test_dir is not set"),
    (dict(train_dir="x"), r"data\.train_dir is set but data\.source"),
    (dict(crop=0), r"data\.crop"),
    (dict(max_train_side=20), r"data\.max_train_side"),
    (dict(seed=-1), r"data\.seed"),
])
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        DenoisingDataConfig(**kw)


def test_config_normalises_numbers():
    config = DenoisingDataConfig(train_sigmas=[35, 45], test_sigmas=(65,))
    assert config.train_sigmas == [35.0, 45.0] and config.test_sigmas == [65.0]
    assert all(isinstance(s, float) for s in config.train_sigmas)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        load_dataset(tmp_path / "absent.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"corrupt\.npz"):
        load_dataset(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "other.npz", A=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz lacks arrays"):
        load_dataset(tmp_path / "other.npz")


# -- noise ----------------------------------------------------------------------------


def test_noise_is_seeded_per_image_and_sigma():
    clean = np.full((128, 128), 0.5, np.float32)
    a = noisy_image(clean, 45, 2020, "test", 3)
    assert a.dtype == np.float32 and a.shape == clean.shape
    np.testing.assert_array_equal(a, noisy_image(clean, 45, 2020, "test", 3))
    noise = a - clean
    for other in (noisy_image(clean, 45, 2020, "test", 4), noisy_image(clean, 45, 2020, "val", 3),
                  noisy_image(clean, 45, 2021, "test", 3)):
        assert abs(np.corrcoef(noise.ravel(), (other - clean).ravel())[0, 1]) < 0.05
    other_sigma = noisy_image(clean, 55, 2020, "test", 3) - clean
    assert abs(np.corrcoef(noise.ravel(), other_sigma.ravel())[0, 1]) < 0.05


@pytest.mark.parametrize("sigma", [15.0, 55.0, 75.0])
def test_noise_std_and_no_clipping(sigma):
    clean = np.zeros((256, 256), np.float32)
    noisy = noisy_image(clean, sigma, 0, "val", 0)
    assert noisy.std() == pytest.approx(sigma / 255, rel=0.02)
    assert abs(noisy.mean()) < 3 * sigma / 255 / 256
    assert noisy.min() < 0  # not clipped


# -- eval_set -------------------------------------------------------------------------


def test_eval_set_shapes_and_sigma_order(builtin_file):
    data = load_dataset(builtin_file[0])
    batches = eval_set(data, "test")
    assert len(batches) == len(BUILTIN_IMAGES["test"])
    for i, batch in enumerate(batches):
        assert batch["noisy"].shape == batch["clean"].shape == (5, 1, 64, 64)
        assert batch["noisy"].dtype == batch["clean"].dtype == batch["sigma"].dtype == torch.float32
        assert batch["sigma"].tolist() == [35.0, 45.0, 55.0, 65.0, 75.0]
        assert batch["image"].dtype == torch.long and batch["image"].tolist() == [i] * 5
        np.testing.assert_array_equal(batch["clean"][2, 0].numpy(), data.test[i])
        np.testing.assert_array_equal(batch["noisy"][2, 0].numpy(),
                                      noisy_image(data.test[i], 55.0, data.config.seed, "test", i))
    again = eval_set(data, "test")
    assert all(torch.equal(a["noisy"], b["noisy"]) for a, b in zip(batches, again))
    val = eval_set(data, "val", sigmas=[55, 15])
    assert len(val) == 2 and val[0]["sigma"].tolist() == [55.0, 15.0] and val[0]["noisy"].shape[0] == 2
    with pytest.raises(ValueError, match="'val' or 'test'"):
        eval_set(data, "train")
    with pytest.raises(ValueError, match="sigmas must list at least one"):
        eval_set(data, "val", sigmas=[])


# -- PatchSampler ---------------------------------------------------------------------


def _ramp_images(shapes) -> list[np.ndarray]:
    """Images whose pixels are all distinct and increase in raster order across images."""
    out, start = [], 0
    for h, w in shapes:
        out.append((start + np.arange(h * w, dtype=np.float64).reshape(h, w)).astype(np.float32))
        start += h * w
    return out


def _locate(images, patch: np.ndarray):
    """(image, top, left) of the crop a ramp patch came from: its minimum is the crop's top-left pixel."""
    value = patch.min()
    for i, image in enumerate(images):
        hit = np.argwhere(image == value)
        if len(hit):
            return i, int(hit[0, 0]), int(hit[0, 1])
    raise AssertionError("patch value not found")


def test_patch_sampler_shapes_and_determinism():
    images = [np.random.default_rng(0).random((70, 90), dtype=np.float32)]
    sampler = PatchSampler(images, 50, [35, 45, 55], "set")
    batch = sampler.sample(16, torch.Generator().manual_seed(0))
    assert batch["noisy"].shape == batch["clean"].shape == (16, 1, 50, 50)
    assert batch["sigma"].shape == (16,)
    assert all(v.dtype == torch.float32 for v in batch.values())
    same = sampler.sample(16, torch.Generator().manual_seed(0))
    other = sampler.sample(16, torch.Generator().manual_seed(1))
    assert all(torch.equal(batch[k], same[k]) for k in batch)
    assert not torch.equal(batch["clean"], other["clean"])
    assert not torch.equal(batch["noisy"], other["noisy"])
    assert sampler.num_positions == 21 * 41


def test_patches_are_dihedral_crops_with_fresh_noise():
    images = _ramp_images([(30, 40), (25, 25)])
    P = 12
    sampler = PatchSampler(images, P, [35, 45, 55], "set")
    batch = sampler.sample(256, torch.Generator().manual_seed(3))
    transforms = set()
    for b in range(256):
        patch = batch["clean"][b, 0]
        i, top, left = _locate(images, patch.numpy())
        crop = torch.from_numpy(images[i][top:top + P, left:left + P].copy())
        matches = [k for k in range(8) if torch.equal(dihedral(crop, k), patch)]
        assert len(matches) == 1, b
        transforms.add(matches[0])
    assert transforms == set(range(8))
    noise = (batch["noisy"] - batch["clean"]) * 255 / batch["sigma"].view(-1, 1, 1, 1)
    assert float(noise.std()) == pytest.approx(1.0, abs=0.05)  # relative error of float32 ramp values is tiny


def test_patch_positions_uniform_over_all_positions():
    # 12x12 (9 positions of 10x10) and 19x19 (100 positions): image chosen in proportion 9 : 100
    images = _ramp_images([(12, 12), (19, 19)])
    sampler = PatchSampler(images, 10, [25], "set")
    clean = sampler.sample(4000, torch.Generator().manual_seed(0))["clean"]
    where = [_locate(images, clean[b, 0].numpy()) for b in range(0, 4000, 1)]
    first = [w for w in where if w[0] == 0]
    assert len(first) / 4000 == pytest.approx(9 / 109, abs=0.015)
    assert {(t, l) for _, t, l in first} == {(t, l) for t in range(3) for l in range(3)}  # edges reached


def test_sigma_modes():
    images = [np.zeros((20, 20), np.float32)]
    sigmas = PatchSampler(images, 8, [35, 45, 55], "set").sample(512, torch.Generator().manual_seed(0))["sigma"]
    assert set(sigmas.tolist()) == {35.0, 45.0, 55.0}
    uniform = PatchSampler(images, 8, [35, 45, 55], "uniform").sample(512, torch.Generator().manual_seed(0))
    s = uniform["sigma"]
    assert 0 <= float(s.min()) < 10 and 45 < float(s.max()) <= 55
    assert len(set(s.tolist())) > 500


def test_patch_sampler_from_data_and_errors(builtin_file):
    data = load_dataset(builtin_file[0])
    sampler = PatchSampler.from_data(data)
    assert sampler.patch_size == 50 and sampler.sigmas.tolist() == [35.0, 45.0, 55.0]
    assert sampler.sample(4, torch.Generator().manual_seed(0))["clean"].shape == (4, 1, 50, 50)
    with pytest.raises(ValueError, match="at least one"):
        PatchSampler([], 50, [35], "set")
    with pytest.raises(ValueError, match=r"training image 0 has shape \(40, 60\)"):
        PatchSampler([np.zeros((40, 60), np.float32)], 50, [35], "set")
    with pytest.raises(ValueError, match=r"data\.train_sigmas"):
        PatchSampler([np.zeros((60, 60), np.float32)], 50, [], "set")


# -- import ---------------------------------------------------------------------------


def test_import_is_cheap_and_silent(tmp_path):
    code = ("import sys, json; import l2o.tasks.denoising.data; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'skimage', 'mlflow'})))")
    proc = subprocess.run([sys.executable, "-c", code, "--junk"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert list(tmp_path.iterdir()) == []
