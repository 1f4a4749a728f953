"""Early exit against the plain model run to T, for every task, with controlled stops.

For each task (its section of a config: the model, the policy, the evaluation's batches):

* **plain model to T**: the network computing step T alone (:func:`l2o.tradeoff.depth_seconds`,
  depth T), the baseline of every speed-up here, in the report and in its curves;
* **early exit** (:func:`l2o.stopping.inference.predict_early_exit`): the policy runs at each
  candidate step for the examples still running (its cost counts against early exit), and the
  examples stop where we say: every example at the first candidate at or after T/4, T/2, 3T/4
  and T, and a mix (each example a random candidate). The policy's own decision is replaced
  (``decide``), its computation is not.

Speed-up = plain seconds / early-exit seconds; ideal = T / mean stop step (model steps only);
share = speed-up / ideal. Measured at the evaluation's batch size and at batch 1, for the
candidate steps of a trained checkpoint (``--runs DIR``: ``DIR/results/<task>/seed0/stage2/
model.pt`` with its data file) or of an untrained model (every step a candidate; the policy's
cost does not depend on its weights), and for every step. Each timing: median of ``--repeats``
passes after a warm-up.

    python -m bench.early_exit                      # config.yaml's sizes, untrained models
    python -m bench.early_exit --runs .             # the default run's trained models (after make run)
    python -m bench.early_exit --tasks denoising --config configs/paper.yaml
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.save import record

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def controlled_targets(candidates: list[int], T: int, how, n: int, seed: int = 0) -> np.ndarray:
    """The stop step of each of ``n`` examples: the first candidate at or after ``how`` x T (a fraction),
    or (``how == "mix"``) a candidate drawn uniformly per example.

    >>> controlled_targets([2, 4, 6, 8], 8, 0.5, 3).tolist()
    [4, 4, 4]
    >>> sorted(set(controlled_targets([2, 4, 6, 8], 8, "mix", 200).tolist()))
    [2, 4, 6, 8]
    """
    cand = np.asarray(candidates)
    if how == "mix":
        return cand[np.random.default_rng(seed).integers(len(cand), size=n)]
    return np.full(n, cand[np.searchsorted(cand, how * T - 1e-9)])


def _split(batches: list[dict], size: int | None) -> list[dict]:
    """The same examples re-batched by ``size`` (None: as they are)."""
    if size is None:
        return batches
    out = []
    for b in batches:
        n = len(next(iter(b.values())))
        out += [{k: v[i:i + size] for k, v in b.items()} for i in range(0, n, size)]
    return out


def time_early_exit(task, net, policy, batches, candidates, targets, repeats: int) -> tuple[float, float, float]:
    """Seconds per example of the plain model to T and of early exit with the examples stopping at
    ``targets`` (N,), timed in alternating passes, and the mean realised stop step (checked against the
    targets)."""
    from l2o.stopping.inference import predict_early_exit
    from l2o.tradeoff import depth_seconds

    per_batch, start = {}, 0
    for b in batches:  # each example's decision at each candidate, looked up in one indexing op (as cheap
        n = len(next(iter(b.values())))  # as the rule's own comparison, which it replaces)
        goal = torch.as_tensor(targets[start:start + n]).view(-1, 1)
        device = next(iter(b.values())).device
        per_batch[id(b)] = (torch.as_tensor(candidates).view(1, -1) >= goal).t().contiguous().to(device)  # (K, n)
        start += n

    def run(b):
        table = per_batch[id(b)]
        return predict_early_exit(task, net, policy, b, candidates, decide=lambda k, rows, logits: table[k][rows])

    stops = torch.cat([run(b)[1].cpu() for b in batches])
    if not torch.equal(stops, torch.as_tensor(targets)):
        raise AssertionError("early exit did not stop where it was told to")
    depths = depth_seconds(task, net, batches, repeats, {"early_exit": run})
    return depths[-1], depths.also_seconds["early_exit"], float(stops.double().mean())


def setup_task(name: str, section: dict, runs: Path | None, workdir: Path):
    """``(task, net, policy, trained candidates)``: from the run's Stage II checkpoint when there is one,
    else an untrained model and policy of the section's sizes on freshly written data."""
    from l2o.checkpoints import build_model, build_policy, load_checkpoint
    from l2o.stopping.candidates import split_policy_section
    from l2o.tasks.registry import load_task, task_class

    ckpt_path = runs / "results" / name / "seed0" / "stage2" / "model.pt" if runs else None
    if ckpt_path is not None and ckpt_path.is_file():
        task = load_task(name, runs / "results" / name / "data" / "data.npz", "cpu")
        ckpt = load_checkpoint(ckpt_path, "stopping", task)
        return (task, build_model(task, ckpt, ckpt_path).eval(), build_policy(task, ckpt, ckpt_path).eval(),
                list(ckpt["candidate_steps"]), f"trained ({ckpt_path})")
    data = workdir / name / "data.npz"
    task_class(name).prepare_data(dict(section.get("data", {})), data)
    task = load_task(name, data, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args(section.get("model", {}))).eval()
    _, network = split_policy_section(section.get("policy", {}))
    policy = task.build_policy(task.policy_args(network)).eval()
    return task, net, policy, list(range(1, net.num_steps + 1)), "untrained (every step a candidate)"


