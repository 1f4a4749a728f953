"""Early-exit inference for users: run a stopping checkpoint on new inputs.

Each example runs only up to its own stop (:func:`l2o.stopping.inference.predict_early_exit`).
The inputs are the task's test set, or an ``.npy`` array the task turns into
batches (:meth:`inputs_batches`: measurements ``y`` (N, m) for sparse
recovery, noisy images (N, H, W) for denoising).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.io import atomic_path
from l2o.stopping.inference import predict_early_exit
from l2o.tasks.registry import load_task


def predict_file(
    *,
    model: Path,
    data: Path,
    out: Path,
    task: str = "sparse_recovery",
    inputs: Path | None = None,
    sampled: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> dict:
    """Predict for the test set of ``data`` (or for ``inputs``, an ``.npy`` array the task reads).

    Writes ``out`` (.npz with ``prediction`` (N, ...) and ``stop_step`` (N,)) and returns a summary.
    """
    job = load_task(task, data, device)
    ckpt = load_checkpoint(model, "stopping", job)
    net = build_model(job, ckpt, model).eval()
    policy = build_policy(job, ckpt, model).eval()
    if inputs is None:
        batches = list(job.eval_batches("test"))
    else:
        if not hasattr(job, "inputs_batches"):
            raise ValueError(f"task {task!r} does not read input arrays; leave out --inputs to predict its test set")
        batches = list(job.inputs_batches(np.load(inputs), str(inputs)))
    candidates = ckpt["candidate_steps"]
    gen = torch.Generator().manual_seed(seed)
    preds, steps = [], []
    t0 = time.perf_counter()
    for batch in batches:
        b = len(next(iter(batch.values())))
        u = torch.rand(b, len(candidates), generator=gen).to(job.device) if sampled else None
        prediction, stop = predict_early_exit(job, net, policy, batch, candidates, u)
        preds.append(prediction.cpu())
        steps.append(stop.cpu())
    seconds = time.perf_counter() - t0
    shapes = {tuple(p.shape[1:]) for p in preds}
    prediction = torch.cat(preds).numpy() if len(shapes) == 1 else np.array([p.numpy() for p in preds], dtype=object)
    stop_step = torch.cat(steps).numpy()
    with atomic_path(Path(out)) as tmp:
        with open(tmp, "wb") as fh:
            if prediction.dtype == object:  # images of different sizes: one array each
                np.savez(fh, stop_step=stop_step, **{f"prediction_{i}": p.numpy() for i, p in enumerate(preds)})
            else:
                np.savez(fh, prediction=prediction, stop_step=stop_step)
    n = len(stop_step)
    return {"examples": n, "mean_stop": float(stop_step.mean()), "seconds": seconds,
            "examples_per_second": n / seconds}
