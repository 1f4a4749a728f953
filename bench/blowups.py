"""Silent blow-ups of MAML's inner loop: on many fresh regression tasks, how many end with a huge
noise-free error, and how many of those the divergence flag caught.

    python -m bench.blowups --checkpoint results/few_shot_regression/seed0/stage1/model.pt \\
        --data results/few_shot_regression/data/data.npz --tasks 30000
    python -m bench.blowups ... --max-growth 4      # the same model with another growth bound

A task *blew up* when its noise-free MSE at step T (or at any step) exceeds ``--threshold``
(default 100: the sinusoids' amplitude is at most 5, so a sane fit is well under 25). It is
*flagged* when MAML's divergence flag is set by step T (:meth:`l2o.models.maml.MAML.diverged`);
a flagged task keeps the parameters it had before the step that diverged. The interest is in
blow-ups that are *not* flagged: they drive every mean-based choice made on a set that holds
one. Tasks are drawn from the training distribution with their own generator (seed, not the
validation or test sets).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def count_blowups(task, net, n_tasks: int, threshold: float, seed: int = 12345, chunk: int = 500) -> dict:
    """Fresh tasks through ``net``: how many blew up (noise-free MSE above ``threshold`` at step T, and at
    any step), how many were flagged, and the unflagged blow-ups' errors and shot counts."""
    gen = torch.Generator().manual_seed(seed)
    T = net.num_steps
    out = {"tasks": 0, "blown_at_T": 0, "blown_any_step": 0, "flagged": 0, "blown_flagged": 0,
           "unflagged_blowups": [], "max_mse_at_T": 0.0}
    done = 0
    with torch.no_grad():
        while done < n_tasks:
            b = task.sample_batch(min(chunk, n_tasks - done), gen)
            states = net(task.model_inputs(b))  # (T, B, P + 1)
            mse = task.clean_error(states, b)  # (B, T)
            flags = net.diverged(states)[-1]  # (B,)
            at_t, any_step = mse[:, -1] > threshold, (mse > threshold).any(dim=1)
            out["tasks"] += len(flags)
            out["blown_at_T"] += int(at_t.sum())
            out["blown_any_step"] += int(any_step.sum())
            out["flagged"] += int(flags.sum())
            out["blown_flagged"] += int((any_step & flags).sum())
            out["max_mse_at_T"] = max(out["max_mse_at_T"], float(mse[:, -1].max()))
            for i in (any_step & ~flags).nonzero().flatten().tolist():
                out["unflagged_blowups"].append({"mse_at_T": float(mse[i, -1]), "max_mse": float(mse[i].max()),
                                                 "shots": int(b["shots"][i])})
            done += len(flags)
    out["unflagged"] = len(out["unflagged_blowups"])
    out["T"] = T
    return out


def main(argv: list[str] | None = None) -> int:
    from l2o.checkpoints import load_checkpoint
    from l2o.models.maml import MAML, MAMLConfig
    from l2o.tasks.registry import load_task

    parser = argparse.ArgumentParser(prog="python -m bench.blowups", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a few_shot_regression model checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="its data file")
    parser.add_argument("--tasks", type=int, default=30000)
    parser.add_argument("--threshold", type=float, default=100.0)
    parser.add_argument("--max-growth", type=float, default=None, help="override the model's max_growth (0: none)")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    task = load_task("few_shot_regression", args.data, "cpu")
    ckpt = load_checkpoint(args.checkpoint, task=task)
    model_args = dict(ckpt["model_args"])
    if args.max_growth is not None:
        model_args["max_growth"] = args.max_growth or None
    net = task.build_model(model_args)
    net.load_state_dict(ckpt["model_state"])
    assert isinstance(net, MAML) and isinstance(net.config, MAMLConfig)
    res = count_blowups(task, net.eval(), args.tasks, args.threshold, args.seed)
    shots = np.bincount([u["shots"] for u in res["unflagged_blowups"]], minlength=1) if res["unflagged"] else []
    print(f"{args.checkpoint} (max_growth {model_args.get('max_growth')}): {res['tasks']} fresh tasks, "
          f"{res['blown_any_step']} with a noise-free MSE above {args.threshold:g} at some step "
          f"({res['blown_at_T']} at step T = {res['T']}), {res['flagged']} flagged, "
          f"{res['unflagged']} blow-ups NOT flagged (by shots: {list(shots)}); worst MSE at T {res['max_mse_at_T']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
