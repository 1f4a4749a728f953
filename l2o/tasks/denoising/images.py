"""Reading gray images: the photographs inside the scikit-image wheel (a fixed named
split standing in for BSD400 / Set12 / BSD68) and user folders, with errors that name
the file or the config key; centre crops and rescaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# The natural images shipped inside the scikit-image wheel (skimage/data/), as a
# fixed split standing in for BSD400 (train) / Set12 (val) / BSD68 (test).
# Colour photos are converted to gray with skimage.color.rgb2gray (Rec. 709 luma).
# "test": six classic photos, centre-cropped to data.crop for evaluation.
# "val": two photos of other content (a launch scene; handwriting on paper).
# "train": everything else that is a photograph: the three textures, microscopy
#   (ihc, cell), fundus (retina), astronomy (hubble_deep_field), a motion-blurred
#   clock, a scanned page, and the motorcycle stereo pair (kept together: the two
#   views are nearly the same picture, so splitting them would leak).
# Left out on purpose: chessboard_GRAY/RGB, color (colour wheel), logo, phantom
#   (synthetic, piecewise constant); horse (binary silhouette); microaneurysms
#   (a 102 x 102, low-contrast crop of a fundus photo, nothing retina does not
#   already give); lfw_subset (25 x 25 faces), the multipage tifs and the gif
#   (not single natural photos).
BUILTIN_IMAGES: dict[str, list[str]] = {
    "train": [
        "brick", "grass", "gravel", "cell", "clock_motion", "hubble_deep_field", "ihc",
        "motorcycle_left", "motorcycle_right", "page", "retina",
    ],
    "val": ["rocket", "text"],
    "test": ["camera", "astronaut", "coffee", "chelsea", "coins", "moon"],
}

# -- reading images -------------------------------------------------------------------


def to_gray(image: np.ndarray, name: str, convert: bool) -> np.ndarray:
    """An image as a 2-D float32 array in [0, 1].

    Rule: (H, W) stays; (H, W, 1) is squeezed; a trailing alpha channel
    ((H, W, 2) or (H, W, 4)) is dropped if fully opaque and refused otherwise;
    (H, W, 3) with three identical channels is gray; any other (H, W, 3) is
    colour: converted with ``rgb2gray`` if ``convert``, else refused.

    :param ndarray image: as read, any dtype ``img_as_float32`` accepts.
    :param str name: the file or image name used in error messages.
    :param bool convert: convert colour images instead of refusing them.
    :return: (H, W) float32.
    """
    from skimage.util import img_as_float32

    try:
        img = img_as_float32(np.asarray(image))
    except (TypeError, ValueError) as err:
        raise ValueError(f"image {name}: cannot convert dtype {np.asarray(image).dtype} to float: {err}") from err
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] in (2, 4):
        if not np.all(img[:, :, -1] >= 1.0):
            raise ValueError(f"image {name} has transparent pixels (alpha channel); store it without alpha")
        img = img[:, :, :-1] if img.shape[2] == 4 else img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        if np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2]):
            img = img[:, :, 0]
        elif convert:
            from skimage.color import rgb2gray

            img = rgb2gray(img)
        else:
            raise ValueError(
                f"image {name} is a colour image; set data.color: convert to convert it to gray, "
                "or give grayscale images"
            )
    if img.ndim != 2:
        raise ValueError(f"image {name} has shape {img.shape}; expected (H, W) or (H, W, 1|2|3|4)")
    if min(img.shape) < 1:
        raise ValueError(f"image {name} is empty (shape {img.shape})")
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def read_image(path: Path, convert: bool) -> np.ndarray:
    """Read one image file as (H, W) float32 in [0, 1] (see :func:`to_gray`)."""
    from skimage.io import imread

    path = Path(path)
    try:
        image = imread(path)
    except Exception as err:  # the readers raise many types; all mean "not an image"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read image file {path} (not a readable image: {reason})") from err
    return to_gray(image, str(path), convert)


def list_images(folder, key: str) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (no subfolders).

    :param str key: the config key naming the folder, used in error messages.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{key}: image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def check_folder(folder, key: str, expect: dict[str, int] | None = None) -> list[Path]:
    """The folder's images (:func:`list_images`), checked before any is read: against the folder's
    ``SHA256SUMS`` when it has one (written by ``l2o fetch-data``: a missing, altered or unlisted
    file is named), and against ``expect[split]`` images (``data.expect_images``) when given.

    :param str key: the config key naming the folder, ``data.<split>_dir``.
    """
    from l2o.checksums import check_folder as check_sums

    files = list_images(folder, key)
    check_sums(Path(folder), key, IMAGE_SUFFIXES)
    split = key.removeprefix("data.").removesuffix("_dir")
    if expect and split in expect and len(files) != expect[split]:
        few = "only " if len(files) < expect[split] else ""
        raise ValueError(f"{key}: image folder {folder} holds {few}{len(files)} images, data.expect_images.{split} "
                         f"says {expect[split]} (a partial copy? `l2o fetch-data` lays out the standard sets)")
    return files


def builtin_folder() -> Path:
    """The folder of the images shipped inside the scikit-image wheel."""
    import skimage

    return Path(skimage.__file__).parent / "data"


def load_builtin(split: str) -> tuple[list[str], list[np.ndarray]]:
    """Names and (H, W) float32 images of one split of :data:`BUILTIN_IMAGES` (no download)."""
    folder = builtin_folder()
    names, images = [], []
    for name in BUILTIN_IMAGES[split]:
        candidates = [folder / f"{name}{ext}" for ext in (".png", ".jpg")]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(f"builtin image {name!r} not found in {folder} (scikit-image install?)")
        images.append(read_image(found[0], convert=True))
        names.append(name)
    return names, images


def load_folder(folder, key: str, convert: bool) -> tuple[list[str], list[np.ndarray]]:
    """File names and (H, W) float32 images of one user folder."""
    files = list_images(folder, key)
    return [p.name for p in files], [read_image(p, convert) for p in files]


# -- preparing images -----------------------------------------------------------------


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """The central at most ``size`` x ``size`` part of ``image`` (H, W); all of it if None.

    >>> centre_crop(np.arange(20.0).reshape(4, 5), 2)
    array([[ 6.,  7.],
           [11., 12.]])
    """
    if size is None:
        return image
    H, W = image.shape
    h, w = min(H, size), min(W, size)
    top, left = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(image[top:top + h, left:left + w])


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` (H, W) rescaled by ``scale`` (bilinear, anti-aliased), float32 in [0, 1].

    The output is (round(H scale), round(W scale)); scale 1 returns a copy.
    """
    if scale == 1.0:
        return image.astype(np.float32, copy=True)
    from skimage.transform import rescale

    out = rescale(image.astype(np.float64), scale, order=1, anti_aliasing=True, mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
