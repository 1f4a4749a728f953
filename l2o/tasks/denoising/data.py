"""Data for blind Gaussian denoising (DnCNN-stop, paper Sec. 5.3), offline and seeded.

The paper trains on BSD400, validates on Set12 and tests on BSD68. None of these
ship with any package, so by default (``source: skimage``) a fixed named split of
the natural images inside the scikit-image wheel stands in for them
(:data:`BUILTIN_IMAGES`); ``source: folders`` reads the real sets from user
folders.

What the released code does, and what we do:

- Training images are rescaled by ``train_scales`` (``[1, 0.9, 0.8, 0.7]``) and
  every 50 x 50 patch is cut, with a random flip/rotation. We store the rescaled
  copies and :class:`PatchSampler` draws patches uniformly over all
  (copy, position) pairs with one of the 8 dihedral transforms, which is the
  same distribution without materialising ~10^6 patches.
- Training noise: sigma per patch drawn from the set ``{35, 45, 55}``
  (``train_sigma_mode: set``), or ``U[0, 55]`` as the paper's text says
  (``uniform``). Pixels are on [0, 1]; sigma is quoted on the 0-255 scale.
- Validation / test images get noise that is seeded per (seed, split, image,
  sigma) (:func:`l2o.tasks.denoising.noise.noisy_image`); the released code gives every test image the
  same noise field, ours does not. Noise is never clipped (as DnCNN).

The dataset file (``.npz``, loadable with ``allow_pickle=False``) holds the
clean images only: ``train/000``, ``val/000``, ... (2-D float32 in [0, 1]),
``names/<split>`` (str), ``train_scale`` (float64, one per training copy) and
``config_json`` (the config as a JSON string). A JSON sidecar records the
content hash, the config, image names and sizes and the sigma lists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l2o.io import atomic_path, content_hash, write_json_atomic
from l2o.tasks.denoising.images import (  # noqa: F401  (re-exported: the public names of the data module)
    BUILTIN_IMAGES,
    IMAGE_SUFFIXES,
    builtin_folder,
    centre_crop,
    check_folder,
    list_images,
    load_builtin,
    load_folder,
    read_image,
    rescale_image,
    to_gray,
)

SPLITS = ("train", "val", "test")

# Integer code of each split in the noise RNG's entropy (see l2o.tasks.denoising.noise.noisy_image).
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

SOURCES = ("skimage", "folders")
SIGMA_MODES = ("set", "uniform")
COLOR_MODES = ("error", "convert")


@dataclass
class DenoisingDataConfig:
    """Settings of the denoising data (config section ``denoising.data``).

    :param str source: ``skimage`` (builtin stand-in, :data:`BUILTIN_IMAGES`) or
        ``folders`` (``train_dir``/``val_dir``/``test_dir``, e.g. BSD400/Set12/BSD68).
    :param str color: for folder images: ``error`` refuses a colour image,
        ``convert`` turns it to gray. The builtin colour photos are always converted.
    :param int patch_size: side of the square training patches.
    :param list train_scales: each training image is stored rescaled by each factor.
    :param list train_sigmas: training noise levels (0-255 scale).
    :param str train_sigma_mode: ``set`` (sigma drawn from ``train_sigmas``) or
        ``uniform`` (sigma ~ U[0, max(train_sigmas)]).
    :param list val_sigmas: noise levels of each validation image.
    :param list test_sigmas: noise levels of each test image.
    :param crop: val/test images are centre-cropped to at most crop x crop (None: full).
    :param max_train_side: training images with a longer side above this are
        downscaled to it before the scales are applied (None: kept).
    :param int seed: seed of the val/test noise.
    :param expect_images: for folders: ``{split: number of images}`` each folder must hold
        (e.g. ``{train: 400, val: 12, test: 68}``), so that a partial copy stops the data
        stage; None: not checked. A check, not data: it is left out of the stored config.
    """

    source: str = "skimage"
    train_dir: str | None = None
    val_dir: str | None = None
    test_dir: str | None = None
    color: str = "error"
    patch_size: int = 50
    train_scales: list[float] = field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7])
    train_sigmas: list[float] = field(default_factory=lambda: [35.0, 45.0, 55.0])
    train_sigma_mode: str = "set"
    val_sigmas: list[float] = field(default_factory=lambda: [35.0, 45.0, 55.0])
    test_sigmas: list[float] = field(default_factory=lambda: [35.0, 45.0, 55.0, 65.0, 75.0])
    crop: int | None = 256
    max_train_side: int | None = None
    seed: int = 2020
    expect_images: dict[str, int] | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {list(SOURCES)}, got {self.source!r}")
        folders = {"train_dir": self.train_dir, "val_dir": self.val_dir, "test_dir": self.test_dir}
        if self.source == "folders":
            missing = [f"data.{k}" for k, v in folders.items() if not v]
            if missing:
                verb = "is" if len(missing) == 1 else "are"
                raise ValueError(f"data.source is 'folders' but {', '.join(missing)} {verb} not set")
        else:
            given = [f"data.{k}" for k, v in folders.items() if v]
            if given:
                raise ValueError(
                    f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set but data.source is {self.source!r}; "
                    "set data.source: folders to read image folders"
                )
        if self.color not in COLOR_MODES:
            raise ValueError(f"data.color must be one of {list(COLOR_MODES)}, got {self.color!r}")
        if self.train_sigma_mode not in SIGMA_MODES:
            raise ValueError(
                f"data.train_sigma_mode must be one of {list(SIGMA_MODES)}, got {self.train_sigma_mode!r}"
            )
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 8:
            raise ValueError(f"data.patch_size must be an integer >= 8, got {self.patch_size!r}")
        self.train_scales = positive_list(self.train_scales, "data.train_scales", "scale factor")
        for key in ("train_sigmas", "val_sigmas", "test_sigmas"):
            setattr(self, key, positive_list(getattr(self, key), f"data.{key}", "noise level"))
        if self.crop is not None and (isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 8):
            raise ValueError(f"data.crop must be an integer >= 8 or null, got {self.crop!r}")
        if self.max_train_side is not None and (
            isinstance(self.max_train_side, bool)
            or not isinstance(self.max_train_side, int)
            or self.max_train_side < self.patch_size
        ):
            raise ValueError(
                f"data.max_train_side must be an integer >= data.patch_size ({self.patch_size}) "
                f"or null, got {self.max_train_side!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"data.seed must be an integer >= 0, got {self.seed!r}")
        if self.expect_images is not None:
            self.expect_images = _expected_counts(self.expect_images, self.source)

    def split_sigmas(self, split: str) -> list[float]:
        """The noise levels of ``split`` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return list(getattr(self, f"{split}_sigmas"))


