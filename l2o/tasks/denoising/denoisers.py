"""Classical denoisers of Table 6 (BM3D, non-local means) for one grey image at a time.

Conventions: images are float ``(H, W)`` arrays on the ``[0, 1]`` scale (the
noisy input may leave it: Gaussian noise is not clipped); noise levels
``sigma`` are on the ``0-255`` scale, as in the paper. Outputs are not
clipped; :func:`l2o.tasks.denoising.metrics.psnr` clamps when scoring.

Two baselines, both optional dependencies imported on first use:

* **BM3D** (``pip install bm3d``) is given the *true* noise level, so it is a
  non-blind reference. Its licence is non-commercial, so l2o keeps it an
  optional extra; :func:`bm3d_available` lets the caller skip it.
* **Non-local means** from scikit-image (``pip install scikit-image PyWavelets``)
  is the blind classical baseline: it is widely used and standard, and
  ``skimage.restoration.estimate_sigma`` (wavelet median absolute deviation)
  gives it its own noise level, so it sees exactly what the blind learned
  models see. Its one free parameter, the filter strength ``h = h_factor *
  sigma_est``, is tuned on validation images by :func:`tune_nlm`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from l2o.tasks.denoising.metrics import psnr

#: Name of the config key that holds the NLM grid, quoted in :func:`tune_nlm`'s error.
NLM_GRID_KEY = "classical.nlm_h_factors"


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package can be imported (imports it if so)."""
    try:
        _import_bm3d()
    except ImportError:
        return False
    return True


def denoise_bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (both stages, default profile) given the true noise level.

    :param np.ndarray noisy: ``(H, W)`` float image on the ``[0, 1]`` scale.
    :param float sigma: true noise standard deviation on the ``0-255`` scale;
        passed as ``sigma_psd = sigma / 255``.
    :return: ``(H, W)`` float64 estimate, not clipped.
    :raises ImportError: if the optional ``bm3d`` package is missing, with the fix.
    """
    bm3d = _import_bm3d()
    noisy = _as_image(noisy)
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma / 255.0), dtype=np.float64)


def denoise_nlm(
    noisy: np.ndarray, h_factor: float = 0.8, patch_size: int = 5, patch_distance: int = 6
) -> tuple[np.ndarray, float]:
    """Blind non-local means: estimate sigma from the image, then filter with ``h = h_factor * sigma_est``.

    Calls ``denoise_nl_means(noisy, h=h_factor * s, sigma=s, fast_mode=True,
    patch_size, patch_distance)`` with ``s = estimate_sigma(noisy)``; with
    ``sigma`` given, skimage subtracts the expected noise contribution
    ``2 s^2`` from patch distances. The defaults are skimage's documented
    example (5x5 patches, 13x13 search window, ``h = 0.8 s``).

    :param np.ndarray noisy: ``(H, W)`` float image on the ``[0, 1]`` scale.
    :param float h_factor: filter strength relative to the estimated sigma.
    :param int patch_size: side of the compared patches.
    :param int patch_distance: search radius (window side ``2 d + 1``).
    :return: ``(estimate (H, W) float64, sigma_est)`` with ``sigma_est`` on the
        ``0-255`` scale, comparable with the true noise level.
    :raises ImportError: if scikit-image or PyWavelets is missing, with the fix.
    """
    noisy = _as_image(noisy)
    sigma_est = _estimate_sigma(noisy)
    estimate = _nlm(noisy, sigma_est, h_factor, patch_size, patch_distance)
    return estimate, sigma_est * 255.0


def tune_nlm(
    noisy_images: list[np.ndarray],
    clean_images: list[np.ndarray],
    h_factors: list[float],
    *,
    patch_size: int = 5,
    patch_distance: int = 6,
) -> tuple[float, dict[float, float]]:
    """Pick the NLM ``h_factor`` with the best mean PSNR over validation images.

    The caller must pass validation images only. Each image's sigma is estimated
    once and reused for every factor. A tuned baseline must not sit on its
    grid's edge unnoticed: with at least three factors, an optimum at the
    smallest or largest one raises.

    :param list noisy_images: ``N`` noisy ``(H, W)`` images, ``[0, 1]`` scale.
    :param list clean_images: the ``N`` matching clean images.
    :param list h_factors: the grid (distinct positive values, any order).
    :return: ``(best_factor, {factor: mean PSNR in dB})``, factors in ascending order.
    :raises ValueError: on mismatched or empty inputs, or if the best factor is
        on the edge of a grid of at least three values (extend the grid).
    """
    if len(noisy_images) != len(clean_images) or not noisy_images:
        raise ValueError(
            f"tune_nlm needs as many clean as noisy images (at least one), "
            f"got {len(noisy_images)} noisy and {len(clean_images)} clean"
        )
    grid = sorted(float(h) for h in h_factors)
    if not grid or len(set(grid)) != len(grid) or grid[0] <= 0:
        raise ValueError(f"{NLM_GRID_KEY} must be distinct positive values, got {list(h_factors)}")
    pairs = [(_as_image(y), _as_image(x)) for y, x in zip(noisy_images, clean_images)]
    sigmas = [_estimate_sigma(y) for y, _ in pairs]
    mean_psnr = {}
    for h in grid:
        scores = [
            _psnr_2d(_nlm(y, s, h, patch_size, patch_distance), x) for (y, x), s in zip(pairs, sigmas)
        ]
        mean_psnr[h] = float(np.mean(scores))
    best = max(grid, key=mean_psnr.__getitem__)
    if len(grid) >= 3 and best in (grid[0], grid[-1]):
        edge = "lower" if best == grid[0] else "upper"
        raise ValueError(
            f"the best NLM h_factor {best} is on the {edge} edge of the grid {grid} "
            f"(mean validation PSNR {mean_psnr}); extend {NLM_GRID_KEY} past it"
        )
    return best, mean_psnr


def timed(fn: Callable[..., Any], *args, **kw) -> tuple[Any, float]:
    """Call ``fn(*args, **kw)``; return ``(result, wall-clock seconds)`` (``time.perf_counter``).

    >>> result, seconds = timed(sum, [1, 2, 3])
    >>> result, seconds >= 0.0
    (6, True)
    """
    start = time.perf_counter()
    result = fn(*args, **kw)
    return result, time.perf_counter() - start


def _psnr_2d(estimate: np.ndarray, clean: np.ndarray) -> float:
    """:func:`psnr` of two ``(H, W)`` numpy images (estimate clamped to ``[0, 1]``)."""
    return float(psnr(torch.from_numpy(estimate)[None], torch.from_numpy(clean)[None]))


def _as_image(image: np.ndarray) -> np.ndarray:
    """Check one ``(H, W)`` grey image and cast it to float64."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected one grey (H, W) image, got shape {image.shape}")
    return image.astype(np.float64, copy=False)


