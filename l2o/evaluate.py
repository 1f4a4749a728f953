"""Evaluation of one seed's trained models on the task's fixed test sets, for any task.

:func:`run_models` writes a tidy table (``task, method, condition, metric,
value, seed``, see :mod:`l2o.metrics`), a JSON of per-step curves and stop
statistics, and an ``.npz`` of arrays the report shows (the task's choice).
For the stopping model it also reads the same trained network six ways (the
skeptic's questions): at the learned stop (deterministic and sampled),
expected under ``q_phi``, at its last step, at the oracle's best step, at a
fixed depth of the same mean cost, and with a non-learned stopping rule tuned
on validation to the same mean cost. Early-exit inference is run and timed,
and must stop every example where the compute-everything path does.

Models come by role (``baseline``, ``stop``, ``stop_ft``, ``aevb``,
``matched``); their method names are the task's (``lista_stop``,
``dncnn_stop``, ...; :meth:`l2o.tasks.spec.TaskSpec.method`).
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
from l2o.io import atomic_path, write_json_atomic
from l2o.metrics import by_condition, condition_rows, metric_rows, ordered_conditions, write_table
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.inference import predict_early_exit, stop_index
from l2o.tasks.registry import load_task, task_spec
from l2o.train.common import collect
from l2o.tradeoff import (depth_seconds, early_exit_seconds, first_below, mean_by_condition,
                            per_step_by_condition, rule_curve, timed_pass, timing_batches)

log = logging.getLogger("l2o")

ROLES = ("baseline", "matched", "stop", "stop_ft", "aevb")


def tune_change_rule(change: np.ndarray, losses: np.ndarray, max_mean_stop: float, grid=None,
                     steps: np.ndarray | None = None) -> float:
    """Threshold eps of the rule "stop at the first step whose state changed by less than eps",
    tuned on validation: the lowest mean loss among thresholds whose mean stop step is at most
    ``max_mean_stop``.

    :param change: (N, K) the rule's input at the K steps it may stop at; ``losses`` (N, K) likewise.
    :param steps: (K,) the 1-based step of each column (default 1..K), for the mean stop step.
    """
    grid = np.logspace(-4, 0, 41) if grid is None else grid
    steps = np.arange(1, change.shape[1] + 1) if steps is None else np.asarray(steps)
    best, best_eps = math.inf, float(grid[-1])
    for eps in grid:
        idx = first_below(change, eps)
        if steps[idx].mean() > max_mean_stop + 1e-9:
            continue
        err = losses[np.arange(len(idx)), idx].mean()
        if err < best:
            best, best_eps = err, float(eps)
    return best_eps


def _rows(task, method, comps, conditions, mixed, suffix="", weights=None):
    return condition_rows(task.name, method, by_condition(task.summarise, comps, conditions, mixed, weights), suffix)


def _stopping_rows(task, method, out, candidates, uniforms, mixed):
    """Rows for a stopping model from its outputs on one set; also q (N, K) and the stop steps (N,)."""
    cand = out.at_candidates(candidates)
    q = stop_log_distribution(out.logits).exp().numpy()
    det = stop_index(out.logits).numpy()
    samp = stop_index(out.logits, uniforms).numpy()
    rows_idx = np.arange(len(det))
    steps = np.asarray(candidates)
    oracle = out.losses.argmin(dim=1).numpy()
    readings = {
        "": {k: v[rows_idx, det] for k, v in cand.items()},
        "_sampled": {k: v[rows_idx, samp] for k, v in cand.items()},
        "_expected": {k: (q * v).sum(axis=1) for k, v in cand.items()},
        "_oracle": out.at(oracle),
        "_last": {k: v[:, -1] for k, v in out.components.items()},
    }
    rows = []
    for suffix, comps in readings.items():
        rows += _rows(task, method, comps, out.conditions, mixed, suffix)
    stop_steps = steps[det]
    mean_stop = {"mixed": float(stop_steps.mean())} if mixed else {}
    for cond in _ordered(out.conditions):
        mean_stop[cond] = float(stop_steps[out.conditions == cond].mean())
    rows += metric_rows(task.name, method, "mean_stop", mean_stop)
    return rows, q, stop_steps, steps[samp]


def _ordered(conditions: np.ndarray) -> list[str]:
    return ordered_conditions(conditions)


def _curves(task, out, q, stop_steps, candidates, T) -> dict:
    """Per-step curves and stop statistics of a stopping model on the main test set."""
    m = task.metric
    cand = out.at_candidates(candidates)
    return {
        "candidate_steps": list(candidates),
        "q_mean": q.mean(0).tolist(),
        f"q_weighted_{m}": [task.summarise({k: v[:, j] for k, v in cand.items()}, weights=q[:, j])[m]
                            for j in range(len(candidates))],
        "stop_histogram": np.bincount(stop_steps, minlength=T + 1)[1:].tolist(),
        "stop_histogram_by_condition": {c: np.bincount(stop_steps[out.conditions == c], minlength=T + 1)[1:].tolist()
                                        for c in _ordered(out.conditions)},
        "oracle_histogram_by_condition": {
            c: np.bincount(out.losses.argmin(dim=1).numpy()[out.conditions == c] + 1, minlength=T + 1)[1:].tolist()
            for c in _ordered(out.conditions)},
    }


def _early_exit(task, net, policy, split, candidates, timed: bool, timing: list) -> tuple[float, float, np.ndarray]:
    """The early-exit stops, and (``timed``) the seconds of early-exit inference and of computing every
    step over the whole set. Not ``timed``: the stops of the timing subset only (the first examples of
    the set), enough for the agreement check without a second pass over the set; seconds NaN."""
    batches = list(task.eval_batches(split)) if timed else timing
    with torch.no_grad():
        stops = np.concatenate([predict_early_exit(task, net, policy, b, candidates)[1].cpu().numpy()
                                for b in batches])
    if not timed:
        return float("nan"), float("nan"), stops
    early = timed_pass(lambda b: predict_early_exit(task, net, policy, b, candidates), batches)
    full = timed_pass(lambda b: net(task.model_inputs(b)), batches)
    return early, full, stops


def _time_last_only(task, net, split, timed: bool) -> tuple[float, int]:
    """Seconds to compute only the last step's output over a set (the plain model's cost; NaN when not
    ``timed``), and the number of examples."""
    batches = list(task.eval_batches(split))
    n = sum(len(next(iter(b.values()))) for b in batches)
    if not timed:
        return float("nan"), n
    return timed_pass(lambda b: net(task.model_inputs(b), [net.num_steps]), batches), n


def run_models(
    *,
    data: Path,
    checkpoints: dict[str, Path],
    out_table: Path,
    out_json: Path,
    task: str = "sparse_recovery",
    out_showcase: Path | None = None,
    seed: int = 0,
    sample_seed: int = 0,
    time_inference: bool = True,
    timing_examples: int = 256,
    equal_cost_baselines: bool = True,
    device=None,
) -> pd.DataFrame:
    """Evaluate one seed's checkpoints, given by role (:data:`ROLES`).

    ``time_inference`` times a pass of each model computing its last step only, and of the
    stopping models with early exit and with every step (each as long as the evaluation's
    own pass: turn it off for costly tasks and use the bench). Early exit runs either way,
    and must stop every example where the compute-everything path does.

    Whatever ``time_inference`` says, every model is timed on the first ``timing_examples``
    test examples at each fixed depth, and each stopping model with early exit
    (deterministic and sampled): the seconds of the accuracy-vs-compute curves
    (:mod:`l2o.tradeoff`). Not ``time_inference``: the early-exit agreement is checked on those
    examples only. ``equal_cost_baselines`` (off for an ablation variant, whose report rows are
    its stopping model's alone): the fixed-depth and rule rows at the policy's mean cost, the rule's
    sweep and the oracle point."""
    unknown = sorted(set(checkpoints) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown model role(s) {unknown}; known: {ROLES}")
    job = load_task(task, data, device)
    spec = task_spec(task)
    rows: list[dict] = []
    curves: dict = {"seed": seed, "task": task, "metric": job.metric, "higher_is_better": job.higher_is_better,
                    "gain_floor": job.gain_floor}
    loaded = {}
    for role, path in checkpoints.items():
        method = spec.method(role)
        ckpt = load_checkpoint(path, task=job)
        net = build_model(job, ckpt, path).eval()
        stopping = ckpt["kind"] == "stopping"
        policy = build_policy(job, ckpt, path).eval() if stopping else None
        candidates = ckpt.get("candidate_steps") if stopping else None
        loaded[role] = (net, policy, candidates)
        info: dict = {"role": role, "stage": ckpt["stage"], "history": ckpt.get("history"),
                      "train_seconds": ckpt.get("seconds"), "mlflow_run_id": ckpt.get("mlflow_run_id"),
                      "oracle_mass": ckpt.get("oracle_mass"), "beta": ckpt.get("beta")}
        for split, mixed in job.eval_splits().items():
            t0 = time.perf_counter()
            log.info("evaluate: %s on %s ...", method, split)
            out = collect(job, net, split, policy=policy, candidates=candidates, full=True,
                          change=role == "stop" and mixed)
            log.info("evaluate: %s on %s: %d examples, every step in %.1f s", method, split,
                     len(out.conditions), time.perf_counter() - t0)
            curves.setdefault("conditions", {})[split] = (["mixed"] if mixed else []) + _ordered(out.conditions)
            if mixed:
                info["last_only_seconds"], info["examples"] = _time_last_only(job, net, split, time_inference)
                info[f"{job.metric}_per_step"] = [
                    job.summarise({k: v[:, t] for k, v in out.components.items()})[job.metric]
                    for t in range(out.losses.shape[1])]
                info["per_step_by_condition"] = per_step_by_condition(job, out)
                timing = timing_batches(job, split, timing_examples)
                t0 = time.perf_counter()
                info["depth_seconds"] = depth_seconds(job, net, timing)
                info["timing_examples"] = sum(len(next(iter(b.values()))) for b in timing)
                log.info("evaluate: %s timed at every depth (%d examples) in %.1f s", method,
                         info["timing_examples"], time.perf_counter() - t0)
            if not stopping:
                rows += _rows(job, method, {k: v[:, -1] for k, v in out.components.items()}, out.conditions, mixed)
                rows += _rows(job, method, out.at(out.losses.argmin(dim=1).numpy()), out.conditions, mixed, "_oracle")
                continue
            gen = torch.Generator().manual_seed(sample_seed)
            uniforms = torch.rand(out.logits.shape, generator=gen, dtype=torch.float64)
            srows, q, stop_steps, sampled_steps = _stopping_rows(job, method, out, candidates, uniforms, mixed)
            rows += srows
            if not mixed:
                continue
            t0 = time.perf_counter()
            early, full, ee_steps = _early_exit(job, net, policy, split, candidates, time_inference, timing)
            log.info("evaluate: %s early-exit check in %.1f s", method, time.perf_counter() - t0)
            info.update(_curves(job, out, q, stop_steps, candidates, net.num_steps))
            t0 = time.perf_counter()
            info.update(_compute_points(job, net, policy, out, sampled_steps, candidates, timing,
                                        sample_seed, role == "stop" and equal_cost_baselines, info["depth_seconds"]),
                        prior=ckpt.get("prior"))
            log.info("evaluate: %s timed with early exit, rule swept in %.1f s", method, time.perf_counter() - t0)
            checked = stop_steps[:len(ee_steps)]
            info.update(early_exit_seconds=early, all_steps_seconds=full, early_exit_checked=len(ee_steps),
                        early_exit_agrees=bool((ee_steps == checked).all()))
            if not info["early_exit_agrees"]:
                log.warning("%s: early exit stopped %d examples elsewhere than the all-steps path", method,
                            int((ee_steps != checked).sum()))
            if role == "stop" and equal_cost_baselines:
                t0 = time.perf_counter()
                rows += _baselines_at_equal_cost(job, spec, net, out, stop_steps, candidates, info)
                log.info("evaluate: fixed-depth and rule baselines (validation) in %.1f s", time.perf_counter() - t0)
        curves[method] = info
    df = write_table(rows, out_table, seed)
    write_json_atomic(curves, out_json)
    if out_showcase is not None:
        arrays = job.showcase(loaded) if hasattr(job, "showcase") else {}
        with atomic_path(Path(out_showcase)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    return df


def _compute_points(task, net, policy, out, sampled_steps, candidates, timing, sample_seed, with_rule,
                    depth_secs) -> dict:
    """What the accuracy-vs-compute curves need of a stopping model beyond its rows: mean stop steps
    (sampled), early-exit seconds per example (deterministic and sampled), and for the main stopping
    model the oracle's mean best step and the non-learned rule swept over thresholds (every step
    may be a stop, so the rule is not limited to the policy's candidates)."""
    points = {
        "sampled_mean_stop_by_condition": mean_by_condition(np.asarray(sampled_steps, dtype=float), out.conditions),
        "stop_seconds": early_exit_seconds(task, net, policy, timing, candidates),
        "stop_seconds_sampled": early_exit_seconds(task, net, policy, timing, candidates, sample_seed),
    }
    if with_rule:
        T = out.losses.shape[1]
        oracle = out.losses.argmin(dim=1).numpy() + 1
        points["oracle_steps_by_condition"] = mean_by_condition(oracle.astype(float), out.conditions)
        points["oracle_seconds"] = float(np.asarray(depth_secs)[oracle - 1].mean())
        points["rule_curve"] = rule_curve(task, out, list(range(1, T + 1)), depth_secs)
    return points


def _baselines_at_equal_cost(task, spec, net, out, stop_steps, candidates, info):
    """The same model at a fixed depth, and with a tuned non-learned rule, at the policy's mean cost.

    Fixed depth: the better on validation of the two whole depths around the policy's mean stop
    step (a depth whose output was never trained would make a straw man). The rule may stop at
    the policy's candidate steps only, as the policy does.
    """
    rows = []
    mean_stop = float(stop_steps.mean())
    T = out.losses.shape[1]
    val = collect(task, net, "val", change=True)
    around = sorted({int(min(max(math.floor(mean_stop), 1), T)), int(min(max(math.ceil(mean_stop), 1), T))})
    depth = min(around, key=lambda d: float(val.losses[:, d - 1].mean()))
    fixed, heur = spec.method("fixed_depth"), spec.method("heuristic")
    rows += _rows(task, fixed, {k: v[:, depth - 1] for k, v in out.components.items()}, out.conditions, True)
    rows += metric_rows(task.name, fixed, "mean_stop", {"mixed": float(depth)})
    cols = [t - 1 for t in candidates]
    steps = np.asarray(candidates)
    eps = tune_change_rule(val.change[:, cols], val.losses.numpy()[:, cols], mean_stop, steps=steps)
    idx = np.asarray(cols)[first_below(out.change[:, cols], eps)]
    rows += _rows(task, heur, out.at(idx), out.conditions, True)
    rows += metric_rows(task.name, heur, "mean_stop", {"mixed": float(idx.mean() + 1)})
    # the best single depth on validation, whatever its cost: a fixed depth tuned as hard as the policy
    m = task.metric
    per_step = [task.summarise({k: v[:, t] for k, v in val.components.items()})[m] for t in range(T)]
    best = int(np.argmax(per_step) if task.higher_is_better else np.argmin(per_step)) + 1
    name = spec.method("best_depth")
    rows += _rows(task, name, {k: v[:, best - 1] for k, v in out.components.items()}, out.conditions, True)
    rows += metric_rows(task.name, name, "mean_stop", {"mixed": float(best)})
    info["best_depth"] = best
    info["fixed_depth"] = depth
    info["heuristic_eps"] = eps
    return rows