def _expected_counts(value, source: str) -> dict[str, int]:
    """``data.expect_images`` checked: a mapping from splits to image counts >= 1, for folders only."""
    if source != "folders":
        raise ValueError("data.expect_images is set but data.source is not 'folders'")
    if not isinstance(value, dict) or not value or set(value) - set(SPLITS):
        raise ValueError(f"data.expect_images must map some of {list(SPLITS)} to image counts, got {value!r}")
    for split, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"data.expect_images.{split} must be an integer >= 1, got {n!r}")
    return {split: int(value[split]) for split in SPLITS if split in value}


def stored_config(config: DenoisingDataConfig) -> dict:
    """The config as the dataset file stores it: checks that do not shape the data are left out, so that
    adding one does not change the data's hash."""
    out = asdict(config)
    out.pop("expect_images")
    return out


def positive_list(values, key: str, what: str) -> list[float]:
    """``values`` as a non-empty list of positive floats, or a ValueError naming ``key``."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{key} must be a list, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{key} must list at least one {what}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v > 0:
            raise ValueError(f"{key} must hold numbers > 0, got {v!r}")
        if not np.isfinite(v):
            raise ValueError(f"{key} must hold finite numbers, got {v!r}")
        out.append(float(v))
    return out


@dataclass
class DenoisingData:
    """The clean images of a dataset file.

    ``names[split][i]`` names ``<split>[i]``; ``train_scale[i]`` is the factor
    ``train[i]`` was rescaled by (the training list holds every scaled copy).
    Every image is a 2-D float32 array (H, W) in [0, 1].
    """

    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    names: dict[str, list[str]]
    config: DenoisingDataConfig
    data_hash: str
    train_scale: list[float] = field(default_factory=list)


def training_copies(
    names: list[str], images: list[np.ndarray], config: DenoisingDataConfig
) -> tuple[list[str], list[np.ndarray], list[float]]:
    """Every training image at every ``train_scales`` factor.

    Images with a longer side above ``max_train_side`` are first downscaled to
    it. An image smaller than ``patch_size`` (after that) is refused; a scaled
    copy smaller than ``patch_size`` is left out (it holds no patch).

    :return: names, images and scale factor of each copy, image-major.
    """
    P = config.patch_size
    out_names, out_images, out_scales = [], [], []
    for name, image in zip(names, images):
        if config.max_train_side is not None and max(image.shape) > config.max_train_side:
            image = rescale_image(image, config.max_train_side / max(image.shape))
        if min(image.shape) < P:
            hint = " after data.max_train_side" if config.max_train_side is not None else ""
            raise ValueError(
                f"training image {name} is {image.shape[0]}x{image.shape[1]}{hint}, "
                f"smaller than data.patch_size = {P}"
            )
        for scale in config.train_scales:
            copy = rescale_image(image, scale)
            if min(copy.shape) >= P:
                out_names.append(name)
                out_images.append(copy)
                out_scales.append(scale)
    return out_names, out_images, out_scales


def load_clean_images(config: DenoisingDataConfig) -> dict[str, tuple[list[str], list[np.ndarray]]]:
    """Names and clean (H, W) images of each split as read (no scaling or cropping).

    Every folder is listed (and checked non-empty) before any image is read.
    """
    if config.source == "skimage":
        return {split: load_builtin(split) for split in SPLITS}
    folders = {split: getattr(config, f"{split}_dir") for split in SPLITS}
    for split, folder in folders.items():
        check_folder(folder, f"data.{split}_dir", config.expect_images)
    convert = config.color == "convert"
    return {split: load_folder(folder, f"data.{split}_dir", convert) for split, folder in folders.items()}


def build_arrays(config: DenoisingDataConfig) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of a dataset file and the summary that goes into its sidecar."""
    clean = load_clean_images(config)
    train_names, train_images, train_scales = training_copies(*clean["train"], config)
    splits = {
        "train": (train_names, train_images),
        "val": (clean["val"][0], [centre_crop(im, config.crop) for im in clean["val"][1]]),
        "test": (clean["test"][0], [centre_crop(im, config.crop) for im in clean["test"][1]]),
    }
    arrays: dict[str, np.ndarray] = {
        "config_json": np.asarray(json.dumps(stored_config(config), sort_keys=True)),
        "train_scale": np.asarray(train_scales, dtype=np.float64),
    }
    for split, (names, images) in splits.items():
        arrays[f"names/{split}"] = np.asarray(names, dtype=str)
        for i, image in enumerate(images):
            arrays[f"{split}/{i:03d}"] = image
    P = config.patch_size
    summary = {
        "images": {
            split: [{"name": n, "size": list(clean[split][1][i].shape)} for i, n in enumerate(clean[split][0])]
            for split in SPLITS
        },
        "stored": {
            split: [
                {"name": n, "size": list(im.shape), **({"scale": train_scales[i]} if split == "train" else {})}
                for i, (n, im) in enumerate(zip(*splits[split]))
            ]
            for split in SPLITS
        },
        "train_patch_positions": int(sum((h - P + 1) * (w - P + 1) for h, w in (im.shape for im in train_images))),
        "train_pixels": int(sum(im.size for im in train_images)),
    }
    return arrays, summary


