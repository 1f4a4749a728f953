"""Evaluation on the fixed test set: NMSE (dB, ratio of means) mixed and per SNR.

:func:`run_models` writes a tidy table (``task, method, condition, metric,
value, seed``, see :mod:`l2o.metrics`) and a JSON of per-step curves. It
evaluates the trained checkpoints of one seed: LISTA,
  LISTA-stop (deterministic, sampled, expected, oracle), fine-tuned, AEVB, the
  same model truncated at a fixed depth of equal mean cost, and a non-learned
  stopping rule tuned on validation to the same mean cost.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.io import write_json_atomic
from l2o.metrics import condition_name, db_of, metric_rows, nmse_by_condition, write_table
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.inference import predict_early_exit, stop_index
from l2o.train.common import batched_indices, load_context

log = logging.getLogger("l2o")

# --- learned models ----------------------------------------------------------
@torch.no_grad()
def _model_outputs(task, net, policy, batch, candidates, chunk=500):
    """Per-step squared errors (N, T), relative change (N, T), stop logits (N, K) or None."""
    errs, rel, logits = [], [], []
    steps = torch.tensor(candidates or [], device=batch["y"].device, dtype=torch.long)
    stop_logits = task.stop_logit_fn(policy) if policy is not None else None
    for sl in batched_indices(len(batch["y"]), chunk):
        sub = {k: v[sl] for k, v in batch.items()}
        states = net(task.model_inputs(sub))  # (T, b, n)
        errs.append(task.step_losses(states, sub).cpu())
        prev = torch.cat([torch.zeros_like(states[:1]), states[:-1]])
        change = (states - prev).norm(dim=-1) / states.norm(dim=-1).clamp_min(1e-12)
        rel.append(change.T.cpu())
        if policy is not None:
            logits.append(stop_logits(sub, states[steps - 1], steps, net.num_steps).T.cpu())
    return (
        torch.cat(errs).double().numpy(),
        torch.cat(rel).double().numpy(),
        torch.cat(logits).double() if policy is not None else None,
    )


def first_below(values: np.ndarray, eps: float) -> np.ndarray:
    """0-based index of the first step whose value is < eps (else the last), per row (N, T) -> (N,)."""
    hit = values < eps
    hit[:, -1] = True
    return hit.argmax(axis=1)


def tune_change_rule(rel_change: np.ndarray, errors: np.ndarray, max_mean_stop: float, grid=None) -> float:
    """Threshold eps of the rule "stop when ||x_t - x_{t-1}|| / ||x_t|| < eps", tuned on validation:
    the best NMSE among thresholds whose mean stop step is at most ``max_mean_stop``."""
    grid = np.logspace(-4, 0, 41) if grid is None else grid
    best, best_eps = math.inf, float(grid[-1])
    for eps in grid:
        idx = first_below(rel_change, eps)
        if idx.mean() + 1 > max_mean_stop + 1e-9:
            continue
        err = errors[np.arange(len(idx)), idx].mean()
        if err < best:
            best, best_eps = err, float(eps)
    return best_eps


def _stopping_metrics(name, errors, logits, candidates, energy, snr, uniforms, mixed):
    """Rows for a stopping model from its per-step errors (N, T) and logits (N, K)."""
    cand_err = errors[:, [t - 1 for t in candidates]]
    log_q = stop_log_distribution(logits)
    q = log_q.exp().numpy()
    det = stop_index(logits).numpy()
    samp = stop_index(logits, uniforms).numpy()
    rows_idx = np.arange(len(det))
    steps = np.asarray(candidates)
    rows = []
    rows += metric_rows(name, "nmse_db", nmse_by_condition(cand_err[rows_idx, det], energy, snr, mixed))
    rows += metric_rows(name, "nmse_db_sampled", nmse_by_condition(cand_err[rows_idx, samp], energy, snr, mixed))
    rows += metric_rows(name, "nmse_db_expected", nmse_by_condition((q * cand_err).sum(1), energy, snr, mixed))
    rows += metric_rows(name, "nmse_db_oracle", nmse_by_condition(errors.min(1), energy, snr, mixed))
    rows += metric_rows(name, "nmse_db_last", nmse_by_condition(errors[:, -1], energy, snr, mixed))
    stop_steps = steps[det].astype(float)
    mean_stop = {"mixed": stop_steps.mean()} if mixed else {}
    for level in np.unique(snr):
        mean_stop[condition_name(level)] = stop_steps[snr == level].mean()
    rows += metric_rows(name, "mean_stop", mean_stop)
    return rows, q, steps[det]


def run_models(
    *,
    data: Path,
    checkpoints: dict[str, Path],
    out_table: Path,
    out_json: Path,
    seed: int = 0,
    sample_seed: int = 0,
    device=None,
) -> pd.DataFrame:
    """Evaluate one seed's checkpoints. ``checkpoints`` maps method names
    (``lista``, ``lista_stop``, ``lista_stop_ft``, ``aevb``) to files."""
    ctx = load_context(data, device)
    task = ctx.task
    sets = {"test": ctx.split("test")}
    if "extra_y" in ctx.arrays:
        sets["extra"] = ctx.split("extra")
    val = ctx.split("val")
    rows: list[dict] = []
    curves: dict = {"seed": seed}
    for method, path in checkpoints.items():
        ckpt = load_checkpoint(path, data_hash=ctx.data_hash)
        net = build_model(task, ckpt, path, ctx.device).eval()
        stopping = ckpt["kind"] == "stopping"
        policy = build_policy(ckpt, path, ctx.device).eval() if stopping else None
        candidates = ckpt.get("candidate_steps") if stopping else None
        info: dict = {"stage": ckpt["stage"], "history": ckpt.get("history"),
                      "train_seconds": ckpt.get("seconds"), "mlflow_run_id": ckpt.get("mlflow_run_id")}
        for split, batch in sets.items():
            mixed = split == "test"
            errors, rel, logits = _model_outputs(task, net, policy, batch, candidates)
            energy = batch["x"].pow(2).sum(-1).cpu().double().numpy()
            snr = batch["snr"].cpu().numpy()
            if mixed:
                info["nmse_db_per_step"] = [db_of(errors[:, t].mean() / energy.mean()) for t in range(errors.shape[1])]
            if not stopping:
                rows += metric_rows(method, "nmse_db", nmse_by_condition(errors[:, -1], energy, snr, mixed))
                rows += metric_rows(method, "nmse_db_oracle", nmse_by_condition(errors.min(1), energy, snr, mixed))
                continue
            gen = torch.Generator().manual_seed(sample_seed)
            uniforms = torch.rand(logits.shape, generator=gen, dtype=torch.float64)
            srows, q, stop_steps = _stopping_metrics(method, errors, logits, candidates, energy, snr, uniforms, mixed)
            rows += srows
            if not mixed:
                continue
            # early exit: the path a user runs; must agree with the compute-everything path
            t0 = time.perf_counter()
            pred, ee_steps = predict_early_exit(task, net, policy, batch, candidates)
            info["early_exit_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.no_grad():
                for sl in batched_indices(len(batch["y"]), 500):
                    net(task.model_inputs({k: v[sl] for k, v in batch.items()}))
            info["all_steps_seconds"] = time.perf_counter() - t0
            info["early_exit_agrees"] = bool((ee_steps.cpu().numpy() == stop_steps).all())
            cand_err = errors[:, [t - 1 for t in candidates]]
            info.update(
                candidate_steps=list(candidates),
                q_mean=q.mean(0).tolist(),
                q_weighted_nmse_db=[
                    db_of(((q[:, k] * cand_err[:, k]).sum() / max(q[:, k].sum(), 1e-300)) / energy.mean())
                    for k in range(len(candidates))
                ],
                stop_histogram=np.bincount(stop_steps, minlength=net.num_steps + 1)[1:].tolist(),
            )
            if method == "lista_stop":
                rows += _baselines_at_equal_cost(task, net, val, errors, rel, energy, snr, stop_steps, info)
        curves[method] = info
    df = write_table(rows, out_table, seed)
    write_json_atomic(curves, out_json)
    return df


def _baselines_at_equal_cost(task, net, val, errors, rel, energy, snr, stop_steps, info):
    """The same model at a fixed depth, and with a tuned non-learned rule, at the policy's mean cost."""
    rows = []
    mean_stop = float(stop_steps.mean())
    depth = int(min(max(round(mean_stop), 1), errors.shape[1]))
    rows += metric_rows("lista_fixed_depth", "nmse_db", nmse_by_condition(errors[:, depth - 1], energy, snr))
    rows += metric_rows("lista_fixed_depth", "mean_stop", {"mixed": float(depth)})
    v_err, v_rel, _ = _model_outputs(task, net, None, val, None)
    eps = tune_change_rule(v_rel, v_err, mean_stop)
    idx = first_below(rel, eps)
    rows += metric_rows("lista_stop_heuristic", "nmse_db", nmse_by_condition(errors[np.arange(len(idx)), idx], energy, snr))
    rows += metric_rows("lista_stop_heuristic", "mean_stop", {"mixed": float(idx.mean() + 1)})
    info["fixed_depth"] = depth
    info["heuristic_eps"] = eps
    return rows