def measure_task(name: str, section: dict, runs: Path | None, workdir: Path, repeats: int,
                 batch1_examples: int) -> dict:
    from l2o.tradeoff import timing_batches

    task, net, policy, trained, source = setup_task(name, section, runs, workdir)
    T = net.num_steps
    n_timing = int((section.get("evaluate") or {}).get("timing_examples", 256))
    eval_batches = timing_batches(task, "test", n_timing)
    out = {"task": name, "T": T, "source": source, "policy": policy.describe(), "timing_examples": n_timing,
           "rows": []}
    for batch_label, batches in (("evaluation's", eval_batches),
                                 ("1", _split(timing_batches(task, "test", batch1_examples), 1))):
        n = sum(len(next(iter(b.values()))) for b in batches)
        for cand_label, candidates in (("trained", trained), ("every step", list(range(1, T + 1)))):
            if cand_label == "every step" and candidates == trained:
                continue
            for how in (*FRACTIONS, "mix"):
                targets = controlled_targets(candidates, T, how, n)
                plain, seconds, mean_stop = time_early_exit(task, net, policy, batches, candidates, targets, repeats)
                speed = plain / seconds
                out["rows"].append({"batch": batch_label, "examples": n, "candidates": cand_label,
                                    "candidate_steps": candidates, "stops": how if how == "mix" else f"{how:g} T",
                                    "mean_stop": mean_stop, "plain_seconds": plain, "early_exit_seconds": seconds,
                                    "speedup": speed, "ideal": T / mean_stop, "share_of_ideal": speed * mean_stop / T})
    return out


def render(result: dict) -> str:
    lines = [f"# Early exit against the plain model run to T — {result['when']}", "",
             f"{result['machine']}; `{result['command']}`. Speed-up = plain model to T / early exit (policy "
             "included), seconds per example, median of the repeats; ideal = T / mean stop step.", ""]
    for t in result["tasks"]:
        lines += [f"## {t['task']} (T = {t['T']}; {t['source']}; policy {t['policy']})", "",
                  "| batch | candidates | stops | mean stop | plain to T (ms/example) | early exit (ms/example) | "
                  "speed-up | ideal | share of ideal |", "|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            cand = r["candidates"] + (f" {r['candidate_steps']}" if r["candidates"] == "trained" else "")
            lines.append(f"| {r['batch']} ({r['examples']} ex.) | {cand} | {r['stops']} | {r['mean_stop']:.2f} | "
                         f"{1e3 * r['plain_seconds']:.3g} | {1e3 * r['early_exit_seconds']:.3g} | "
                         f"{r['speedup']:.2f}× | {r['ideal']:.2f}× | {r['share_of_ideal']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.early_exit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: the config's tasks")
    parser.add_argument("--runs", type=Path, default=None, help="a run directory with trained Stage II models")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch1-examples", type=int, default=20, help="examples timed one at a time")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    tasks = args.tasks or config["tasks"]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure_task(name, config.get(name, {}), args.runs, Path(tmp), args.repeats,
                                args.batch1_examples) for name in tasks]
    record(args.out, "early-exit", "bench.early_exit", argv, {"tasks": results}, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
