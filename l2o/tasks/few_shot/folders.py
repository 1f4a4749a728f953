"""The real few-shot datasets (Omniglot, MiniImagenet) read from local folders; no downloads.

**Omniglot** (Lake et al.), standard layout::

    <root>/images_background/<alphabet>/<character>/*.png   (30 alphabets, 964 characters)
    <root>/images_evaluation/<alphabet>/<character>/*.png   (20 alphabets, 659 characters)

Every character is a class (1,623, 20 drawings each). Images are read as gray,
**inverted** (strokes 255 on black, as the released code's
``ImageOps.invert``) and resized to ``image_size`` (28) with Pillow's
anti-aliased bilinear filter (torchvision's ``Resize`` default). The split
follows MAML (Finn et al.) as the released ``make_split.py`` does: the
characters of both folders in one order, the first 1,100 for meta-train, the
next 100 for meta-validation, the remaining 423 for meta-test, so one alphabet
can appear in several splits. The released order is a fixed shuffled list
(``maml_split.txt``, Finn's ``random.seed(1)`` shuffle of his folder listing);
pass such a file as ``split_file`` (one ``.../<alphabet>/<character>`` per
line) to use it. Without it the order is the sorted (alphabet, character) list
shuffled by ``numpy.random.default_rng(split_seed)`` (``split_order="shuffled"``,
the default: the same protocol, another draw) or left sorted
(``split_order="sorted"``: whole alphabets then fall mostly in one split).
Rotation class augmentation (``rotations=True``) adds each character rotated by
90, 180 and 270 degrees as three new classes, to meta-train only unless
``rotation_splits`` says otherwise (the released code, via torchmeta, also
rotates the val/test classes).

**MiniImagenet** (Ravi & Larochelle split: 64 / 16 / 20 classes of 600), either::

    <root>/images/*.jpg  with  <root>/{train,val,test}.csv  (header "filename,label")
    <root>/{train,val,test}/<wnid>/*.jpg

Images are RGB, resized (shorter side to ``image_size`` = 84, bilinear,
anti-aliased) and centre-cropped square. No rotation augmentation (the released
code rotates natural images too: not copied).

Both loaders return :class:`~l2o.tasks.few_shot.class_images.ClassImages`
(``images`` (C, M, ch, H, W) uint8, or a list of per-class arrays if counts
differ; ``names``; ``splits``; ``alphabets`` = Omniglot alphabet, or the
MiniImagenet split). Every folder and list is checked before any image is
read; errors name the path and what is wrong.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from l2o.tasks.few_shot.class_images import ClassImages
from l2o.tasks.few_shot.sampler import check_int

OMNIGLOT_FOLDERS = ("images_background", "images_evaluation")
OMNIGLOT_SPLIT_SIZES = (1100, 100)  # meta-train, meta-val; the rest is meta-test
MINI_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


# -- small helpers ------------------------------------------------------------------------


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path, mode: str):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)
    except Exception as err:  # PIL raises many types; all mean "not an image"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read image file {path} (not a readable image: {reason})") from err


def _resize_square(im, size: int):
    """Shorter side to ``size`` (bilinear, anti-aliased), then a centred square crop."""
    from PIL import Image

    w, h = im.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return im


def _stack(per_class: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    if len({a.shape[0] for a in per_class}) == 1:
        return np.stack(per_class)
    return per_class


def _check_ways(splits: dict[str, np.ndarray], ways: int | None, what: str) -> None:
    if ways is None:
        return
    check_int(ways, "data.ways", 2)
    for split, idx in splits.items():
        if len(idx) < ways:
            raise ValueError(f"{what}: split {split!r} has {len(idx)} classes, fewer than data.ways = {ways}")


def _check_root(root, key: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{key}: dataset folder {root} does not exist")
    return root


# -- Omniglot -----------------------------------------------------------------------------


def list_omniglot(root) -> list[tuple[str, str, list[Path]]]:
    """Every Omniglot character as ``(alphabet, character, image files)``, sorted.

    Checks the layout (both ``images_*`` folders, no empty alphabet or
    character) and reads no image.
    """
    root = _check_root(root, "data.root")
    layout = f"expected {root}/images_background/<alphabet>/<character>/*.png and images_evaluation/..."
    missing = [root / f for f in OMNIGLOT_FOLDERS if not (root / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"data.root: Omniglot folder {missing[0]} does not exist ({layout})")
    chars = []
    for folder in OMNIGLOT_FOLDERS:
        alphabets = _subdirs(root / folder)
        if not alphabets:
            raise ValueError(f"data.root: {root / folder} holds no alphabet folders ({layout})")
        for alphabet in alphabets:
            characters = _subdirs(alphabet)
            if not characters:
                raise ValueError(f"data.root: alphabet folder {alphabet} holds no character folders ({layout})")
            for character in characters:
                files = _image_files(character)
                if not files:
                    raise ValueError(f"data.root: character folder {character} holds no images (an empty class)")
                chars.append((alphabet.name, character.name, files))
    seen: dict[tuple[str, str], int] = {}
    for a, c, _ in chars:
        seen[(a, c)] = seen.get((a, c), 0) + 1
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        raise ValueError(f"data.root: character {dup[0][0]}/{dup[0][1]} is in both images_background and images_evaluation")
    return sorted(chars, key=lambda t: (t[0], t[1]))


def read_split_file(path, known: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """A character order from a file with one ``.../<alphabet>/<character>`` per line.

    Every line must name a known character, once; every known character must be listed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.split_file: {path} does not exist")
    order = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace("\\", "/").rstrip("/").split("/")
        if len(parts) < 2:
            raise ValueError(f"data.split_file: {path} line {n}: expected .../<alphabet>/<character>, got {line!r}")
        key = (parts[-2], parts[-1])
        if key not in known:
            raise ValueError(f"data.split_file: {path} line {n}: character {key[0]}/{key[1]} is not in the dataset")
        order.append(key)
    if len(set(order)) != len(order):
        raise ValueError(f"data.split_file: {path} lists a character twice")
    absent = sorted(known - set(order))
    if absent:
        raise ValueError(
            f"data.split_file: {path} does not list {len(absent)} characters of the dataset, "
            f"e.g. {absent[0][0]}/{absent[0][1]}"
        )
    return order


