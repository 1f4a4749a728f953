"""PSNR and SSIM against scikit-image, shapes, clamping and the identity case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2o.tasks.denoising.metrics import psnr, ssim, ssim_per_step

skm = pytest.importorskip("skimage.metrics", reason="scikit-image is needed to compare against")


def test_psnr_equals_skimage_on_random_images():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 1, 20, 24))
    est = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0.0, 1.0)
    got = psnr(torch.from_numpy(est), torch.from_numpy(clean))
    want = [skm.peak_signal_noise_ratio(c, e, data_range=1) for c, e in zip(clean, est)]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10)


def test_psnr_keeps_leading_dims_broadcasts_and_accumulates_in_float64():
    rng = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 8, 8, generator=rng)  # (B, c, H, W)
    est = (clean + 0.05 * torch.randn(5, 4, 1, 8, 8, generator=rng)).float()  # (T, B, c, H, W)
    got = psnr(est, clean)
    assert got.shape == (5, 4) and got.dtype == torch.float64
    np.testing.assert_allclose(got[2, 1].item(), psnr(est[2, 1], clean[1]).item(), rtol=1e-12)


def test_psnr_clamps_the_estimate_not_the_clean_image():
    clean = torch.full((1, 4, 4), 0.9, dtype=torch.float64)
    assert psnr(clean + 5.0, clean).item() == pytest.approx(20.0)  # clamped to 1: error 0.1
    assert psnr(clean - 5.0, clean).item() == pytest.approx(-20 * np.log10(0.9))
    assert torch.isinf(psnr(clean, clean)).all()


def test_psnr_rejects_images_without_channel_dim():
    with pytest.raises(ValueError, match="c, H, W"):
        psnr(torch.zeros(4, 4), torch.zeros(4, 4))


def test_ssim_equals_skimage_wang_settings():
    rng = np.random.default_rng(1)
    clean = rng.random((32, 40))
    est = clean + 0.1 * rng.standard_normal(clean.shape)
    wang = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    want = skm.structural_similarity(np.clip(est, 0, 1), clean, data_range=1.0, **wang)
    assert ssim(est, clean) == pytest.approx(want, abs=1e-12)
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-12)


def test_ssim_per_step_matches_single_calls():
    rng = np.random.default_rng(2)
    clean = rng.random((24, 24))
    estimates = clean[None] + np.array([0.3, 0.1, 0.0])[:, None, None] * rng.standard_normal((3, 24, 24))
    got = ssim_per_step(estimates, clean)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [ssim(e, clean) for e in estimates], rtol=0, atol=1e-12)
    assert got[-1] == pytest.approx(1.0) and got[0] < got[1] < got[2]
    with pytest.raises(ValueError, match="T, H, W"):
        ssim_per_step(estimates[0], clean)
