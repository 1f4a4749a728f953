"""BM3D and blind NLM on a tiny synthetic image; NLM tuning and its grid-edge guard."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from l2o.tasks.denoising import denoisers as classical
from l2o.tasks.denoising.metrics import psnr

pytest.importorskip("skimage.restoration", reason="the NLM baseline needs scikit-image")
pytest.importorskip("pywt", reason="skimage's estimate_sigma needs PyWavelets")

SIGMA = 35.0


def smooth_image(n: int = 48) -> np.ndarray:
    """A gradient with a bright disc, in [0, 1]."""
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1)
    image = 0.2 + 0.5 * xx + 0.1 * yy
    image[(xx - 0.55) ** 2 + (yy - 0.45) ** 2 < 0.25**2] = 0.9
    return image


def add_noise(clean: np.ndarray, seed: int) -> np.ndarray:
    return clean + SIGMA / 255 * np.random.default_rng(seed).standard_normal(clean.shape)


def db(estimate: np.ndarray, clean: np.ndarray) -> float:
    return psnr(torch.from_numpy(estimate)[None], torch.from_numpy(clean)[None]).item()


@pytest.fixture(scope="module")
def pair():
    clean = smooth_image()
    return add_noise(clean, seed=0), clean


def test_bm3d_raises_psnr(pair):
    pytest.importorskip("bm3d", reason="optional non-commercial package: pip install bm3d")
    noisy, clean = pair
    assert classical.bm3d_available()
    estimate = classical.denoise_bm3d(noisy, SIGMA)
    assert estimate.shape == clean.shape and estimate.dtype == np.float64
    assert db(estimate, clean) > db(noisy, clean) + 8.0  # about 17.5 -> 29.8 dB


def test_bm3d_missing_gives_actionable_error(pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` fail
    assert not classical.bm3d_available()
    with pytest.raises(ImportError, match="pip install bm3d") as info:
        classical.denoise_bm3d(pair[0], SIGMA)
    assert "non-commercial" in str(info.value)


def test_nlm_is_blind_and_raises_psnr(pair):
    noisy, clean = pair
    estimate, sigma_est = classical.denoise_nlm(noisy)
    assert estimate.shape == clean.shape and estimate.dtype == np.float64
    assert sigma_est == pytest.approx(SIGMA, rel=0.1)  # 0-255 scale
    assert db(estimate, clean) > db(noisy, clean) + 8.0  # about 17.5 -> 29.9 dB


def test_tune_nlm_picks_interior_optimum():
    clean = [smooth_image(), smooth_image()[::-1].copy()]
    noisy = [add_noise(x, seed) for seed, x in enumerate(clean, start=1)]
    best, scores = classical.tune_nlm(noisy, clean, [1.6, 0.4, 0.8])
    assert best == 0.8
    assert list(scores) == [0.4, 0.8, 1.6] and scores[0.8] == max(scores.values())


def test_tune_nlm_refuses_an_optimum_on_the_grid_edge(pair):
    noisy, clean = pair
    with pytest.raises(ValueError, match=r"upper edge.*classical\.nlm_h_factors"):
        classical.tune_nlm([noisy], [clean], [0.05, 0.1, 0.15])  # optimum near 0.8 at sigma 35


def test_tune_nlm_allows_edge_for_short_grids_and_checks_inputs(pair):
    noisy, clean = pair
    best, scores = classical.tune_nlm([noisy], [clean], [0.1, 0.8])
    assert best == 0.8 and len(scores) == 2
    with pytest.raises(ValueError, match="as many clean"):
        classical.tune_nlm([noisy], [], [0.8])
    with pytest.raises(ValueError, match="distinct positive"):
        classical.tune_nlm([noisy], [clean], [0.8, 0.8])


def test_timed_returns_result_and_seconds():
    result, seconds = classical.timed(sorted, [3, 1], reverse=True)
    assert result == [3, 1] and 0.0 <= seconds < 1.0