def _nlm(
    noisy: np.ndarray, sigma_est: float, h_factor: float, patch_size: int, patch_distance: int
) -> np.ndarray:
    """skimage NLM (fast mode) with ``h = h_factor * sigma_est``; ``sigma_est`` on the ``[0, 1]`` scale."""
    from skimage.restoration import denoise_nl_means  # _estimate_sigma ran first and checked the import

    return denoise_nl_means(
        noisy,
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h_factor * sigma_est,
        sigma=sigma_est,
        fast_mode=True,
    ).astype(np.float64, copy=False)


def _estimate_sigma(noisy: np.ndarray) -> float:
    """skimage's wavelet noise estimate on the ``[0, 1]`` scale, with an actionable ImportError."""
    fix = "the blind NLM baseline needs scikit-image and PyWavelets: pip install scikit-image PyWavelets"
    try:
        from skimage.restoration import estimate_sigma
    except ImportError as err:
        raise ImportError(fix) from err
    try:
        return float(estimate_sigma(noisy))
    except ImportError as err:  # PyWavelets is imported inside estimate_sigma
        raise ImportError(fix) from err


def _import_bm3d():
    """The ``bm3d`` module, or an ImportError that says how to install it and why it is optional."""
    try:
        import bm3d
    except (ImportError, OSError) as err:  # OSError: bm4d's bundled shared library failed to load
        raise ImportError(
            "the BM3D baseline needs the optional 'bm3d' package: pip install bm3d "
            "(it is free for non-commercial use only, so l2o keeps it an optional extra)"
        ) from err
    return bm3d
