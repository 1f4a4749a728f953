"""DnCNN-stop's stop policies: ``fast`` (the default) and ``paper`` (the released CNN).

* ``fast``: an MLP on what the trunk computes anyway -- its features ``f_t`` averaged over the
  image, one value per channel (:meth:`l2o.models.dncnn.DnCNN.summarize`) -- plus two numbers
  per image computed once from the noisy input (a noise-level estimate, :func:`noise_sigma_estimate`)
  and the step position. Per candidate it costs a mean over ``f_t`` and a tiny MLP: a few per cent
  of a trunk step, and no head is read out except for the images that stop.
* ``paper``: the released code's small CNN on ``[noisy, noise estimate_t, estimate_t]``
  (:class:`~l2o.models.conv_policy.ConvStopPolicy`), full resolution, shared over the steps:
  it needs every candidate's head output for every image, and its small-channel convolutions
  cost a sizeable part of a trunk step. The fidelity option.

Neither sees the clean image or the true sigma.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.models.stop_policy import StopPolicy
from l2o.tasks.base import StopLogits

#: median(|N(0, 1)|): turns a median absolute deviation into a standard deviation
MAD_TO_STD = 0.6744897501960817
POLICY_KINDS = ("fast", "paper")


def noise_sigma_estimate(noisy: Tensor) -> Tensor:
    """A robust estimate of the noise's standard deviation of each image, (B, 1, H, W) -> (B,).

    The diagonal Haar detail ``d = (x_00 - x_01 - x_10 + x_11) / 2`` of each 2 x 2 block has the
    variance of the pixel noise for white noise and is small on smooth image content; its median
    absolute value divided by 0.6745 (Donoho's MAD estimator) discounts the edges. On the image's
    own [0, 1] scale.

    >>> g = torch.Generator().manual_seed(0)
    >>> noisy = 0.5 + 0.1 * torch.randn(1, 1, 128, 128, generator=g)
    >>> round(float(noise_sigma_estimate(noisy)), 2)
    0.1
    """
    H, W = noisy.shape[-2] // 2 * 2, noisy.shape[-1] // 2 * 2
    x = noisy[..., :H, :W]
    d = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.5
    return d.flatten(1).abs().median(dim=1).values / MAD_TO_STD


def fast_in_features(channels: int) -> int:
    """Inputs of the fast policy: C pooled features, log sigma-hat and sigma-hat x 10, t/T and 1 - t/T."""
    return int(channels) + 4


class PooledLogits(StopLogits):
    """The fast policy's logits: ``MLP([mean f_t (C), log s, 10 s, t/T, 1 - t/T])`` with ``s`` the
    image's noise-level estimate (the context, computed once per image)."""

    reads_states = False
    reads_summaries = True

    def __init__(self, policy: StopPolicy):
        self.policy = policy

    def context(self, batch):
        """``(log s, 10 s)`` per image, (B, 2)."""
        s = noise_sigma_estimate(batch["noisy"]).clamp_min(1e-4)
        return torch.stack([s.log(), 10.0 * s], dim=1)

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        if summaries is None:
            raise ValueError("the fast denoising policy reads the DnCNN's pooled features: pass summaries")
        K, B, _ = summaries.shape
        pos = (steps.to(summaries) / num_steps).view(K, 1, 1).expand(K, B, 1)
        feats = torch.cat([summaries, ctx.to(summaries).unsqueeze(0).expand(K, B, 2), pos, 1.0 - pos], dim=2)
        return self.policy(feats)


def check_kind(kind: str) -> str:
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy.kind must be one of {list(POLICY_KINDS)}, got {kind!r}")
    return kind

