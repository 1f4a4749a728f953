"""What every stage shares, for any task: running a model (and policy) over a
fixed set, validation metrics, RNGs, fingerprints and the final checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from l2o.checkpoints import build_model, load_checkpoint
from l2o.outputs import SetOutputs, collect  # noqa: F401  (re-exported: the stages import them from here)
from l2o.stopping.distribution import stop_log_distribution
from l2o.tasks.base import StoppingTask
from l2o.tasks.registry import load_task

log = logging.getLogger("l2o")

STAGE_SEED_OFFSETS = {"baseline": 1, "stage1": 2, "stage2": 3, "finetune": 4, "aevb": 5}

__all__ = ["load_task", "make_generator", "fingerprint", "file_digest", "collect", "predictive_val_metrics",
           "stopping_val_metrics", "load_initial_model", "work_dir_for", "finish_stage", "SetOutputs",
           "stage_step_costs"]


def make_generator(seed: int, stage: str) -> torch.Generator:
    """The CPU RNG of a stage's training data; distinct per stage, fixed by the seed."""
    return torch.Generator("cpu").manual_seed(int(seed) * 1000 + STAGE_SEED_OFFSETS[stage])


def fingerprint(*parts) -> str:
    """Hash of a stage's config and inputs; a checkpoint resumes only on a match."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def batched_indices(n: int, chunk: int):
    """Slices of ``range(n)`` in chunks of ``chunk``.

    >>> list(batched_indices(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    for i in range(0, n, chunk):
        yield slice(i, min(i + chunk, n))


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def predictive_val_metrics(task: StoppingTask, out: SetOutputs) -> dict[str, float]:
    """The task's metric at the last step and at each example's best step (the oracle)."""
    m = task.metric
    best = out.losses.argmin(dim=1).numpy()
    return {
        f"val_{m}_last": task.summarise({k: v[:, -1] for k, v in out.components.items()})[m],
        f"val_{m}_best_step": task.summarise(out.at(best))[m],
    }


def stopping_val_metrics(task: StoppingTask, out: SetOutputs, candidates: list[int], rule: str = "paper",
                         tau: float | None = None) -> dict[str, float]:
    """Validation metrics of a stopping model: the metric expected under ``q_phi``, at the paper's
    stop (``pi > 0.5``), at the stop of ``rule`` (``val_<metric>_rule``; for ``tuned``, at the
    threshold tuned here on this set unless ``tau`` is given, reported as ``val_tau``), and the
    mean stop step under ``q_phi`` and under the rule."""
    from l2o.stopping.inference import stop_index
    from l2o.stopping.rules import rule_named, tune_threshold

    m = task.metric
    q = stop_log_distribution(out.logits).exp().numpy()  # (N, K)
    cand = out.at_candidates(candidates)
    rows = np.arange(len(q))

    def value_of(idx):
        return task.summarise({k: v[rows, idx] for k, v in cand.items()})[m]

    det = stop_index(out.logits).numpy()
    metrics = {
        f"val_{m}_expected": task.summarise({k: (q * v).sum(axis=1) for k, v in cand.items()})[m],
        f"val_{m}_stop": value_of(det),
        "val_mean_stop": float((q * np.asarray(candidates, dtype=np.float64)).sum(axis=1).mean()),
    }
    if rule == "tuned" and tau is None:
        tau = tune_threshold(out.logits, value_of, task.higher_is_better, candidates)[0]
    idx = stop_index(out.logits, rule=rule_named(rule, tau)).numpy()
    metrics[f"val_{m}_rule"] = value_of(idx)
    metrics["val_rule_mean_stop"] = float(np.asarray(candidates, dtype=np.float64)[idx].mean())
    if rule == "tuned":
        metrics["val_tau"] = float(tau)
    return metrics


def load_initial_model(task: StoppingTask, init: Path, model: dict, what: str = "initial checkpoint"):
    """A trained predictive checkpoint to start from, checked against config section ``model``.

    ``what`` names the checkpoint in the error (e.g. ``baseline checkpoint``).
    """
    ckpt = load_checkpoint(init, "predictive", task)
    wanted = task.model_args(model)
    if ckpt["model_args"] != wanted:
        raise ValueError(f"{what} {init} has model {ckpt['model_args']}, but config section 'model' says {wanted}")
    return build_model(task, ckpt, init)


def stage_step_costs(task: StoppingTask, net: nn.Module, kind: str, work_dir: Path, key: str) -> Tensor:
    """The step costs (T,) of a stage's prior ``p(t) ∝ exp(-lambda c_t)`` (:mod:`l2o.stopping.prior`).

    Cost kind ``steps`` is ``c_t = t``. Kind ``seconds`` is measured on the first validation batch and
    kept in ``<work_dir>/prior_costs.json`` under ``key`` (the stage's fingerprint), so a resumed run
    trains with the prior it started with rather than a fresh, noisy measurement.
    """
    from l2o.io import write_json_atomic
    from l2o.stopping.prior import check_prior_cost, model_step_costs, step_costs

    if check_prior_cost(kind) == "steps":
        return step_costs(net.num_steps)
    path = Path(work_dir) / "prior_costs.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if isinstance(saved, dict) and saved.get("key") == key and len(saved.get("costs") or []) == net.num_steps:
            log.info("prior costs from %s", path)
            return torch.tensor(saved["costs"], dtype=torch.float64)
    costs = model_step_costs(task, net, kind)
    write_json_atomic({"key": key, "costs": costs.tolist()}, path)
    return costs


def work_dir_for(out: Path) -> Path:
    """Where a stage keeps its resumable checkpoint: ``.<output name>.work`` beside the output."""
    return Path(out).parent / f".{Path(out).name}.work"


def finish_stage(out: Path, *, stage: str, task: StoppingTask, net: nn.Module, result, tracker, config: dict,
                 policy: nn.Module | None = None, **extra) -> None:
    """Write the stage's self-describing checkpoint atomically, then drop its work dir."""
    from l2o.checkpoints import save_checkpoint
    from l2o.train.loop import clear_work_dir

    payload = dict(
        kind="stopping" if policy is not None else "predictive",
        stage=stage,
        task=task.name,
        model_args=net.describe(),
        model_state=net.state_dict(),
        config=config,
        data_hash=task.data_hash,
        history=result.history,
        best_iteration=result.best_iteration,
        seconds=result.seconds,
        mlflow_run_id=tracker.run_id,
    )
    if policy is not None:
        payload.update(policy_args=policy.describe(), policy_state=policy.state_dict())
    payload.update(extra)
    save_checkpoint(out, **payload)
    clear_work_dir(work_dir_for(out))
