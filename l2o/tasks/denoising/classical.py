"""The classical baselines of Table 6 on the same noisy test images: BM3D given the true
noise level (optional package) and non-local means with its own noise estimate, its
strength tuned on the validation images. Time per image for each."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from l2o.config import take_fields
from l2o.io import atomic_path, write_json_atomic
from l2o.metrics import by_condition, condition_rows, write_table
from l2o.tasks.denoising.denoisers import bm3d_available, denoise_bm3d, denoise_nlm, timed, tune_nlm
from l2o.tasks.denoising.metrics import psnr, ssim

log = logging.getLogger("l2o")
TASK = "denoising"


@dataclass
class ClassicalConfig:
    """Config section ``classical`` of the denoising task."""

    bm3d: bool = True
    nlm_h_factors: list[float] = field(default_factory=lambda: [0.4, 0.6, 0.8, 1.0, 1.2, 1.6])
    nlm_patch_size: int = 5
    nlm_patch_distance: int = 6


def _scores(estimate: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one estimate."""
    p = float(psnr(torch.from_numpy(np.asarray(estimate, np.float64))[None],
                   torch.from_numpy(np.asarray(clean, np.float64))[None]))
    return p, ssim(estimate, clean)


def run_classical(*, data: Path, out_table: Path, out_json: Path, classical: dict, device=None,
                  out_showcase: Path | None = None, task: str = TASK) -> pd.DataFrame:
    """Tune NLM on validation, then run NLM and (if installed and enabled) BM3D on every test image
    at every test noise level; rows ``psnr``, ``ssim`` and ``seconds_per_image`` per method and
    noise level (and the noisy input's PSNR as method ``noisy``), labelled with ``task`` (a variant's
    name when it runs one: :data:`l2o.tasks.registry.VARIANTS`)."""
    from l2o.tasks.registry import load_task

    cfg = take_fields(ClassicalConfig, classical, "config section 'classical'")
    name, task = task, load_task(task, data, "cpu")
    nlm_kw = dict(patch_size=cfg.nlm_patch_size, patch_distance=cfg.nlm_patch_distance)
    val = [b for b in task.eval_batches("val")]
    noisy_val = [b["noisy"][s, 0].numpy() for b in val for s in range(len(b["sigma"]))]
    clean_val = [b["clean"][s, 0].numpy() for b in val for s in range(len(b["sigma"]))]
    t0 = time.perf_counter()
    h_factor, h_scores = tune_nlm(noisy_val, clean_val, list(cfg.nlm_h_factors), **nlm_kw)
    tune_seconds = time.perf_counter() - t0
    log.info("NLM: h factor %.2f chosen on validation (mean PSNR by factor %s)", h_factor, h_scores)
    use_bm3d = cfg.bm3d and bm3d_available()
    if cfg.bm3d and not use_bm3d:
        log.warning("the optional bm3d package is not installed: no BM3D row (pip install bm3d; non-commercial licence)")
    methods = ["noisy", "nlm"] + (["bm3d"] if use_bm3d else [])
    comps = {m: {"psnr": [], "ssim": [], "seconds_per_image": []} for m in methods}
    conditions, showcase = [], {}
    from l2o.tasks.denoising.task import showcase_sigma

    show_sigma = showcase_sigma(task.data.config.test_sigmas)
    for i, batch in enumerate(task.eval_batches("test")):
        for s in range(len(batch["sigma"])):
            noisy, clean, sigma = batch["noisy"][s, 0].numpy(), batch["clean"][s, 0].numpy(), float(batch["sigma"][s])
            conditions.append(task.conditions({"sigma": batch["sigma"][s:s + 1]})[0])
            outputs = {"noisy": (noisy, 0.0)}
            (est, _), sec = timed(denoise_nlm, noisy, h_factor, **nlm_kw)
            outputs["nlm"] = (est, sec)
            if use_bm3d:
                outputs["bm3d"] = timed(denoise_bm3d, noisy, sigma)
            for m, (est, sec) in outputs.items():
                p, q = _scores(est, clean)
                comps[m]["psnr"].append(p)
                comps[m]["ssim"].append(q)
                comps[m]["seconds_per_image"].append(sec)
            if i == 0 and sigma == show_sigma:
                showcase = {m: np.asarray(est, np.float32) for m, (est, _) in outputs.items() if m != "noisy"}
    conditions = np.array(conditions)
    rows = []
    for m in methods:
        c = {k: np.asarray(v) for k, v in comps[m].items()}
        rows += condition_rows(name, m, by_condition(task.summarise, c, conditions, True))
        per = by_condition(lambda x, weights=None: {"seconds_per_image": float(np.mean(x["s"]))},
                           {"s": c["seconds_per_image"]}, conditions, True)
        rows += condition_rows(name, m, per)
    df = write_table(rows, out_table)
    write_json_atomic({"config": asdict(cfg), "nlm_h_factor": h_factor,
                       "nlm_val_psnr_by_factor": {str(k): v for k, v in h_scores.items()},
                       "nlm_tune_seconds": tune_seconds, "bm3d": use_bm3d,
                       "bm3d_requested": cfg.bm3d, "showcase_sigma": show_sigma}, out_json)
    if out_showcase is not None:
        with atomic_path(Path(out_showcase)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **showcase)
    return df