# -- the dataset file -----------------------------------------------------------------


def write_dataset(config: DenoisingDataConfig, out: Path) -> dict:
    """Load, prepare and write the clean images to ``out`` (.npz) and its JSON sidecar.

    Both files are written atomically (a killed job leaves neither half-written).
    The sidecar ``out.with_suffix(".json")`` holds ``hash`` (the content hash
    :func:`load_dataset` returns as ``data_hash``), ``config``, ``source``,
    ``images`` (names and sizes as read), ``stored`` (names and sizes as
    stored; training copies with their scale), ``sigmas`` per split and
    ``train_patch_positions``.

    :return: the sidecar's contents.
    """
    import skimage

    arrays, summary = build_arrays(config)
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    source = (
        f"scikit-image {skimage.__version__} builtin images (stand-in for BSD400 / Set12 / BSD68)"
        if config.source == "skimage"
        else "image folders"
    )
    meta = {
        "hash": content_hash(arrays),
        "config": asdict(config),
        "source": source,
        "sigmas": {split: config.split_sigmas(split) for split in SPLITS},
        "train_sigma_mode": config.train_sigma_mode,
        **summary,
    }
    write_json_atomic(meta, out.with_suffix(".json"))
    return meta


def load_dataset(path: Path) -> DenoisingData:
    """Read a dataset file written by :func:`write_dataset`, check it, and return its images.

    Raises ``FileNotFoundError``/``ValueError`` naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"denoising dataset file {path} does not exist (run the data stage first)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # zip/format errors: the file is not a valid .npz
        raise ValueError(f"denoising dataset file {path} is not a readable .npz file: {err}") from err
    required = ["config_json", "train_scale"] + [f"names/{s}" for s in SPLITS]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"denoising dataset file {path} lacks arrays {missing}")
    try:
        config = DenoisingDataConfig(**json.loads(str(arrays["config_json"])))
    except (TypeError, ValueError) as err:
        raise ValueError(f"denoising dataset file {path}: bad stored config: {err}") from err
    images: dict[str, list[np.ndarray]] = {}
    names: dict[str, list[str]] = {}
    for split in SPLITS:
        names[split] = [str(n) for n in arrays[f"names/{split}"]]
        keys = [f"{split}/{i:03d}" for i in range(len(names[split]))]
        lacking = [k for k in keys if k not in arrays]
        if lacking:
            raise ValueError(f"denoising dataset file {path} lacks images {lacking}")
        for k in keys:
            if arrays[k].ndim != 2 or arrays[k].dtype != np.float32:
                raise ValueError(
                    f"denoising dataset file {path}: {k} must be 2-D float32, "
                    f"got {arrays[k].dtype} {arrays[k].shape}"
                )
        images[split] = [arrays[k] for k in keys]
        if not images[split]:
            raise ValueError(f"denoising dataset file {path} has no {split} images")
    train_scale = [float(s) for s in arrays["train_scale"]]
    if len(train_scale) != len(images["train"]):
        raise ValueError(f"denoising dataset file {path}: train_scale does not match the training images")
    return DenoisingData(
        train=images["train"], val=images["val"], test=images["test"], names=names,
        config=config, data_hash=content_hash(arrays), train_scale=train_scale,
    )
