"""Evaluation of one seed's trained models on the task's fixed test sets, for any task.

:func:`run_models` writes a tidy table (``task, method, condition, metric, value, seed``, see
:mod:`l2o.metrics`), a JSON of per-step curves, stop statistics and timings, and an ``.npz`` of
arrays the report shows (the task's choice). It only orchestrates: the readings of a stopping
model (each stop rule, the oracles, the validation-chosen baselines, paired differences) are
:mod:`l2o.readings` over the pure choices of :mod:`l2o.stopping.rules`; the timings are
:mod:`l2o.tradeoff`'s; the model runs over a set are :func:`l2o.outputs.collect`.

Timing (one definition: :mod:`l2o.tradeoff`): on the first ``timing_examples`` test examples,
in the evaluation's own batches, every model's cost of each fixed depth (depth T = the plain
model run to T), and each stopping model with early exit at its rule, the median of
``timing_repeats`` passes. There, early exit must stop every example where the
compute-everything path does: a disagreement beyond float ties fails the evaluation.

Models come by role (``baseline``, ``stop``, ``stop_ft``, ``aevb``, ``matched``); their method
names are the task's (``lista_stop``, ``dncnn_stop``, ...; :meth:`l2o.tasks.spec.TaskSpec.method`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.io import atomic_path, write_json_atomic
from l2o.metrics import by_condition, condition_rows, ordered_conditions, write_table
from l2o.outputs import collect
from l2o.readings import (capped_points, mean_over, paired_rows, reading_rows, rule_records, stopping_readings,
                          validation_baselines)
from l2o.stopping.inference import predict_early_exit
from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.rules import LOG_HALF, StopRule, stop_index
from l2o.tasks.registry import load_task, task_spec
from l2o.tradeoff import depth_seconds, early_exit_seconds, per_step_by_condition, rule_curve, timing_batches

log = logging.getLogger("l2o")

ROLES = ("baseline", "matched", "stop", "stop_ft", "aevb")
#: logits this close to a rule's boundary may fall either side between two float computations
TIE_TOLERANCE = 1e-4


class EarlyExitMismatch(RuntimeError):
    """Early exit stopped examples elsewhere than the compute-everything path (beyond float ties)."""


def _rows(task, method, comps, conditions, mixed, suffix=""):
    return condition_rows(task.name, method, by_condition(task.summarise, comps, conditions, mixed), suffix)


def _ordered(conditions: np.ndarray) -> list[str]:
    return ordered_conditions(conditions)


def _curves(task, out, q, stop_steps, candidates, T) -> dict:
    """Per-step curves and stop statistics of a stopping model on the main test set."""
    m = task.metric
    cand = out.at_candidates(candidates)
    best = out.oracle_losses.argmin(dim=1).numpy()
    return {
        "candidate_steps": list(candidates),
        "q_mean": q.mean(0).tolist(),
        f"q_weighted_{m}": [task.summarise({k: v[:, j] for k, v in cand.items()}, weights=q[:, j])[m]
                            for j in range(len(candidates))],
        "stop_histogram": np.bincount(stop_steps, minlength=T + 1)[1:].tolist(),
        "stop_histogram_by_condition": {c: np.bincount(stop_steps[out.conditions == c], minlength=T + 1)[1:].tolist()
                                        for c in _ordered(out.conditions)},
        "oracle_histogram_by_condition": {
            c: np.bincount(best[out.conditions == c] + 1, minlength=T + 1)[1:].tolist()
            for c in _ordered(out.conditions)},
    }


def _boundary_distance(logits: torch.Tensor, rule) -> torch.Tensor:
    """(N, K) distance of each candidate's logit (or log survival, for the median) from the rule's boundary."""
    if rule.kind == "median":
        return (torch.cumsum(torch.nn.functional.logsigmoid(-logits.double()), dim=1) - LOG_HALF).abs()
    return (logits - rule.logit_threshold).abs()


def check_early_exit(task, net, policy, batches, candidates, rule, logits: torch.Tensor) -> int:
    """Early exit's stops on ``batches`` against the compute-everything path's (its ``logits`` (n, K) on
    the same examples); returns the number checked. A disagreement where the all-steps logit sits
    within :data:`TIE_TOLERANCE` of the boundary (a float tie) is logged; any other raises
    :class:`EarlyExitMismatch`."""
    with torch.no_grad():
        early = torch.cat([predict_early_exit(task, net, policy, b, candidates, rule=rule)[1].cpu() for b in batches])
    n = len(early)
    expected = torch.as_tensor(candidates)[stop_index(logits[:n], rule=rule)]
    bad = (early != expected).nonzero().flatten()
    if len(bad):
        near = _boundary_distance(logits[:n], rule)
        ties = [int(i) for i in bad if float(near[i].min()) < TIE_TOLERANCE]
        real = [int(i) for i in bad if int(i) not in ties]
        if real:
            i = real[0]
            raise EarlyExitMismatch(
                f"{task.name}: early exit ({rule.name} rule) stopped {len(real)} of {n} examples elsewhere than "
                f"the compute-everything path (example {i}: step {int(early[i])} vs {int(expected[i])}); "
                "the task's step-wise protocol or its stop logits disagree between the two paths")
        log.warning("early exit: %d of %d examples stopped elsewhere at a float tie of the %s rule",
                    len(ties), n, rule.name)
    return n


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
    timing_examples: int = 256,
    timing_repeats: int = 3,
    equal_cost_baselines: bool = True,
    device=None,
) -> pd.DataFrame:
    """Evaluate one seed's checkpoints, given by role (:data:`ROLES`).

    ``equal_cost_baselines`` (off for an ablation variant, whose report rows are its stopping
    model's alone): the validation-chosen baselines (fixed depths, per condition, the rule),
    the paired differences, the rule's sweep and the capped thresholds."""
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
                      "oracle_mass": ckpt.get("oracle_mass"), "beta": ckpt.get("beta"), "prior": ckpt.get("prior")}
        main = role == "stop" and equal_cost_baselines
        val = rules = None
        if stopping:
            t0 = time.perf_counter()
            val = collect(job, net, "val", policy=policy, candidates=candidates, change=main)
            rules = rule_records(job, val, candidates, ckpt.get("rule"))
            main_rule = (ckpt.get("rule") or {}).get("name", "paper")
            info["rule"] = {"name": main_rule, **{k: r["tau"] for k, r in rules.items()}}
            log.info("evaluate: %s on val in %.1f s; rule %s (tuned tau %.3g)", method, time.perf_counter() - t0,
                     main_rule, rules["tuned"]["tau"])
        for split, mixed in job.eval_splits().items():
            t0 = time.perf_counter()
            out = collect(job, net, split, policy=policy, candidates=candidates, full=True, change=main and mixed)
            log.info("evaluate: %s on %s: %d examples, every step in %.1f s", method, split, len(out.conditions),
                     time.perf_counter() - t0)
            curves.setdefault("conditions", {})[split] = (["mixed"] if mixed else []) + _ordered(out.conditions)
            if mixed:
                info[f"{job.metric}_per_step"] = [job.summarise(out.at_step(t))[job.metric]
                                                  for t in range(1, net.num_steps + 1)]
                info["per_step_by_condition"] = per_step_by_condition(job, out)
                timing = timing_batches(job, split, timing_examples)
                info["timing_examples"] = sum(len(next(iter(b.values()))) for b in timing)
                t0 = time.perf_counter()
                also = {}
                if stopping:  # early exit at the checkpoint's rule, timed in the same rounds as the depths
                    rule = rules[main_rule]["rule"]
                    also["early_exit"] = lambda b: predict_early_exit(job, net, policy, b, candidates, rule=rule)
                depths = depth_seconds(job, net, timing, timing_repeats, also)
                info["depth_seconds"] = list(depths)
                info["plain_seconds"] = depths[-1]
                if stopping:
                    info["stop_seconds"] = info["early_exit_seconds"] = depths.also_seconds["early_exit"]
                log.info("evaluate: %s timed at every depth%s in %.1f s", method, " and with early exit" if stopping
                         else "", time.perf_counter() - t0)
            if not stopping:
                rows += _rows(job, method, out.at_step(net.num_steps), out.conditions, mixed)
                rows += _rows(job, method, out.at(out.oracle_losses.argmin(dim=1).numpy()), out.conditions, mixed,
                              "_oracle")
                honest = job.honest_oracle(out.components)
                if honest is not None:
                    rows += _rows(job, method, honest, out.conditions, mixed, "_oracle_honest")
                continue
            uniforms = torch.rand(out.logits.shape, generator=torch.Generator().manual_seed(sample_seed),
                                  dtype=torch.float64)
            readings, stops = stopping_readings(job, out, candidates, rules, main_rule, uniforms)
            if not mixed:
                rows += reading_rows(job, method, readings, stops, out.conditions, mixed)
                continue
            if main:
                base, base_stops, chosen = validation_baselines(job, val, out, candidates, float(stops[""].mean()))
                for name, comps in base.items():
                    rows += _rows(job, spec.method(name), comps, out.conditions, True)
                    rows += reading_rows(job, spec.method(name), {}, {"": base_stops[name]}, out.conditions, True)
                    readings[name] = comps
                info.update(chosen)
                rows += paired_rows(job, method, readings, out.conditions)
                info["capped_points"] = capped_points(job, val, out, candidates, net.num_steps)
                info["rule_curve"] = rule_curve(job, out, list(range(1, net.num_steps + 1)), info["depth_seconds"])
                info["oracle_steps_by_condition"] = mean_over(stops["_oracle"].astype(float), out.conditions)
                info["oracle_seconds"] = float(np.asarray(info["depth_seconds"])[stops["_oracle"] - 1].mean())
            rows += reading_rows(job, method, {k: v for k, v in readings.items() if not k or k.startswith("_")},
                                 stops, out.conditions, mixed)
            q = stop_log_distribution(out.logits).exp().numpy()
            info.update(_curves(job, out, q, stops[""], candidates, net.num_steps))
            info["sampled_mean_stop_by_condition"] = mean_over(stops["_sampled"].astype(float), out.conditions)
            t0 = time.perf_counter()
            n_checked = check_early_exit(job, net, policy, timing, candidates, rules[main_rule]["rule"], out.logits)
            info.update(early_exit_checked=n_checked, early_exit_agrees=True)
            for point in info.get("capped_points", []):
                point["seconds"] = early_exit_seconds(job, net, policy, timing, candidates,
                                                      StopRule("threshold", point["tau"], "tuned"), repeats=1)
            log.info("evaluate: %s early exit checked on %d examples, capped thresholds timed, in %.1f s (early exit "
                     "%.3g s vs %.3g s per example for the plain model to T)", method, n_checked,
                     time.perf_counter() - t0, info["stop_seconds"], info["plain_seconds"])
        curves[method] = info
    df = write_table(rows, out_table, seed)
    write_json_atomic(curves, out_json)
    if out_showcase is not None:
        arrays = job.showcase(loaded) if hasattr(job, "showcase") else {}
        with atomic_path(Path(out_showcase)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    return df
