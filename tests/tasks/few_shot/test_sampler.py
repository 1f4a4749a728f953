"""N-way k-shot task sampling: format, shot counts, labels, disjointness, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from l2o.tasks.few_shot.class_images import ClassImages, load_class_images, write_class_images
from l2o.tasks.few_shot.sampler import TaskSamplerConfig, fixed_tasks, iter_fixed_tasks, sample_tasks, task_seed

C, M = 14, 8
SPLITS = {"train": np.arange(0, 8), "val": np.arange(8, 11), "test": np.arange(11, 14)}


def coded_images(counts=None) -> np.ndarray | list[np.ndarray]:
    """uint8 (C, M, 1, 2, 2) images whose pixels spell (class, instance); the rest 255."""
    imgs = np.full((C, M, 1, 2, 2), 255, dtype=np.uint8)
    imgs[:, :, 0, 0, 0] = np.arange(C)[:, None]
    imgs[:, :, 0, 0, 1] = np.arange(M)[None, :]
    if counts is None:
        return imgs
    return [imgs[c, :n] for c, n in enumerate(counts)]


def decode(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(class, instance) of images (..., 1, 2, 2) float in [0, 1]."""
    v = np.rint(x.numpy() * 255).astype(int)
    return v[..., 0, 0, 0], v[..., 0, 0, 1]


CFG = TaskSamplerConfig(ways=3, shots=[1, 4], query_shots=2)


def test_format_and_shapes(rng):
    b = sample_tasks(coded_images(), SPLITS["train"], CFG, 6, rng)
    S, Q = 3 * 4, 3 * 2
    assert b["support_x"].shape == (6, S, 1, 2, 2) and b["support_x"].dtype == torch.float32
    assert b["support_y"].shape == (6, S) and b["support_y"].dtype == torch.int64
    assert b["support_mask"].shape == (6, S) and b["support_mask"].dtype == torch.float32
    assert b["query_x"].shape == (6, Q, 1, 2, 2) and b["query_y"].shape == (6, Q)
    assert b["shots"].shape == (6,) and b["shots"].dtype == torch.int64
    assert float(b["support_x"].max()) <= 1.0 and float(b["support_x"].min()) >= 0.0
    mask = b["support_mask"]
    assert torch.all(mask[:, 1:] <= mask[:, :-1])  # real examples first, padding last
    assert torch.equal(mask.sum(1), (3 * b["shots"]).float())  # exactly ways * k real examples
    pad = mask == 0
    assert torch.all(b["support_x"][pad] == 0) and torch.all(b["support_y"][pad] == 0)


def test_shots_shared_and_in_range():
    b = sample_tasks(coded_images(), SPLITS["train"], CFG, 300, torch.Generator().manual_seed(1))
    assert set(b["shots"].tolist()) == {1, 2, 3, 4}
    assert torch.all(b["class_shots"] == b["shots"][:, None])
    for i in range(300):
        y = b["support_y"][i][b["support_mask"][i] > 0]
        assert torch.equal(torch.bincount(y, minlength=3), b["shots"][i].repeat(3))


def test_per_class_shots():
    cfg = TaskSamplerConfig(ways=3, shots=[1, 4], query_shots=1, per_class_shots=True)
    b = sample_tasks(coded_images(), SPLITS["train"], cfg, 200, torch.Generator().manual_seed(2))
    ks = b["class_shots"]
    assert ks.min() >= 1 and ks.max() <= 4
    assert (ks != ks[:, :1]).any()  # classes of one task differ
    for i in range(200):
        y = b["support_y"][i][b["support_mask"][i] > 0]
        assert torch.equal(torch.bincount(y, minlength=3), ks[i])
    assert torch.equal(b["shots"], ks.sum(1) // 3)
    assert torch.equal(b["support_mask"].sum(1), ks.sum(1).float())


def test_labels_classes_and_disjoint_instances(rng):
    b = sample_tasks(coded_images(), SPLITS["train"], CFG, 50, rng)
    assert torch.equal(b["query_y"][0], torch.tensor([0, 0, 1, 1, 2, 2]))
    seen_orders = set()
    for i in range(50):
        classes = b["classes"][i].numpy()
        assert len(set(classes)) == 3 and set(classes) <= set(SPLITS["train"])
        seen_orders.add(tuple(np.argsort(classes)))
        real = b["support_mask"][i] > 0
        s_cls, s_inst = decode(b["support_x"][i][real])
        q_cls, q_inst = decode(b["query_x"][i])
        assert np.array_equal(s_cls, classes[b["support_y"][i][real].numpy()])  # label j <-> classes[j]
        assert np.array_equal(q_cls, classes[b["query_y"][i].numpy()])
        pairs = list(zip(s_cls, s_inst)) + list(zip(q_cls, q_inst))
        assert len(set(pairs)) == len(pairs)  # support and query instances distinct
    assert len(seen_orders) == 6  # every label permutation of the 3 classes occurs


def test_splits_stay_apart():
    imgs = coded_images()
    g = torch.Generator().manual_seed(3)
    for name, idx in SPLITS.items():
        b = sample_tasks(imgs, idx, CFG, 40, g, split=name)
        assert set(b["classes"].unique().tolist()) <= set(idx.tolist())
    assert not set(SPLITS["train"]) & set(SPLITS["val"]) and not set(SPLITS["val"]) & set(SPLITS["test"])


def test_same_generator_state_same_batch():
    imgs = coded_images()
    a = sample_tasks(imgs, SPLITS["train"], CFG, 4, torch.Generator().manual_seed(7))
    b = sample_tasks(imgs, SPLITS["train"], CFG, 4, torch.Generator().manual_seed(7))
    c = sample_tasks(imgs, SPLITS["train"], CFG, 4, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["support_x"], c["support_x"])


def test_fixed_tasks_deterministic_and_chunk_free():
    imgs = coded_images()
    a = fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=10, seed=5, chunk=4)
    b = fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=10, seed=5, chunk=3)
    assert [t["shots"].shape[0] for t in a] == [4, 4, 2]

    def cat(ts, k):
        return torch.cat([t[k] for t in ts])

    assert all(torch.equal(cat(a, k), cat(b, k)) for k in a[0])
    again = fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=10, seed=5, chunk=4)
    assert all(torch.equal(cat(a, k), cat(again, k)) for k in a[0])
    other = fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=10, seed=6, chunk=4)
    assert not torch.equal(cat(a, "support_x"), cat(other, "support_x"))
    val = fixed_tasks(imgs, SPLITS["val"], CFG, n_tasks=10, seed=5, split="val")
    assert set(cat(val, "classes").unique().tolist()) <= set(SPLITS["val"].tolist())


