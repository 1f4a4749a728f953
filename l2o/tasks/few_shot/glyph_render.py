"""Rendering the glyph set's images (:mod:`l2o.tasks.few_shot.glyphs`): the fonts, one clean
bitmap per (character, font) with PIL's FreeType at ``SUPERSAMPLE`` x the output size, cropped
to its ink and centred, and the jitter of an instance (stroke width, affine warp), averaged down.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SUPERSAMPLE = 4  # render at 4x the output size, then average down
EM_FRACTION = 0.9  # font size (em) as a fraction of the render canvas side
FIT_FRACTION = 0.85  # glyphs larger than this fraction of the canvas are shrunk to fit
INK_LEVEL = 32  # a pixel > this (0-255) is ink when cropping


# -- fonts --------------------------------------------------------------------------------


def list_fonts(font_dir: str | None = None) -> list[Path]:
    """The font files used, sorted by name.

    Default: matplotlib's DejaVu text faces (not the two tiny "Display" subsets)
    and STIXGeneral faces; the TeX (cm*), STIXNonUni/STIXSiz* (private-use
    symbols) and LastResort (boxes) fonts are left out. With ``font_dir``: every
    .ttf/.otf file in it.
    """
    if font_dir is None:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        fonts = sorted(
            p for p in folder.glob("*.ttf")
            if (p.name.startswith("DejaVu") and "Display" not in p.name) or p.name.startswith("STIXGeneral")
        )
        key = f"matplotlib font folder {folder}"
    else:
        folder = Path(font_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"data.font_dir: font folder {folder} does not exist")
        fonts = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".ttf", ".otf"))
        key = f"data.font_dir: font folder {folder}"
    if not fonts:
        raise ValueError(f"{key} holds no usable .ttf/.otf fonts")
    return fonts


def font_coverage(path: Path) -> set[int]:
    """The code points in the font's character map."""
    from matplotlib.ft2font import FT2Font

    try:
        return set(FT2Font(str(path)).get_charmap())
    except Exception as err:  # FreeType errors: not a font
        raise ValueError(f"font file {path} cannot be read: {err}") from err


@functools.lru_cache(maxsize=64)
def _load_font(path: str, size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, size)
    except OSError as err:
        raise ValueError(f"font file {path} cannot be read: {err}") from err


class _Renderer:
    """Renders (code point, font) pairs to ink-cropped uint8 bitmaps at the supersampled size."""

    def __init__(self, fonts: list[Path], canvas: int):
        self.canvas = canvas
        self.fonts = [_load_font(str(p), max(8, round(EM_FRACTION * canvas))) for p in fonts]
        self._notdef: dict[int, np.ndarray | None] = {}

    def raw(self, cp: int, f: int) -> np.ndarray | None:
        """The ink crop of ``chr(cp)`` in font ``f`` (uint8), shrunk to fit; None if blank."""
        from PIL import Image, ImageDraw

        font = self.fonts[f]
        left, top, right, bottom = font.getbbox(chr(cp))
        w, h = max(1, right - left + 4), max(1, bottom - top + 4)
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).text((2 - left, 2 - top), chr(cp), fill=255, font=font)
        a = np.asarray(img)
        rows, cols = np.nonzero(a > INK_LEVEL)
        if rows.size == 0:
            return None
        crop = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        limit = FIT_FRACTION * self.canvas
        if max(crop.shape) > limit:
            s = limit / max(crop.shape)
            size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
            crop = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
        return np.ascontiguousarray(crop)

    def notdef(self, f: int, coverage: set[int]) -> np.ndarray | None:
        """The font's missing-glyph rendering (a box, or blank)."""
        if f not in self._notdef:
            missing = next((cp for cp in range(0xE000, 0xF8FF) if cp not in coverage), 0x10FFFD)
            self._notdef[f] = self.raw(missing, f)
        return self._notdef[f]


def _is_box(crop: np.ndarray, notdef: np.ndarray | None) -> bool:
    if notdef is None or crop.shape != notdef.shape:
        return False
    return float(np.abs(crop.astype(np.float32) - notdef).mean()) < 0.02 * 255


def _canvas(crops: list[np.ndarray], R: int) -> Tensor:
    """Crops centred on R x R canvases: (n, 1, R, R) float32 in [0, 1]."""
    out = np.zeros((len(crops), 1, R, R), dtype=np.float32)
    for i, c in enumerate(crops):
        h, w = c.shape
        y, x = (R - h) // 2, (R - w) // 2
        out[i, 0, y : y + h, x : x + w] = c
    return torch.from_numpy(out).div_(255.0)


def clean_images(crops: list[np.ndarray], size: int) -> np.ndarray:
    """Unjittered renderings at the output size: (n, size, size) float32 in [0, 1]."""
    canvas = _canvas(crops, SUPERSAMPLE * size).numpy()
    return canvas.reshape(len(crops), size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4))


def render_clean(cp: int, font: Path, size: int = 28) -> np.ndarray | None:
    """One character in one font, unjittered, (size, size) float32 in [0, 1]; None if blank."""
    crop = _Renderer([Path(font)], SUPERSAMPLE * size).raw(cp, 0)
    return None if crop is None else clean_images([crop], size)[0]


def render_notdef(font: Path, size: int = 28) -> np.ndarray | None:
    """The font's missing-glyph rendering, as :func:`render_clean`; None if blank."""
    r = _Renderer([Path(font)], SUPERSAMPLE * size)
    crop = r.notdef(0, font_coverage(Path(font)))
    return None if crop is None else clean_images([crop], size)[0]


def _stroke(crop: np.ndarray, change: int) -> np.ndarray:
    """Thicken (+1: 3x3 max filter), keep (0) or thin (-1: 3x3 min filter) a uint8 crop."""
    if change == 0:
        return crop
    from PIL import Image, ImageFilter

    if change > 0:
        return np.asarray(Image.fromarray(np.pad(crop, 1)).filter(ImageFilter.MaxFilter(3)))
    return np.asarray(Image.fromarray(crop).filter(ImageFilter.MinFilter(3)))


def _warp(canvas: Tensor, theta: Tensor) -> Tensor:
    """Affine warp of (n, 1, R, R) canvases, then 4x average: (n, size, size).

    The sampling grid is ``theta`` applied to pixel centres in normalised
    coordinates (what ``affine_grid(align_corners=False)`` builds, computed
    with one batched matmul: several times faster on CPU).
    """
    n, _, R, _ = canvas.shape
    ticks = (torch.arange(R, dtype=torch.float32) * 2 + 1) / R - 1
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    base = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (R^2, 2)
    grid = torch.baddbmm(theta[:, None, :, 2], base.expand(n, -1, -1), theta[:, :, :2].transpose(1, 2))
    grid = grid.view(n, R, R, 2)
    warped = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(warped, SUPERSAMPLE)[:, 0]
