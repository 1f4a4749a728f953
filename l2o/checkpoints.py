"""Self-describing checkpoints: config + state, rebuilt without the code that wrote them.

Two kinds: ``predictive`` (a model alone: the baseline, Stage I) and
``stopping`` (model + policy + candidate steps + beta: Stages II, III, AEVB).
Every checkpoint names its task, its model's and policy's constructor
arguments and the hash of the data it was trained on; the task rebuilds the
networks from them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from l2o.io import save_torch_atomic

KINDS = ("predictive", "stopping")


def save_checkpoint(path: Path, **payload) -> None:
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}")
    save_torch_atomic(payload, path)


def load_checkpoint(path: Path, kind: str | None = None, task=None) -> dict:
    """Read a checkpoint and check its kind, its task and the data it was trained on.

    :param task: a loaded :class:`~l2o.tasks.base.StoppingTask` (checks the task's
        name and data hash), or None to skip those checks.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"checkpoint {path} is not readable: {err}") from err
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model_state" not in ckpt:
        raise ValueError(f"{path} is not an l2o checkpoint (no kind/model_state)")
    if kind is not None and ckpt["kind"] != kind:
        raise ValueError(f"checkpoint {path} holds a {ckpt['kind']!r} model, expected {kind!r}")
    if task is not None and ckpt.get("task", "sparse_recovery") != task.name:
        raise ValueError(
            f"checkpoint {path} was trained for task {ckpt.get('task')!r}, but this stage runs task "
            f"{task.name!r}: give it a {task.name} checkpoint"
        )
    data_hash = task.data_hash if task is not None else None
    if data_hash is not None and ckpt.get("data_hash") != data_hash:
        raise ValueError(
            f"checkpoint {path} was trained on data {str(ckpt.get('data_hash'))[:12]}, "
            f"but the data file has hash {data_hash[:12]}: regenerate or retrain"
        )
    return ckpt


def load_state(module: torch.nn.Module, state: dict, what: str, path: Path) -> None:
    """``load_state_dict`` with an error that names the file and the mismatching shapes."""
    own = module.state_dict()
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad or set(own) != set(state):
        raise ValueError(
            f"{what} in checkpoint {path} does not fit this configuration: "
            + ("; ".join(bad) or f"keys differ: {sorted(set(own) ^ set(state))}")
        )
    module.load_state_dict(state)


def build_model(task, ckpt: dict, path: Path) -> torch.nn.Module:
    """The predictive model of a checkpoint, rebuilt by ``task`` on its device."""
    try:
        model = task.build_model(ckpt["model_args"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: cannot rebuild its model for task {task.name!r}: {err}") from err
    load_state(model, ckpt["model_state"], "model", path)
    return model.to(task.device)


def build_policy(task, ckpt: dict, path: Path) -> torch.nn.Module:
    """The stop policy of a ``stopping`` checkpoint, rebuilt by ``task`` on its device."""
    try:
        policy = task.build_policy(ckpt["policy_args"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: cannot rebuild its policy for task {task.name!r}: {err}") from err
    load_state(policy, ckpt["policy_state"], "policy", path)
    return policy.to(task.device)
