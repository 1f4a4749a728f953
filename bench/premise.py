"""Is there anything for a learned stop to find? The premise check of a few-shot task, evaluation only.

For a trained MAML network (the plain MAML's or Stage I's checkpoint) read with other inner
learning rates and more inner steps, on the task's meta-test tasks: per shot count k, the honest
oracle's best step (chosen on one half of each task's query set, scored on the other:
:meth:`~l2o.tasks.few_shot.task.FewShotClassificationTask.honest_oracle`) and its gain over the
last step T, with the 95% interval of that gain over tasks. The premise of learning to stop is
that the best step depends on the task (here: on k) and that stopping there beats step T by
more than noise; if no setting shows it, there is nothing for a policy to learn.

    python -m bench.premise --checkpoint results/few_shot_classification/seed0/stage1/model.pt \\
        --data results/few_shot_classification/data/data.npz --inner-lr 0.1 0.2 0.4 --steps 10 20
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch


def premise_rows(task, ckpt: dict, inner_lrs: list[float], steps: list[int], split: str = "test") -> list[dict]:
    """One row per (inner lr, T, shot count): the honest oracle's mean best step, its gain over step T
    (metric units, positive = better) with the 95% interval over tasks, and the optimistic oracle's."""
    rows = []
    sign = 1.0 if task.higher_is_better else -1.0
    for lr, T in itertools.product(inner_lrs, steps):
        net = task.build_model({**ckpt["model_args"], "inner_lr": float(lr), "num_steps": int(T)})
        net.load_state_dict(ckpt["model_state"])
        net.eval()
        comps, shots = {}, []
        with torch.no_grad():
            for b in task.eval_batches(split):
                for k, v in task.step_metrics(net(task.model_inputs(b)), b, full=True).items():
                    comps.setdefault(k, []).append(v.double().cpu().numpy())
                shots.append(b["shots"].cpu().numpy())
        comps = {k: np.concatenate(v) for k, v in comps.items()}
        shots = np.concatenate(shots)
        honest = task.honest_oracle(comps)
        m = task.metric
        losses = comps["loss_a"] + comps["loss_b"] if "loss_a" in comps else comps[m]
        best_honest = (losses.argmin(1) + 1).astype(float) if "loss_a" not in comps else (
            (comps["loss_a"].argmin(1) + comps["loss_b"].argmin(1)) / 2 + 1)
        optimistic = comps[m].max(1) if task.higher_is_better else comps[m].min(1)
        for k in sorted(set(shots.tolist())):
            sel = shots == k
            g = sign * (honest[m][sel] - comps[m][sel, -1])
            rows.append({"inner_lr": lr, "T": T, "shots": int(k), "tasks": int(sel.sum()),
                         "honest_best_step": float(best_honest[sel].mean()),
                         "honest_gain": float(g.mean()), "honest_gain_ci95": 1.96 * float(g.std(ddof=1)) / np.sqrt(sel.sum()),
                         "optimistic_gain": float((sign * (optimistic[sel] - comps[m][sel, -1])).mean()),
                         f"{m}_at_T": float(comps[m][sel, -1].mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from l2o.checkpoints import load_checkpoint
    from l2o.tasks.registry import load_task

    parser = argparse.ArgumentParser(prog="python -m bench.premise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="few_shot_classification")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--inner-lr", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    task = load_task(args.task, args.data, "cpu")
    ckpt = load_checkpoint(args.checkpoint, task=task)
    task.build_model(ckpt["model_args"])
    df = pd.DataFrame(premise_rows(task, ckpt, args.inner_lr, args.steps, args.split))
    pd.set_option("display.width", 200)
    print(df.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
