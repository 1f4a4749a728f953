"""Random noisy training patches, drawn as if every patch of every (rescaled)
training image had been cut, with flips/rotations and a noise level per patch."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from l2o.tasks.denoising.data import SIGMA_MODES, DenoisingData, positive_list

def dihedral_steps(size: int) -> Tensor:
    """Where pixel (i, j) of a transformed ``size`` x ``size`` patch comes from, as affine maps.

    Transform ``k`` (:func:`dihedral`) maps output pixel (i, j) to source pixel
    ``(r0 + ri i + rj j, c0 + ci i + cj j)``.

    :return: (8, 6) long, rows ``[r0, ri, rj, c0, ci, cj]``.

    >>> dihedral_steps(50)[0].tolist()
    [0, 1, 0, 0, 0, 1]
    """
    r = torch.arange(size).view(size, 1).expand(size, size)
    c = torch.arange(size).view(1, size).expand(size, size)
    steps = []
    for k in range(8):
        rows, cols = dihedral(r, k), dihedral(c, k)
        steps.append([
            rows[0, 0], rows[1, 0] - rows[0, 0], rows[0, 1] - rows[0, 0],
            cols[0, 0], cols[1, 0] - cols[0, 0], cols[0, 1] - cols[0, 0],
        ])
    return torch.tensor(steps, dtype=torch.long)


def dihedral(x: Tensor, k: int) -> Tensor:
    """Dihedral transform ``k`` (0..7) of the last two (square) dimensions of ``x``.

    >>> dihedral(torch.tensor([[1, 2], [3, 4]]), 1).tolist()
    [[2, 4], [1, 3]]
    """
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


class PatchSampler:
    """Random noisy training patches, as if every patch of every image had been cut.

    A patch is a uniformly random (image, position) pair among all positions of
    all images, so an image is chosen with probability proportional to its
    number of positions ``(H - P + 1)(W - P + 1)``; then one of the 8 dihedral
    transforms (:func:`dihedral`), a noise level (``set``: uniform over
    ``sigmas``; ``uniform``: U[0, max(sigmas)]) and fresh Gaussian noise. All
    randomness comes from the ``generator`` given to :meth:`sample`.

    :param list images: (H, W) float32 training images (each side >= patch_size).
    :param int patch_size: P.
    :param list sigmas: training noise levels, 0-255 scale.
    :param str sigma_mode: "set" or "uniform".
    """

    def __init__(self, images: list[np.ndarray], patch_size: int, sigmas: list[float], sigma_mode: str):
        if not images:
            raise ValueError("PatchSampler needs at least one training image")
        if sigma_mode not in SIGMA_MODES:
            raise ValueError(f"data.train_sigma_mode must be one of {list(SIGMA_MODES)}, got {sigma_mode!r}")
        self.sigmas = torch.tensor(positive_list(sigmas, "data.train_sigmas", "noise level"), dtype=torch.float32)
        self.sigma_mode = sigma_mode
        P = self.patch_size = int(patch_size)
        shapes = []
        for i, image in enumerate(images):
            if image.ndim != 2 or min(image.shape) < P:
                raise ValueError(f"training image {i} has shape {image.shape}; need 2-D with sides >= {P}")
            shapes.append(image.shape)
        self.heights = torch.tensor([h for h, _ in shapes], dtype=torch.long)
        self.widths = torch.tensor([w for _, w in shapes], dtype=torch.long)
        sizes = self.heights * self.widths
        self.offsets = torch.cumsum(sizes, 0) - sizes  # start of each image in the flat buffer
        counts = (self.heights - P + 1) * (self.widths - P + 1)
        self.position_ends = torch.cumsum(counts, 0)  # (N,) cumulative number of positions
        self.num_positions = int(self.position_ends[-1])
        self.pixels = torch.from_numpy(np.concatenate([np.asarray(im, np.float32).ravel() for im in images]))
        self.steps = dihedral_steps(P)  # (8, 6)

    @classmethod
    def from_data(cls, data: DenoisingData) -> PatchSampler:
        """The sampler over ``data.train`` with the config's patch size and training noise."""
        c = data.config
        return cls(data.train, c.patch_size, c.train_sigmas, c.train_sigma_mode)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A batch of noisy patches.

        :param int batch_size: B.
        :param generator: CPU ``torch.Generator``; the same state gives the same batch.
        :return: ``{"noisy": (B, 1, P, P), "clean": (B, 1, P, P), "sigma": (B,)}``,
            float32, sigma on the 0-255 scale, noise not clipped.
        """
        B, P = int(batch_size), self.patch_size
        if B < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        flat = torch.randint(self.num_positions, (B,), generator=generator)  # over all positions
        image = torch.searchsorted(self.position_ends, flat, right=True)  # (B,)
        height, width = self.heights[image], self.widths[image]  # (B,)
        local = flat - (self.position_ends[image] - (height - P + 1) * (width - P + 1))
        top, left = local // (width - P + 1), local % (width - P + 1)
        k = torch.randint(8, (B,), generator=generator)
        # flat index of output pixel (i, j) is start + step_i i + step_j j (the transforms are affine)
        r0, ri, rj, c0, ci, cj = self.steps[k].unbind(1)  # each (B,)
        start = self.offsets[image] + (top + r0) * width + left + c0
        ar = torch.arange(P)
        rows = ((ri * width + ci).view(B, 1) * ar).view(B, P, 1)
        cols = ((rj * width + cj).view(B, 1) * ar).view(B, 1, P)
        index = (start.view(B, 1, 1) + rows) + cols  # (B, P, P)
        clean = torch.take(self.pixels, index).unsqueeze(1)  # (B, 1, P, P)
        if self.sigma_mode == "set":
            sigma = self.sigmas[torch.randint(len(self.sigmas), (B,), generator=generator)]
        else:
            sigma = torch.rand(B, generator=generator) * self.sigmas.max()
        noise = torch.randn((B, 1, P, P), generator=generator)
        noisy = clean + noise * (sigma / 255.0).view(B, 1, 1, 1)
        return {"noisy": noisy, "clean": clean, "sigma": sigma}
