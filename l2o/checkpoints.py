"""Self-describing checkpoints: config + state, rebuilt without the code that wrote them.

Two kinds: ``predictive`` (a model alone: LISTA baseline, Stage I) and
``stopping`` (model + policy + candidate steps + beta: Stages II, III, AEVB).
"""

from __future__ import annotations

from pathlib import Path

import torch

from l2o.io import save_torch_atomic
from l2o.models.stop_policy import StopPolicy, StopPolicyConfig

KINDS = ("predictive", "stopping")


def save_checkpoint(path: Path, **payload) -> None:
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}")
    save_torch_atomic(payload, path)


def load_checkpoint(path: Path, kind: str | None = None, data_hash: str | None = None) -> dict:
    """Read a checkpoint and check its kind and the data it was trained on."""
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


def build_model(task, ckpt: dict, path: Path, device) -> torch.nn.Module:
    """The predictive model of a checkpoint, on ``device``."""
    model = task.build_model({k: v for k, v in ckpt["model_args"].items() if k not in ("m", "n")})
    load_state(model, ckpt["model_state"], "model", path)
    return model.to(device)


def build_policy(ckpt: dict, path: Path, device) -> StopPolicy:
    policy = StopPolicy(StopPolicyConfig(**ckpt["policy_args"]))
    load_state(policy, ckpt["policy_state"], "policy", path)
    return policy.to(device)
