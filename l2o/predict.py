"""Early-exit inference for users: run a stopping checkpoint on new measurements.

Each example runs only up to its own stop (:func:`l2o.stopping.inference.predict_early_exit`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.io import atomic_path
from l2o.stopping.inference import predict_early_exit
from l2o.train.common import batched_indices, load_context


def predict_file(
    *,
    model: Path,
    data: Path,
    out: Path,
    inputs: Path | None = None,
    sampled: bool = False,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | None = None,
) -> dict:
    """Predict ``x_hat`` for the test set of ``data`` (or for ``inputs``, an (N, m) .npy of y).

    Writes ``out`` (.npz with ``x_hat`` (N, n) and ``stop_step`` (N,)) and returns a summary.
    """
    ctx = load_context(data, device)
    ckpt = load_checkpoint(model, "stopping", ctx.data_hash)
    net = build_model(ctx.task, ckpt, model, ctx.device).eval()
    policy = build_policy(ckpt, model, ctx.device).eval()
    if inputs is None:
        y = torch.from_numpy(ctx.arrays["test_y"])
    else:
        y = torch.from_numpy(np.load(inputs)).float()
        if y.ndim != 2 or y.shape[1] != ctx.task.m:
            raise ValueError(f"inputs {inputs} have shape {tuple(y.shape)}, expected (N, {ctx.task.m})")
    candidates = ckpt["candidate_steps"]
    gen = torch.Generator().manual_seed(seed)
    preds, steps = [], []
    t0 = time.perf_counter()
    for sl in batched_indices(len(y), batch_size):
        batch = {"y": y[sl].to(ctx.device)}
        u = torch.rand(len(batch["y"]), len(candidates), generator=gen).to(ctx.device) if sampled else None
        x_hat, stop = predict_early_exit(ctx.task, net, policy, batch, candidates, u)
        preds.append(x_hat.cpu())
        steps.append(stop.cpu())
    seconds = time.perf_counter() - t0
    x_hat, stop_step = torch.cat(preds).numpy(), torch.cat(steps).numpy()
    with atomic_path(Path(out)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x_hat=x_hat, stop_step=stop_step)
    return {"examples": len(y), "mean_stop": float(stop_step.mean()), "seconds": seconds,
            "examples_per_second": len(y) / seconds}
