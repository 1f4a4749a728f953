"""Omniglot and MiniImagenet from tiny fake folders: layouts, splits, rotations, and errors naming the path."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from l2o.tasks.few_shot.folders import list_omniglot, load_miniimagenet, load_omniglot

ALPHABETS = {"images_background": {"Alpha": 3, "Beta": 2}, "images_evaluation": {"Gamma": 3, "Delta": 2}}
SIZES = (4, 2)  # meta-train, meta-val characters; 10 in all -> 4 meta-test


def write_omniglot(root, drawings: int = 3, side: int = 20):
    """Black strokes on white, like Omniglot's PNGs; character (a, j) has a bar at row j + 2."""
    for folder, alphabets in ALPHABETS.items():
        for a, (alphabet, n) in enumerate(alphabets.items()):
            for j in range(n):
                d = root / folder / alphabet / f"character{j + 1:02d}"
                d.mkdir(parents=True)
                for k in range(drawings):
                    img = np.full((side, side), 255, dtype=np.uint8)
                    img[2 * j + 2 : 2 * j + 5, 2 : 2 + 4 * (a + 1) + k] = 0
                    Image.fromarray(img).convert("1").save(d / f"{k:02d}.png")
    return root


@pytest.fixture
def omniglot(tmp_path):
    return write_omniglot(tmp_path / "omniglot")


def test_omniglot_loads_with_split_sizes(omniglot):
    data = load_omniglot(omniglot, image_size=8, split_sizes=SIZES)
    assert data.images.shape == (10, 3, 1, 8, 8) and data.images.dtype == np.uint8
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [4, 2, 4]
    assert sorted(np.concatenate(list(data.splits.values())).tolist()) == list(range(10))
    assert len(set(data.names)) == 10 and all(n.split("/")[0] == a for n, a in zip(data.names, data.alphabets))
    # inverted: background 0, strokes bright
    assert data.images[:, :, :, 0, -1].max() == 0 and data.images.max() > 100
    again = load_omniglot(omniglot, image_size=8, split_sizes=SIZES)
    assert again.names == data.names and np.array_equal(again.images, data.images)
    other = load_omniglot(omniglot, image_size=8, split_sizes=SIZES, split_seed=2)
    assert other.names != data.names
    sorted_ = load_omniglot(omniglot, image_size=8, split_sizes=SIZES, split_order="sorted")
    assert sorted_.names[:4] == ["Alpha/character01", "Alpha/character02", "Alpha/character03", "Beta/character01"]


def test_omniglot_rotations_train_only(omniglot):
    data = load_omniglot(omniglot, image_size=8, rotations=True, split_sizes=SIZES)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [16, 2, 4]
    c = int(data.splits["train"][0])
    rot = data.names.index(f"{data.names[c]}/rot90")
    assert rot in data.splits["train"].tolist() and data.alphabets[rot] == data.alphabets[c]
    assert np.array_equal(data.images[rot], np.rot90(data.images[c], k=1, axes=(-2, -1)))
    everywhere = load_omniglot(omniglot, image_size=8, rotations=True, split_sizes=SIZES,
                               rotation_splits=("train", "val", "test"))
    assert [len(everywhere.splits[s]) for s in ("train", "val", "test")] == [16, 8, 16]


def test_omniglot_split_file(omniglot, tmp_path):
    keys = [f"{a}/{c}" for a, c, _ in list_omniglot(omniglot)][::-1]
    f = tmp_path / "maml_split.txt"
    f.write_text("".join(f"./data/omniglot_resized/{k}\n" for k in keys))
    data = load_omniglot(omniglot, image_size=8, split_sizes=SIZES, split_file=f)
    assert [data.names[i] for i in data.splits["train"]] == keys[:4]
    assert [data.names[i] for i in data.splits["test"]] == keys[6:]
    f.write_text("".join(f"{k}\n" for k in keys[1:]))
    with pytest.raises(ValueError, match="does not list 1 characters"):
        load_omniglot(omniglot, image_size=8, split_sizes=SIZES, split_file=f)
    f.write_text("Nope/character01\n")
    with pytest.raises(ValueError, match=r"line 1: character Nope/character01 is not in the dataset"):
        load_omniglot(omniglot, image_size=8, split_sizes=SIZES, split_file=f)


