"""MAML-stop's two costs: tasks per second with early exit vs every inner step, and Stage I's memory.

1. **Early exit**: MAML (conv4 on 28 x 28, the default config's sizes) adapts a batch of
   few-shot tasks with T inner steps; with early exit
   (:func:`l2o.stopping.inference.predict_early_exit`) a task that stops leaves the batch,
   so its later inner steps are never computed. A policy controlled to stop every task at
   step ``s`` (its logit depends on the step position only) is timed for several ``s``
   against adapting every task for all T steps without a policy; the ideal speed-up
   ignores the policy's own cost: T / s.
2. **Memory of Stage I** at the same T: the peak resident memory of one meta-iteration
   (forward, backward, Adam) in a fresh process, for plain MAML (query loss after step T),
   Stage I's full soft-min (the query loss after every step, with its graph) and Stage I's
   sampled loss (the paper's App. B.2.2: only the drawn step's query loss keeps its graph).
   The paper claims the sampled variant costs the memory of plain MAML.

    python -m bench.few_shot            # default sizes: 5-way 1-5-shot, conv4-16, T = 10
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench.save import save_result
from bench.timing import time_repeats

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("plain", "full", "sampled")


def _glyph_like_batch(ways: int, shots: int, query: int, tasks: int, size: int, seed: int = 0):
    """Random few-shot classification tasks of the right shapes (timing does not need real images)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    S, Q = ways * shots, ways * query
    return {"support_x": torch.rand(tasks, S, 1, size, size, generator=g),
            "support_y": torch.arange(ways).repeat_interleave(shots).expand(tasks, S).clone(),
            "support_mask": torch.ones(tasks, S), "query_x": torch.rand(tasks, Q, 1, size, size, generator=g),
            "query_y": torch.arange(ways).repeat_interleave(query).expand(tasks, Q).clone(),
            "shots": torch.full((tasks,), shots)}


def _task_and_model(args):
    import torch

    from l2o.tasks.few_shot.task import FewShotClassificationTask

    task = FewShotClassificationTask.__new__(FewShotClassificationTask)  # no data file: shapes only
    task.device, task.learner = "cpu", None
    torch.manual_seed(0)
    from l2o.models.maml import MAML, MAMLConfig

    net = {"kind": "conv4", "channels": args.channels, "image_size": args.size, "out_features": args.ways}
    task.learner = MAML(MAMLConfig(net=net, num_steps=args.steps, inner_lr=args.inner_lr, loss="ce"))
    return task, task.learner


def measure_early_exit(args) -> dict:
    import torch

    from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
    from l2o.stopping.inference import predict_early_exit

    torch.set_num_threads(args.threads)
    task, net = _task_and_model(args)
    T = net.num_steps
    batches = [_glyph_like_batch(args.ways, args.shots, args.query, args.tasks_per_batch, args.size, seed=i)
               for i in range(args.batches)]
    n = args.batches * args.tasks_per_batch
    policy = StopPolicy(StopPolicyConfig(task.policy_in_features(), [8])).eval()

    def every_step():
        with torch.no_grad():
            for b in batches:
                net(task.model_inputs(b))

    t_all = time_repeats(every_step, warmup=1, repeats=args.repeats, device="cpu")["median"]
    rows = []
    for stop in args.stops:
        with torch.no_grad():  # the logit is large and positive from t = stop on: features' last two are t/T, 1 - t/T
            for p in policy.parameters():
                p.zero_()
            policy.first_layer.weight[0, -2] = 1.0
            policy.net[-1].weight.fill_(1000.0)
            policy.net[-1].bias.fill_(-1000.0 * (stop - 0.5) / T)
        stops = torch.cat([predict_early_exit(task, net, policy, b, list(range(1, T + 1)))[1] for b in batches])
        assert bool((stops == stop).all()), f"controlled policy stopped at {stops.unique().tolist()}, not {stop}"

        def early():
            with torch.no_grad():
                for b in batches:
                    predict_early_exit(task, net, policy, b, list(range(1, T + 1)))

        t = time_repeats(early, warmup=1, repeats=args.repeats, device="cpu")["median"]
        rows.append({"stop": stop, "tasks_per_s": n / t, "speedup": t_all / t, "ideal": T / stop,
                     "share_of_ideal": (t_all / t) / (T / stop)})
    return {"every_step_tasks_per_s": n / t_all, "tasks": n, "rows": rows}