def load_omniglot(
    root,
    image_size: int = 28,
    rotations: bool = False,
    *,
    split_file=None,
    split_order: str = "shuffled",
    split_seed: int = 1,
    split_sizes: tuple[int, int] = OMNIGLOT_SPLIT_SIZES,
    rotation_splits: tuple[str, ...] = ("train",),
    ways: int | None = None,
) -> ClassImages:
    """Omniglot from ``root`` (see the module docstring) as uint8 (C, 20, 1, H, W), strokes = 255.

    :param int image_size: output side (28 as MAML).
    :param bool rotations: add 90/180/270-degree rotations of the characters of
        ``rotation_splits`` as new classes (named ``<alphabet>/<character>/rot90`` ...).
    :param split_file: a character order (the released ``maml_split.txt`` format).
    :param str split_order: without a file: ``shuffled`` (seeded by ``split_seed``) or ``sorted``.
    :param tuple split_sizes: (meta-train, meta-val) character counts; the rest is meta-test.
    :param ways: if given, each split must have at least this many classes.
    """
    image_size = check_int(image_size, "data.image_size", 4)
    if split_order not in ("shuffled", "sorted"):
        raise ValueError(f"data.split_order must be 'shuffled' or 'sorted', got {split_order!r}")
    n_train, n_val = (check_int(n, "data.split_sizes", 1) for n in split_sizes)
    bad = [s for s in rotation_splits if s not in MINI_SPLITS]
    if bad:
        raise ValueError(f"data.rotation_splits: unknown splits {bad}; expected among {list(MINI_SPLITS)}")
    chars = list_omniglot(root)
    if len(chars) <= n_train + n_val:
        raise ValueError(
            f"data.root: {root} holds {len(chars)} characters; the split needs more than "
            f"{n_train} (meta-train) + {n_val} (meta-val)"
        )
    keys = [(a, c) for a, c, _ in chars]
    if split_file is not None:
        order = read_split_file(split_file, set(keys))
    elif split_order == "sorted":
        order = keys
    else:
        perm = np.random.default_rng(split_seed).permutation(len(keys))
        order = [keys[i] for i in perm]
    files = {(a, c): f for a, c, f in chars}

    # Classes in split order (meta-train first), then the rotated copies: (character, quarter turns).
    classes = [(key, 0) for key in order]
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(order))}
    splits = {s: list(range(lo, hi)) for s, (lo, hi) in bounds.items()}
    if rotations:
        for split in rotation_splits:
            for cls in list(splits[split]):
                for k in (1, 2, 3):
                    classes.append((classes[cls][0], k))
                    splits[split].append(len(classes) - 1)
    out_splits = {s: np.asarray(v, dtype=np.int64) for s, v in splits.items()}
    _check_ways(out_splits, ways, f"Omniglot at {root}")

    from PIL import ImageOps

    upright: dict[tuple[str, str], np.ndarray] = {}
    for key in order:
        imgs = [
            np.asarray(_resize_square(ImageOps.invert(_read_image(path, "L")), image_size), dtype=np.uint8)[None]
            for path in files[key]
        ]
        upright[key] = np.stack(imgs)  # (M, 1, H, W)
    per_class = [
        upright[key] if k == 0 else np.ascontiguousarray(np.rot90(upright[key], k=k, axes=(-2, -1)))
        for key, k in classes
    ]
    names = [f"{a}/{c}" + (f"/rot{90 * k}" if k else "") for (a, c), k in classes]
    alphabets = [a for (a, _), _ in classes]
    return ClassImages(images=_stack(per_class), names=names, splits=out_splits, alphabets=alphabets)