def test_omniglot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_omniglot(tmp_path / "missing")
    root = write_omniglot(tmp_path / "a")
    (root / "images_evaluation").rename(root / "evaluation")
    with pytest.raises(FileNotFoundError, match=str(root / "images_evaluation")):
        load_omniglot(root, split_sizes=SIZES)
    root = write_omniglot(tmp_path / "b")
    empty = root / "images_background" / "Alpha" / "character09"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty} holds no images"):
        load_omniglot(root, split_sizes=SIZES)
    root = write_omniglot(tmp_path / "c")
    bad = root / "images_evaluation" / "Gamma" / "character01" / "01.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=f"cannot read image file {bad}"):
        load_omniglot(root, image_size=8, split_sizes=SIZES)
    root = write_omniglot(tmp_path / "d")
    with pytest.raises(ValueError, match=r"split 'val' has 2 classes, fewer than data\.ways = 3"):
        load_omniglot(root, split_sizes=SIZES, ways=3)
    with pytest.raises(ValueError, match="holds 10 characters"):
        load_omniglot(root, split_sizes=(8, 2))


MINI = {"train": ["n01", "n02", "n03"], "val": ["n04", "n05"], "test": ["n06", "n07"]}


def _jpg(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)


def write_mini_csv(root, per_class: int = 3):
    (root / "images").mkdir(parents=True)
    for split, classes in MINI.items():
        with open(root / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["filename", "label"])
            for c in classes:
                for k in range(per_class):
                    name = f"{c}{k:08d}.jpg"
                    _jpg(root / "images" / name, int(c[1:]) * 10 + k)
                    w.writerow([name, c])
    return root


def write_mini_folders(root, per_class: int = 3):
    for split, classes in MINI.items():
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for k in range(per_class):
                _jpg(root / split / c / f"{k}.jpg", k)
    return root


@pytest.mark.parametrize("writer", [write_mini_csv, write_mini_folders])
def test_miniimagenet_layouts(tmp_path, writer):
    root = writer(tmp_path / "mini")
    data = load_miniimagenet(root, image_size=12)
    assert data.images.shape == (7, 3, 3, 12, 12) and data.images.dtype == np.uint8
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [3, 2, 2]
    assert [data.names[i] for i in data.splits["val"]] == ["n04", "n05"]
    assert [data.alphabets[i] for i in data.splits["test"]] == ["test", "test"]
    assert data.images.std() > 10  # real pixels, not zeros


def test_miniimagenet_errors(tmp_path):
    root = write_mini_csv(tmp_path / "a")
    (root / "val.csv").unlink()
    with pytest.raises(FileNotFoundError, match=str(root / "val.csv")):
        load_miniimagenet(root)
    root = write_mini_csv(tmp_path / "b")
    (root / "images" / "n0100000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="lists n0100000001.jpg"):
        load_miniimagenet(root)
    root = write_mini_csv(tmp_path / "c")
    (root / "test.csv").write_text("file,class\nx.jpg,n06\n")
    with pytest.raises(ValueError, match="header 'filename,label'"):
        load_miniimagenet(root)
    root = write_mini_folders(tmp_path / "d")
    (root / "val" / "n09").mkdir()
    with pytest.raises(ValueError, match=f"{root / 'val' / 'n09'} holds no images"):
        load_miniimagenet(root)
    root = write_mini_folders(tmp_path / "e")
    bad = root / "train" / "n02" / "1.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(ValueError, match=f"cannot read image file {bad}"):
        load_miniimagenet(root, image_size=12)
    with pytest.raises(FileNotFoundError, match="is not a MiniImagenet folder"):
        load_miniimagenet(tmp_path)
    root = write_mini_folders(tmp_path / "f")
    with pytest.raises(ValueError, match=r"split 'val' has 2 classes, fewer than data\.ways = 3"):
        load_miniimagenet(root, ways=3)