def stage1_memory_worker(kind: str, args) -> dict:
    """Peak RSS (MiB) over the imports and setup, and of one meta-iteration of ``kind``."""
    import torch

    from l2o.stopping.objectives import soft_min_loss
    from l2o.train.stage1 import sampled_step_loss

    torch.set_num_threads(args.threads)
    task, net = _task_and_model(args)
    batch = _glyph_like_batch(args.ways, args.shots, args.query, args.meta_batch, args.size, seed=1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from bench.timing import current_rss_mib

    rss_before = current_rss_mib()
    if kind == "plain":
        loss = task.step_losses(net(task.model_inputs(batch), [net.num_steps]), batch).mean()
    elif kind == "full":
        loss = soft_min_loss(task.step_losses(net(task.model_inputs(batch)), batch), 0.01)
    else:
        loss = sampled_step_loss(task, net, batch, 0.01, torch.Generator().manual_seed(0))
    graph = current_rss_mib() - rss_before  # the forward's graph, held until the backward
    opt.zero_grad()
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "rss_before_mib": before, "peak_mib": peak, "iteration_mib": peak - before,
            "graph_mib": graph}


def measure_memory(args) -> list[dict]:
    out = []
    for kind in KINDS:
        cmd = [sys.executable, "-m", "bench.few_shot", "--worker", kind, *args.passthrough]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker {kind} failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def render(result: dict) -> str:
    c, ee = result["config"], result["early_exit"]
    lines = [
        f"# Few-shot (MAML-stop) — {result['when']}",
        "",
        f"MAML conv4 with {c['channels']} channels on {c['size']}x{c['size']}, {c['ways']}-way {c['shots']}-shot, "
        f"{c['query']} query per class, T = {c['steps']}; {ee['tasks']} tasks in batches of {c['tasks_per_batch']}; "
        f"{c['threads']} threads.",
        "",
        f"Every inner step, no policy: **{ee['every_step_tasks_per_s']:.1f} tasks/s**.",
        "",
        "| every task stops at | early exit (tasks/s) | speed-up | ideal T / stop | share of ideal |",
        "|---|---|---|---|---|",
        *[f"| {r['stop']} | {r['tasks_per_s']:.1f} | {r['speedup']:.2f}x | {r['ideal']:.2f}x | {r['share_of_ideal']:.2f} |"
          for r in ee["rows"]],
        "",
        f"Stage I memory, one meta-iteration of {c['meta_batch']} tasks in a fresh process: the resident memory the "
        "forward pass adds and holds until the backward (its graph), and the process's peak RSS above its peak "
        "before the iteration (0 when the set-up peaked higher):",
        "",
        "| loss | graph after the forward (MiB) | peak RSS increase (MiB) | peak RSS (MiB) |",
        "|---|---|---|---|",
        *[f"| {m['kind']} | {m['graph_mib']:.0f} | {m['iteration_mib']:.0f} | {m['peak_mib']:.0f} |"
          for m in result["memory"]],
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.few_shot", description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--query", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--inner-lr", type=float, default=0.1)
    p.add_argument("--tasks-per-batch", type=int, default=25)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--stops", type=int, nargs="+", default=[2, 5, 10])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", choices=KINDS, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(stage1_memory_worker(args.worker, args)))
        return 0
    args.passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                        if k in ("channels", "size", "ways", "shots", "query", "steps", "inner_lr", "meta_batch",
                                 "threads")]
    result = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "worker", "passthrough")},
              "early_exit": measure_early_exit(args), "memory": measure_memory(args),
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result["config"]["out"] = str(args.out)
    md = render(result)
    print(md)
    save_result(args.out, "few-shot", result, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