# -- MiniImagenet --------------------------------------------------------------------------


def _read_csv(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise ValueError(f"data.root: {path} must start with the header 'filename,label', got {header!r}")
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"data.root: {path} line {n}: expected 'filename,label', got {row!r}")
            rows.append((row[0].strip(), row[1].strip()))
    if not rows:
        raise ValueError(f"data.root: {path} lists no images")
    return rows


def list_miniimagenet(root) -> dict[str, dict[str, list[Path]]]:
    """``{split: {class: image files}}`` of a MiniImagenet folder, checked, no image read."""
    root = _check_root(root, "data.root")
    csvs = [root / f"{s}.csv" for s in MINI_SPLITS]
    layout = (
        f"expected {root}/images/*.jpg with {root}/train.csv, val.csv, test.csv, "
        f"or {root}/train/<class>/*.jpg, val/..., test/..."
    )
    out: dict[str, dict[str, list[Path]]] = {}
    if any(p.is_file() for p in csvs):
        missing = [p for p in csvs if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"data.root: MiniImagenet list {missing[0]} does not exist ({layout})")
        images = root / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"data.root: MiniImagenet image folder {images} does not exist ({layout})")
        for split, path in zip(MINI_SPLITS, csvs):
            classes: dict[str, list[Path]] = {}
            for name, label in _read_csv(path):
                file = images / name
                if not file.is_file():
                    raise FileNotFoundError(f"data.root: {path} lists {name}, but {file} does not exist")
                classes.setdefault(label, []).append(file)
            out[split] = dict(sorted(classes.items()))
    elif any((root / s).is_dir() for s in MINI_SPLITS):
        for split in MINI_SPLITS:
            folder = root / split
            if not folder.is_dir():
                raise FileNotFoundError(f"data.root: MiniImagenet folder {folder} does not exist ({layout})")
            classes = {}
            for cls in _subdirs(folder):
                files = _image_files(cls)
                if not files:
                    raise ValueError(f"data.root: class folder {cls} holds no images (an empty class)")
                classes[cls.name] = files
            if not classes:
                raise ValueError(f"data.root: {folder} holds no class folders ({layout})")
            out[split] = classes
    else:
        raise FileNotFoundError(f"data.root: {root} is not a MiniImagenet folder ({layout})")
    seen: dict[str, str] = {}
    for split, classes in out.items():
        for cls in classes:
            if cls in seen:
                raise ValueError(f"data.root: class {cls} is in both the {seen[cls]} and {split} splits")
            seen[cls] = split
    return out


def load_miniimagenet(root, image_size: int = 84, *, ways: int | None = None) -> ClassImages:
    """MiniImagenet from ``root`` as uint8 (C, M, 3, H, W) RGB; classes train, then val, then test.

    ``alphabets`` holds each class's split name.
    """
    image_size = check_int(image_size, "data.image_size", 4)
    listing = list_miniimagenet(root)
    _check_ways({s: list(listing[s]) for s in MINI_SPLITS}, ways, f"MiniImagenet at {root}")
    splits = {s: np.arange(0) for s in MINI_SPLITS}
    per_class, names, groups = [], [], []
    for split in MINI_SPLITS:
        start = len(per_class)
        for cls, files in listing[split].items():
            imgs = [
                np.asarray(_resize_square(_read_image(p, "RGB"), image_size), dtype=np.uint8).transpose(2, 0, 1)
                for p in files
            ]
            per_class.append(np.stack(imgs))
            names.append(cls)
            groups.append(split)
        splits[split] = np.arange(start, len(per_class), dtype=np.int64)
    return ClassImages(images=_stack(per_class), names=names, splits=splits, alphabets=groups)