def test_ragged_classes_and_float_images(rng):
    counts = [M] * C
    counts[2] = 6
    imgs = coded_images(counts)
    cfg = TaskSamplerConfig(ways=3, shots=[4, 4], query_shots=2)
    b = sample_tasks(imgs, [0, 1, 2, 3], cfg, 40, rng)
    cls, inst = decode(b["support_x"])
    assert inst[cls == 2].max() < 6  # never a padded instance of the short class
    floats = [a.astype(np.float32) / 255 for a in imgs]
    bf = sample_tasks(floats, [0, 1, 2, 3], cfg, 2, torch.Generator().manual_seed(0))
    bu = sample_tasks(imgs, [0, 1, 2, 3], cfg, 2, torch.Generator().manual_seed(0))
    assert torch.allclose(bf["support_x"], bu["support_x"])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"shots": [3, 2]}, "data.shots"),
        ({"shots": [0, 2]}, "data.shots"),
        ({"shots": [1]}, "data.shots"),
        ({"ways": 1}, "data.ways"),
        ({"query_shots": 0}, "data.query_shots"),
        ({"per_class_shots": "yes"}, "data.per_class_shots"),
    ],
)
def test_config_errors(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TaskSamplerConfig(**kwargs)


def test_split_errors(rng):
    imgs = coded_images()
    with pytest.raises(ValueError, match=r"split 'val' has 2 classes, fewer than data\.ways = 3"):
        sample_tasks(imgs, [8, 9], CFG, 1, rng, split="val")
    counts = [M] * C
    counts[5] = 5  # < k2 + query = 6
    names = [f"char{c}" for c in range(C)]
    with pytest.raises(ValueError, match=r"split 'train': class 5 \(char5\) has 5 instances"):
        sample_tasks(coded_images(counts), SPLITS["train"], CFG, 1, rng, names=names)
    with pytest.raises(ValueError, match="repeated"):
        sample_tasks(imgs, [0, 0, 1], CFG, 1, rng)
    with pytest.raises(ValueError, match="class indices must be in"):
        sample_tasks(imgs, [0, 1, 99], CFG, 1, rng)


def test_class_image_file_roundtrip(tmp_path):
    data = ClassImages(coded_images(), [f"c{i}" for i in range(C)], SPLITS, ["A"] * 7 + ["B"] * 7)
    meta = write_class_images(data, tmp_path / "d.npz", meta={"source": "test"})
    loaded, data_hash = load_class_images(tmp_path / "d.npz")
    assert data_hash == meta["hash"] == json.loads((tmp_path / "d.json").read_text())["hash"]
    assert np.array_equal(loaded.images, data.images) and loaded.names == data.names
    assert all(np.array_equal(loaded.splits[k], v) for k, v in SPLITS.items())
    assert meta["splits"]["val"] == {"classes": 3, "alphabets": ["B"]}
    counts = [M] * C
    counts[0] = 3
    ragged = data._replace(images=coded_images(counts))
    write_class_images(ragged, tmp_path / "r.npz")
    back, _ = load_class_images(tmp_path / "r.npz")
    assert isinstance(back.images, list) and back.images[0].shape[0] == 3
    assert np.array_equal(back.images[1], ragged.images[1])


def test_iter_fixed_tasks_is_lazy_and_equal():
    imgs = coded_images()
    it = iter_fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=5, seed=1, chunk=2)
    first = next(it)
    assert first["shots"].shape == (2,)
    listed = fixed_tasks(imgs, SPLITS["test"], CFG, n_tasks=5, seed=1, chunk=2)
    assert all(torch.equal(first[k], listed[0][k]) for k in first)
    # task i of a fixed set is sample_tasks with batch 1 and its own seeded generator
    one = sample_tasks(imgs, SPLITS["test"], CFG, 1, torch.Generator().manual_seed(task_seed(1, "test", 1)))
    assert all(torch.equal(one[k][0], listed[0][k][1]) for k in one)
