"""The fixed noise of the denoising evaluation sets: each validation / test image at every noise
level, with noise seeded per (data seed, split, image, σ) so that every run and every method
sees the same noisy images (not clipped, as DnCNN)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from l2o.tasks.denoising.data import SPLIT_CODES, DenoisingData, positive_list


def noisy_image(clean: np.ndarray, sigma: float, seed: int, split: str, index: int) -> np.ndarray:
    """``clean + (sigma / 255) N(0, 1)``, not clipped, float32; seeded per image and sigma.

    The noise is drawn by ``np.random.default_rng([seed, split code, index,
    round(1000 sigma)])``, so it differs between images, splits and noise
    levels and is the same on every call.

    :param ndarray clean: (H, W) image in [0, 1].
    :param float sigma: noise standard deviation on the 0-255 scale.
    :param int seed: ``data.seed``.
    :param str split: "train", "val" or "test".
    :param int index: the image's index in its split.
    :return: (H, W) float32.

    >>> x = np.zeros((2, 2), dtype=np.float32)
    >>> bool(np.array_equal(noisy_image(x, 25, 0, "val", 1), noisy_image(x, 25, 0, "val", 1)))
    True
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_CODES)}")
    if not sigma >= 0 or int(index) < 0 or int(seed) < 0:
        raise ValueError(f"noisy_image needs sigma >= 0, index >= 0 and seed >= 0; got {sigma}, {index}, {seed}")
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index), int(round(1000 * float(sigma)))])
    noise = rng.standard_normal(np.shape(clean), dtype=np.float32)
    return (np.asarray(clean, dtype=np.float32) + np.float32(sigma / 255.0) * noise).astype(np.float32)


def eval_set(data: DenoisingData, split: str, sigmas: list[float] | None = None) -> list[dict[str, Tensor]]:
    """One batch per image of ``split``, holding that image at every noise level.

    :param DenoisingData data: the loaded dataset.
    :param str split: "val" or "test".
    :param sigmas: noise levels (0-255 scale); default the split's list in the config.
    :return: per image ``{"noisy": (S, 1, H, W), "clean": (S, 1, H, W),
        "sigma": (S,) float32, "image": (S,) long}`` with S = len(sigmas), in
        the order of ``sigmas``.
    """
    if split not in ("val", "test"):
        raise ValueError(f"eval_set: split must be 'val' or 'test', got {split!r}")
    key = f"data.{split}_sigmas" if sigmas is None else "sigmas"
    levels = positive_list(data.config.split_sigmas(split) if sigmas is None else sigmas, key, "noise level")
    batches = []
    for i, clean in enumerate(getattr(data, split)):
        noisy = np.stack([noisy_image(clean, s, data.config.seed, split, i) for s in levels])
        S = len(levels)
        batches.append({
            "noisy": torch.from_numpy(noisy).unsqueeze(1),
            "clean": torch.from_numpy(np.repeat(clean[None, None], S, axis=0)),
            "sigma": torch.tensor(levels, dtype=torch.float32),
            "image": torch.full((S,), i, dtype=torch.long),
        })
    return batches

