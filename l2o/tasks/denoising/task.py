"""The blind-denoising task: DnCNN head estimates, per-step squared error, a CNN stop policy, PSNR/SSIM.

Batches hold ``noisy`` (B, 1, H, W), ``clean`` (B, 1, H, W) (the label) and
``sigma`` (B,) (0-255 scale, never shown to the model or the policy). States
are the heads' estimates ``noisy - predicted noise`` (K, B, 1, H, W). The
per-step loss is the squared error per image, scaled to a patch: ``P^2`` times
the mean over pixels (P = ``data.patch_size``), which is the released code's
per-patch sum on training patches, and gives the oracle's beta the same
meaning on whole validation and test images. The policy sees
``[noisy, noise estimate_t, estimate_t]`` and the step position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from l2o.config import take_fields
from l2o.models.conv_policy import ConvPolicyConfig, ConvStopPolicy
from l2o.models.dncnn import DnCNN, DnCNNConfig
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
from l2o.stopping.rules import cross_fitted_index
from l2o.tasks.base import StopLogits, StoppingTask
from l2o.tasks.denoising import SPEC
from l2o.tasks.denoising.data import DenoisingDataConfig, load_dataset, write_dataset
from l2o.tasks.denoising.noise import eval_set
from l2o.tasks.denoising.patches import PatchSampler
from l2o.tasks.denoising.metrics import checkerboard_sse, psnr, psnr_of_sse, ssim_per_step
from l2o.tasks.denoising.policy import PooledLogits, check_kind, fast_in_features

#: validation patches Stage II picks the candidate heads on (:meth:`DenoisingTask.candidate_batches`)
CANDIDATE_PATCHES = 512
SHOWCASE_SIGMA = 65.0  # the picture row of the report: an unseen noise level (paper Table 6's *65)


@dataclass
class _PolicySection:
    """Config section ``policy`` of this task (``candidate_threshold`` is the stages'):
    ``kind`` ``fast`` (an MLP of ``hidden`` widths on pooled trunk features; default) or
    ``paper`` (the released CNN of ``channels`` and ``blocks``); see :mod:`l2o.tasks.denoising.policy`."""

    kind: str = "fast"
    hidden: list[int] = field(default_factory=lambda: [32, 16])
    channels: int = 32
    blocks: int = 2
    position: bool = True

    def __post_init__(self):
        check_kind(self.kind)


def condition_name(sigma: float) -> str:
    """``sigma65`` for a noise level of 65 (0-255 scale)."""
    return f"sigma{int(round(float(sigma)))}"


def showcase_sigma(sigmas: list[float]) -> float:
    """The noise level of the report's picture row: 65 when tested, else the largest.

    >>> showcase_sigma([35.0, 45.0, 55.0, 65.0, 75.0]), showcase_sigma([15.0, 25.0])
    (65.0, 25.0)
    """
    return SHOWCASE_SIGMA if SHOWCASE_SIGMA in sigmas else max(sigmas)


class DenoisingTask(StoppingTask):
    """Blind Gaussian denoising with DnCNN-stop (one network for every noise level)."""

    name = SPEC.name
    model_label = SPEC.model_label
    metric = "psnr"
    higher_is_better = True

    def __init__(self, data, data_hash: str, device: str = "cpu"):
        self.data = data
        self.data_hash = data_hash
        self.device = str(device)
        self.patch_size = int(data.config.patch_size)
        self.sampler = PatchSampler.from_data(data)
        self.channels: int | None = None  # set by build_model
        self._sets: dict[str, list[dict[str, Tensor]]] = {}

    # -- data ------------------------------------------------------------------
    @classmethod
    def prepare_data(cls, data: dict, out: Path) -> dict:
        return write_dataset(take_fields(DenoisingDataConfig, data, "config section 'data'"), out)

    @classmethod
    def load(cls, data: Path, device: str = "cpu") -> "DenoisingTask":
        dataset = load_dataset(data)
        return cls(dataset, dataset.data_hash, device)

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        return self.sampler.sample(batch_size, generator)

    def eval_batches(self, split: str) -> Iterator[dict[str, Tensor]]:
        """One batch per image, holding it at every noise level of the split."""
        if split not in self._sets:
            self._sets[split] = [{k: v.to(self.device) for k, v in b.items()} for b in eval_set(self.data, split)]
        yield from self._sets[split]

    def candidate_batches(self) -> Iterator[dict[str, Tensor]]:
        """:data:`CANDIDATE_PATCHES` noisy patches cut from the validation images at the validation noise
        levels (seeded by ``data.seed``), in batches of 128: hundreds of examples to pick candidate heads on,
        where the validation set has a handful of images."""
        c = self.data.config
        sampler = PatchSampler(self.data.val, c.patch_size, c.val_sigmas, "set")
        gen = torch.Generator().manual_seed(int(c.seed))
        for _ in range(CANDIDATE_PATCHES // 128):
            yield {k: v.to(self.device) for k, v in sampler.sample(128, gen).items()}

    def inputs_batches(self, array: np.ndarray, where: str = "inputs") -> Iterator[dict[str, Tensor]]:
        """Batches ``{"noisy": (1, 1, H, W)}`` from noisy images (N, H, W) or one (H, W) (``l2o predict``)."""
        a = np.asarray(array, dtype=np.float32)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"{where} has shape {tuple(array.shape)}; expected gray images (N, H, W) or (H, W)")
        for image in a:
            yield {"noisy": torch.from_numpy(image)[None, None].to(self.device)}

    def model_inputs(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["noisy"]

    # -- model and policy ----------------------------------------------------------
    def model_args(self, model: dict) -> dict:
        return asdict(take_fields(DnCNNConfig, model, "config section 'model'"))

    def build_model(self, model_args: dict) -> DnCNN:
        net = DnCNN(take_fields(DnCNNConfig, model_args, "model arguments")).to(self.device)
        self.channels = net.config.channels  # what the fast policy's input width depends on
        return net

    def policy_args(self, policy: dict) -> dict:
        """The policy's constructor arguments with its ``kind``: ``fast`` needs the model's channels
        (build the model first, as every stage does)."""
        section = take_fields(_PolicySection, policy, "config section 'policy'")
        if section.kind == "paper":
            return {"kind": "paper", **asdict(ConvPolicyConfig(in_channels=3, channels=section.channels,
                                                               blocks=section.blocks, position=section.position))}
        if self.channels is None:
            raise RuntimeError("build the model before the fast policy: it reads the model's channels")
        return {"kind": "fast", **asdict(StopPolicyConfig(fast_in_features(self.channels), list(section.hidden)))}

    def check_policy(self, policy: dict) -> None:
        take_fields(_PolicySection, policy, "config section 'policy'")

    def build_policy(self, policy_args: dict):
        args = dict(policy_args)
        kind = check_kind(args.pop("kind", "paper"))  # checkpoints from before kinds hold the CNN
        if kind == "paper":
            return ConvStopPolicy(take_fields(ConvPolicyConfig, args, "policy arguments")).to(self.device)
        policy = StopPolicy(take_fields(StopPolicyConfig, args, "policy arguments")).to(self.device)
        policy.kind = "fast"  # describe() keeps it in checkpoints
        return policy

    # -- losses, policy input, metrics ---------------------------------------------
    def step_losses(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """``P^2 * mean((x_t - clean)^2)`` per image: states (K, B, 1, H, W) -> (B, K)."""
        err = (states - batch["clean"]).pow(2).mean(dim=(-3, -2, -1))  # (K, B)
        return (err * float(self.patch_size**2)).T

    def policy_features(self, batch, states, steps, num_steps):
        """``([noisy, noise estimate_t, estimate_t] (K*B, 3, H, W), position (K*B, 2))``."""
        K, B = states.shape[:2]
        noisy = batch["noisy"].unsqueeze(0).expand_as(states)
        feats = torch.cat([noisy, noisy - states, states], dim=2).flatten(0, 1)
        pos = (steps.to(states) / num_steps).view(K, 1, 1).expand(K, B, 1)
        return feats, torch.cat([pos, 1.0 - pos], dim=2).flatten(0, 1)

    def stop_logit_fn(self, policy) -> StopLogits:
        """The fast policy on the pooled trunk features (:class:`~l2o.tasks.denoising.policy.PooledLogits`),
        or the released CNN on each candidate's images (:meth:`policy_features`)."""
        if isinstance(policy, StopPolicy):
            return PooledLogits(policy)
        return _CNNLogits(policy, self.policy_features)

    def step_metrics(self, states: Tensor, batch: dict[str, Tensor], full: bool = True) -> dict[str, Tensor]:
        """``psnr`` (dB, estimate clamped to [0, 1]) and, with ``full``, ``ssim`` and ``sse_a`` / ``sse_b``
        (the squared error summed over the two colours of a checkerboard of pixels, for the honest
        oracle): each (B, K)."""
        out = {"psnr": psnr(states, batch["clean"]).T}
        if full:
            out.update(checkerboard_sse(states, batch["clean"]))
            est = states[:, :, 0].detach().cpu().numpy()  # (K, B, H, W)
            clean = batch["clean"][:, 0].cpu().numpy()
            out["ssim"] = torch.from_numpy(np.stack([ssim_per_step(est[:, b], clean[b]) for b in range(len(clean))]))
        return out

    def honest_oracle(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each image's head chosen on one colour of a checkerboard of its pixels and scored on the other,
        both ways (:func:`~l2o.stopping.rules.cross_fitted_index`): the PSNR of the combined error. (The
        per-image oracle of the released code chooses on every pixel it scores: an upper bound.)"""
        idx_a, idx_b = cross_fitted_index(components["sse_a"], components["sse_b"])
        rows = np.arange(len(idx_a))
        sse = components["sse_a"][rows, idx_a] + components["sse_b"][rows, idx_b]
        return {"psnr": psnr_of_sse(sse, components["pixels"][:, -1])}

    def summarise(self, components: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
        """Mean PSNR (dB) and mean SSIM over the images (weighted with ``weights``)."""
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        out = {}
        for name in ("psnr", "ssim"):
            if name in components:
                v = np.asarray(components[name], dtype=np.float64)
                out[name] = float(v.mean() if w is None else (w * v).sum() / max(w.sum(), 1e-300))
        return out

    def conditions(self, batch: dict[str, Tensor]) -> np.ndarray:
        return np.array([condition_name(s) for s in batch["sigma"].tolist()])

    # -- the report's picture row ----------------------------------------------------
    @torch.no_grad()
    def showcase(self, models: dict) -> dict[str, np.ndarray]:
        """Test image 0 at the showcase noise level: clean, noisy, the plain model's output and the
        stopping model's (early exit), with their PSNRs and the stop step."""
        from l2o.stopping.inference import predict_early_exit

        sigma = showcase_sigma(self.data.config.test_sigmas)
        batch = next(self.eval_batches("test"))
        row = int(torch.nonzero(batch["sigma"] == sigma)[0])
        one = {k: v[row:row + 1] for k, v in batch.items()}
        out = {"clean": one["clean"][0, 0].cpu().numpy(), "noisy": one["noisy"][0, 0].cpu().numpy(),
               "sigma": np.array(sigma), "name": np.array(self.data.names["test"][0])}
        if "baseline" in models:
            net = models["baseline"][0]
            out["baseline"] = net(one["noisy"], [net.num_steps])[0, 0, 0].cpu().numpy()
        if "stop" in models:
            net, policy, candidates = models["stop"]
            pred, stop = predict_early_exit(self, net, policy, one, candidates)
            out["stop"] = pred[0, 0].cpu().numpy()
            out["stop_step"] = np.array(int(stop[0]))
        return out


class _CNNLogits(StopLogits):
    """The released CNN policy on ``[noisy, noise estimate_t, estimate_t]`` and the position."""

    def __init__(self, policy: ConvStopPolicy, features):
        self.policy, self.features = policy, features

    def context(self, batch):
        return {"noisy": batch["noisy"]}  # no label travels with the rows

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        feats, pos = self.features(ctx, states, steps, num_steps)
        return self.policy(feats, pos).view(states.shape[0], states.shape[1])
