"""Class-image sets: images grouped by class with a class split (what the few-shot sampler draws
from), their dense tensor form, and their file (an ``.npz`` with no pickles and a JSON sidecar).

Images are (C, M, ch, H, W) uint8 in [0, 255] or float in [0, 1], or a list of C per-class arrays
(M_c, ch, H, W) when the classes have different numbers of instances.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from l2o.io import content_hash, read_npz, write_json_atomic, write_npz_atomic


class ClassImages(NamedTuple):
    """Images grouped by class, with a class split (what the sampler draws from).

    :param images: (C, M, ch, H, W) uint8 (0-255) or float (0-1), or a list of C
        arrays (M_c, ch, H, W) when classes have different instance counts.
    :param list names: C class names (unique).
    :param dict splits: ``{"train", "val", "test"}`` -> int64 arrays of class indices.
    :param list alphabets: C group names (alphabet, script or split) of the classes.
    """

    images: np.ndarray | list[np.ndarray]
    names: list[str]
    splits: dict[str, np.ndarray]
    alphabets: list[str]


# -- class images as a tensor -----------------------------------------------------------


def as_class_tensor(images) -> tuple[Tensor, Tensor]:
    """Images as one (C, M_max, ...) CPU tensor and per-class instance counts (C,) int64.

    A dense array or tensor is used as is (no copy for numpy); a list of per-class
    arrays is zero-padded to the largest class (a copy: pass a dense array when
    you can).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images: the list of classes is empty")
        arrays = [torch.as_tensor(np.asarray(a)) for a in images]
        shape = arrays[0].shape[1:]
        for c, a in enumerate(arrays):
            if a.ndim < 1 or a.shape[1:] != shape or a.dtype != arrays[0].dtype:
                raise ValueError(
                    f"images: class {c} has shape {tuple(a.shape)} {a.dtype}, "
                    f"expected (M, {', '.join(map(str, shape))}) {arrays[0].dtype}"
                )
        counts = torch.tensor([a.shape[0] for a in arrays], dtype=torch.int64)
        data = arrays[0].new_zeros((len(arrays), int(counts.max()), *shape))
        for c, a in enumerate(arrays):
            data[c, : a.shape[0]] = a
        return data, counts
    data = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    if not isinstance(data, Tensor) or data.ndim < 2:
        raise ValueError(f"images must be a (C, M, ...) array or a list of per-class arrays, got {type(images)}")
    return data, torch.full((data.shape[0],), data.shape[1], dtype=torch.int64)


def to_float_images(x: Tensor) -> Tensor:
    """uint8 (0-255) -> float32 in [0, 1]; float -> float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {x.dtype}")
    return x.to(torch.float32)


def split_class_indices(classes, n_classes: int, split: str) -> Tensor:
    """A split's class indices as an int64 tensor (N,), checked: in range, none repeated."""
    cls = torch.as_tensor(np.asarray(classes), dtype=torch.int64).reshape(-1)
    if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= n_classes):
        raise ValueError(f"split {split!r}: class indices must be in 0..{n_classes - 1}")
    if torch.unique(cls).numel() != cls.numel():
        raise ValueError(f"split {split!r}: class indices are repeated")
    return cls


# -- the class-image file -----------------------------------------------------------------


def write_class_images(data: ClassImages, out: Path, meta: dict | None = None) -> dict:
    """Write ``data`` to ``out`` (.npz, no pickles) and a JSON sidecar, both atomically.

    Arrays: ``images`` (C, M_max, ...) (zero-padded if classes differ in size),
    ``counts`` (C,) int64, ``names`` and ``alphabets`` (C,) str, ``split/<name>``
    int64. The sidecar ``out.with_suffix(".json")`` holds ``hash`` (the content
    hash, :func:`load_class_images`'s ``data_hash``), ``classes`` and
    ``alphabets`` per split, image shape and dtype, and ``meta``.

    :return: the sidecar's contents.
    """
    tensor, counts = as_class_tensor(data.images)
    images = tensor.numpy()
    C = images.shape[0]
    if len(data.names) != C or len(data.alphabets) != C:
        raise ValueError(f"write_class_images: {C} classes but {len(data.names)} names, {len(data.alphabets)} alphabets")
    if len(set(data.names)) != C:
        raise ValueError("write_class_images: class names are not unique")
    arrays = {
        "images": images,
        "counts": counts.numpy(),
        "names": np.asarray(data.names, dtype=str),
        "alphabets": np.asarray(data.alphabets, dtype=str),
    }
    for split, idx in data.splits.items():
        arrays[f"split/{split}"] = split_class_indices(idx, C, split).numpy()
    out = Path(out)
    write_npz_atomic(arrays, out)
    sidecar = {
        "hash": content_hash(arrays),
        "image_shape": list(images.shape[2:]),
        "dtype": str(images.dtype),
        "instances": {"min": int(counts.min()), "max": int(counts.max())},
        "splits": {
            split: {
                "classes": len(idx),
                "alphabets": sorted({data.alphabets[int(c)] for c in idx}),
            }
            for split, idx in data.splits.items()
        },
        "meta": meta or {},
    }
    write_json_atomic(sidecar, out.with_suffix(".json"))
    return sidecar


def load_class_images(path: Path) -> tuple[ClassImages, str]:
    """Read a file of :func:`write_class_images`: ``(ClassImages, data_hash)``.

    ``images`` comes back dense when every class has the same count, else as a
    list of per-class arrays. Errors name the file.
    """
    arrays = read_npz(path, "few-shot image file")
    missing = [k for k in ("images", "counts", "names", "alphabets") if k not in arrays]
    if missing:
        raise ValueError(f"few-shot image file {path} lacks arrays {missing}")
    images, counts = arrays["images"], arrays["counts"]
    C = images.shape[0]
    if counts.shape != (C,) or len(arrays["names"]) != C or len(arrays["alphabets"]) != C:
        raise ValueError(f"few-shot image file {path}: counts/names/alphabets do not match {C} classes")
    splits = {k.split("/", 1)[1]: v.astype(np.int64) for k, v in arrays.items() if k.startswith("split/")}
    if np.all(counts == images.shape[1]):
        per_class: np.ndarray | list[np.ndarray] = images
    else:
        per_class = [images[c, : int(counts[c])] for c in range(C)]
    data = ClassImages(
        images=per_class,
        names=[str(n) for n in arrays["names"]],
        splits=splits,
        alphabets=[str(a) for a in arrays["alphabets"]],
    )
    return data, content_hash(arrays)


def describe(data: ClassImages) -> str:
    """One line per split: classes, instances and alphabets (for logs)."""
    lines = []
    _, counts = as_class_tensor(data.images)
    for split, idx in data.splits.items():
        alph = sorted({data.alphabets[int(c)] for c in idx})
        n = counts[torch.as_tensor(np.asarray(idx), dtype=torch.int64)]
        lines.append(
            f"{split}: {len(idx)} classes, {int(n.sum())} images, alphabets {json.dumps(alph)}"
        )
    return "\n".join(lines)
