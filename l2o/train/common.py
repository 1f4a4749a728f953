"""What every stage shares: loading the problem onto the device, batched
forward passes over a fixed set, validation metrics, RNGs and fingerprints."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from l2o.checkpoints import build_model, load_checkpoint
from l2o.device import resolve_device
from l2o.models.lista import LISTAConfig
from l2o.stopping.distribution import stop_log_distribution
from l2o.tasks.sparse_recovery.data import load_problem
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask

log = logging.getLogger("l2o")

STAGE_SEED_OFFSETS = {"baseline": 1, "stage1": 2, "stage2": 3, "finetune": 4, "aevb": 5}


@dataclass
class Context:
    """A loaded problem: the task (on ``device``), its arrays and content hash."""

    task: SparseRecoveryTask
    arrays: dict[str, np.ndarray]
    data_hash: str
    device: str

    def split(self, name: str) -> dict[str, Tensor]:
        """A fixed set (``val``, ``test``, ``extra``) as a batch on the device."""
        if f"{name}_y" not in self.arrays:
            raise KeyError(f"the problem file has no {name!r} set")
        return {
            k: torch.from_numpy(self.arrays[f"{name}_{k}"]).to(self.device)
            for k in ("y", "x", "snr")
        }


def load_context(data: Path, device: str | None = None) -> Context:
    arrays, data_hash = load_problem(data)
    device = resolve_device(device)
    task = SparseRecoveryTask.from_arrays(
        arrays,
        snr_db=arrays["meta_snr_db"].tolist(),
        sparsity=float(arrays["meta_sparsity"]),
        device=device,
    )
    return Context(task, arrays, data_hash, device)


def make_generator(seed: int, stage: str) -> torch.Generator:
    """The CPU RNG of a stage's training data; distinct per stage, fixed by the seed."""
    return torch.Generator("cpu").manual_seed(int(seed) * 1000 + STAGE_SEED_OFFSETS[stage])


def fingerprint(*parts) -> str:
    """Hash of a stage's config and inputs; a checkpoint resumes only on a match."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def batched_indices(n: int, chunk: int):
    for i in range(0, n, chunk):
        yield slice(i, min(i + chunk, n))


@torch.no_grad()
def step_errors(task, model: nn.Module, batch: dict[str, Tensor], chunk: int = 1000) -> Tensor:
    """Per-step losses of ``model`` on a fixed set: (N, T), on the CPU."""
    out = []
    for sl in batched_indices(len(batch["y"]), chunk):
        sub = {k: v[sl] for k, v in batch.items()}
        out.append(task.step_losses(model(task.model_inputs(sub)), sub).cpu())
    return torch.cat(out)


@torch.no_grad()
def stop_logits(
    task, model: nn.Module, policy: nn.Module, batch, candidate_steps: list[int], chunk: int = 1000
) -> tuple[Tensor, Tensor]:
    """Per-step losses (N, T) and the policy's stop logits at the candidate steps (N, K)."""
    errs, logits = [], []
    steps = torch.tensor(candidate_steps, device=batch["y"].device)
    logits_of = task.stop_logit_fn(policy)
    for sl in batched_indices(len(batch["y"]), chunk):
        sub = {k: v[sl] for k, v in batch.items()}
        states = model(task.model_inputs(sub))  # (T, b, n)
        errs.append(task.step_losses(states, sub).cpu())
        logits.append(logits_of(sub, states[steps - 1], steps, model.num_steps).T.cpu())
    return torch.cat(errs), torch.cat(logits)


def db(ratio: float | Tensor) -> float:
    return float(10.0 * torch.log10(torch.as_tensor(ratio, dtype=torch.float64)))


def energy(batch: dict[str, Tensor]) -> Tensor:
    """``||x*||^2`` per example, (N,) on the CPU."""
    return batch["x"].pow(2).sum(dim=1).cpu()


def predictive_val_metrics(errors: Tensor, target_energy: Tensor) -> dict[str, float]:
    """NMSE (dB) at the last step and at the per-example best step, from (N, T) errors."""
    e = target_energy.double().mean()
    return {
        "val_nmse_db_last": db(errors[:, -1].double().mean() / e),
        "val_nmse_db_best_step": db(errors.min(dim=1).values.double().mean() / e),
    }


def stopping_val_metrics(
    errors: Tensor, logits: Tensor, candidate_steps: list[int], target_energy: Tensor
) -> dict[str, float]:
    """Expected NMSE (dB) under ``q_phi`` and at the deterministic stop, from errors and logits."""
    from l2o.stopping.inference import stop_index

    cand = errors[:, [t - 1 for t in candidate_steps]].double()
    q = stop_log_distribution(logits.double()).exp()
    e = target_energy.double().mean()
    det = cand.gather(1, stop_index(logits).unsqueeze(1)).squeeze(1)
    steps = torch.tensor(candidate_steps, dtype=torch.float64)
    return {
        "val_nmse_db_expected": db((q * cand).sum(dim=1).mean() / e),
        "val_nmse_db_stop": db(det.mean() / e),
        "val_mean_stop": float((q * steps).sum(dim=1).mean()),
    }


def load_initial_model(task, init: Path, model: dict, data_hash: str, device, what: str = "initial checkpoint"):
    """A trained LISTA checkpoint to start from, checked against config section ``model``.

    ``what`` names the checkpoint in the error (e.g. ``baseline checkpoint``).
    """
    ckpt = load_checkpoint(init, "predictive", data_hash)
    wanted = LISTAConfig(m=task.m, n=task.n, **model).__dict__
    if ckpt["model_args"] != wanted:
        raise ValueError(f"{what} {init} has model {ckpt['model_args']}, but config section 'model' says {wanted}")
    return build_model(task, ckpt, init, device)


def work_dir_for(out: Path) -> Path:
    """Where a stage keeps its resumable checkpoint: ``.<output name>.work`` beside the output."""
    return Path(out).parent / f".{Path(out).name}.work"


def finish_stage(out: Path, *, stage: str, ctx: Context, net: nn.Module, result, tracker, config: dict,
                 policy: nn.Module | None = None, **extra) -> None:
    """Write the stage's self-describing checkpoint atomically, then drop its work dir."""
    from l2o.checkpoints import save_checkpoint

    payload = dict(
        kind="stopping" if policy is not None else "predictive",
        stage=stage,
        task=ctx.task.name,
        model_args=net.describe(),
        model_state=net.state_dict(),
        config=config,
        data_hash=ctx.data_hash,
        history=result.history,
        best_iteration=result.best_iteration,
        seconds=result.seconds,
        mlflow_run_id=tracker.run_id,
    )
    if policy is not None:
        payload.update(policy_args=policy.describe(), policy_state=policy.state_dict())
    payload.update(extra)
    save_checkpoint(out, **payload)
    from l2o.train.loop import clear_work_dir

    clear_work_dir(work_dir_for(out))
