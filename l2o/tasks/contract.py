"""The contract every task passes: run it on your own task before you train it.

:func:`check_task` builds a task from a (small) config section and checks what
the stages, the evaluation and early-exit inference rely on:

* the same data config gives the same data (hash) and the same seed the same batch;
* the model's states have one entry per step, ``forward(steps=...)`` equals the
  matching rows of the full forward, and the step-wise protocol
  (``init_state``/``step``/``readout``) gives the same states;
* per-step losses are (B, T), finite, and carry gradients to the model;
* stop logits are (K, B) and the oracle built from the losses sums to one;
* metric components are (B, T), the summary holds the task's headline metric,
  conditions are one per example;
* a model with step summaries gives the same ones step-wise as from ``forward(summaries=True)``;
* early exit stops every example where the compute-everything path does (under the paper's
  rule and under the median rule), with a mix of stop steps actually present, and predicts
  the state it would have read there.

``python -m l2o.tasks.contract --config config.yaml --task <name>`` runs it
on a task's section of a config file (use a small one).
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from l2o.stopping.distribution import stop_log_distribution
from l2o.stopping.inference import predict_early_exit
from l2o.stopping.oracle import oracle_distribution
from l2o.stopping.rules import MEDIAN, PAPER, stop_index
from l2o.tasks.base import batch_size_of, model_outputs
from l2o.tasks.registry import load_task, task_class


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"task contract: {what}")


def _first_tensor(x):
    return x if isinstance(x, torch.Tensor) else next(iter(x.values())) if isinstance(x, dict) else x[0]


def check_task(name: str, section: dict, workdir: Path, batch_size: int = 4) -> dict:
    """Check task ``name`` on config ``section`` (its data, model and policy sections), writing its
    data under ``workdir``; returns a few facts (T, metric, conditions) for the caller to print."""
    cls = task_class(name)
    workdir = Path(workdir)
    a, b = workdir / "a" / "data.npz", workdir / "b" / "data.npz"
    meta_a = cls.prepare_data(dict(section.get("data", {})), a)
    meta_b = cls.prepare_data(dict(section.get("data", {})), b)
    _check(meta_a["hash"] == meta_b["hash"], "the same data config must give the same data (hash)")
    task = load_task(name, a, "cpu")
    _check(task.data_hash == meta_a["hash"], "load(...).data_hash must equal the hash prepare_data reported")

    torch.manual_seed(0)
    net = task.build_model(task.model_args(section.get("model", {})))
    T = net.num_steps
    _check(T >= 2, f"a model needs at least 2 steps, has {T}")
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    batch, again = task.sample_batch(batch_size, g1), task.sample_batch(batch_size, g2)
    _check(batch.keys() == again.keys() and all(torch.equal(batch[k], again[k]) for k in batch),
           "sample_batch must be a function of the generator's state")
    B = batch_size_of(batch)
    _check(B == batch_size, f"sample_batch({batch_size}) gave {B} examples")

    net.eval()
    inputs = task.model_inputs(batch)
    with torch.no_grad():
        states = net(inputs)
        _check(states.shape[:2] == (T, B), f"states must be (T={T}, B={B}, ...), got {tuple(states.shape)}")
        some = [1, T] if T > 2 else [T]
        _check(torch.allclose(net(inputs, some), states[[s - 1 for s in some]], atol=1e-5),
               "forward(steps=...) must equal the matching rows of forward()")
        carry = net.init_state(inputs)
        summaries = net(inputs, summaries=True)[1] if getattr(net, "summary_size", 0) else None
        for t in range(1, T + 1):
            carry = net.step(t, carry, inputs)
            _check(torch.allclose(net.readout(t, carry, inputs), states[t - 1], atol=1e-5),
                   f"the step-wise protocol must give forward()'s state at step {t}")
            if summaries is not None:
                _check(torch.allclose(net.summarize(t, carry, inputs), summaries[t - 1], atol=1e-5),
                       f"the step-wise summaries must equal forward(summaries=True)'s at step {t}")

    trainee = copy.deepcopy(net).train()  # train mode moves BatchNorm statistics: keep `net` as it was
    losses = task.step_losses(trainee(inputs), batch)
    _check(tuple(losses.shape) == (B, T), f"step_losses must be (B, T) = ({B}, {T}), got {tuple(losses.shape)}")
    _check(bool(torch.isfinite(losses).all()), "step_losses must be finite")
    losses.mean().backward()
    grads = [p.grad for p in trainee.parameters() if p.requires_grad]
    _check(any(g is not None and bool(g.abs().sum() > 0) for g in grads), "the loss must reach the model's parameters")

    q = oracle_distribution(losses.detach().double(), beta=1.0)
    _check(torch.allclose(q.sum(dim=1), torch.ones(B, dtype=torch.float64)), "the oracle must sum to one")

    policy_section = {k: v for k, v in section.get("policy", {}).items() if k != "candidate_threshold"}
    policy = task.build_policy(task.policy_args(policy_section)).eval()
    candidates = list(range(1, T + 1))
    steps = torch.tensor(candidates)
    fn = task.stop_logit_fn(policy)
    with torch.no_grad():
        logits = fn(batch, states, steps, T, summaries)
    _check(tuple(logits.shape) == (T, B), f"stop logits must be (K, B) = ({T}, {B}), got {tuple(logits.shape)}")
    qp = stop_log_distribution(logits.T.double()).exp()
    _check(torch.allclose(qp.sum(dim=1), torch.ones(B, dtype=torch.float64)), "q_phi must sum to one")

    comps = task.step_metrics(states, batch, full=True)
    for k, v in comps.items():
        _check(tuple(v.shape) == (B, T), f"step_metrics[{k!r}] must be (B, T), got {tuple(v.shape)}")
    summary = task.summarise({k: v[:, -1].detach().double().cpu().numpy() for k, v in comps.items()})
    _check(task.metric in summary and not math.isnan(summary[task.metric]),
           f"summarise must give the headline metric {task.metric!r} (not NaN)")
    conds = task.conditions(batch)
    _check(len(conds) == B, f"conditions must give one label per example, got {len(conds)}")

    stops = check_early_exit_mix(task, net, policy, batch, candidates)
    for split, mixed in task.eval_splits().items():
        first = next(iter(task.eval_batches(split)))
        _check(_first_tensor(first).shape[0] >= 1, f"eval_batches({split!r}) must give non-empty batches")
    return {"T": T, "metric": task.metric, "conditions": sorted(set(np.asarray(conds).tolist())),
            "stops": stops}


def _spread_bias(policy: torch.nn.Module, delta: float) -> None:
    """Shift the policy's output bias by ``delta`` (its last 1-output linear layer)."""
    for module in policy.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == 1:
            module.bias += delta


@torch.no_grad()
def check_early_exit_mix(task, net, policy, batch, candidates) -> list[int]:
    """Early exit against the compute-everything path on ``batch`` (paper and median rules), with the
    policy's output bias shifted (in place) so that the examples stop at different steps: a mix is
    required, since with every example stopping at T the check would say nothing. Returns the
    distinct stop steps seen."""
    T, B = net.num_steps, batch_size_of(batch)
    steps = torch.tensor(candidates, device=task.device)
    states, summaries = model_outputs(net, task.model_inputs(batch), candidates, task.stop_logit_fn(policy))
    logits = task.stop_logit_fn(policy)(batch, states, steps, T, summaries).T  # (B, K)
    # put the boundary of the first candidate halfway between two of its middle logits: about half the
    # examples stop there, the others go on (an untrained policy gives examples different logits),
    # and no example sits on the boundary, where two float computations may differ
    first = logits[:, 0].sort().values
    i = max(len(first) // 2, 1)
    _spread_bias(policy, -0.5 * float(first[i - 1] + first[min(i, len(first) - 1)]))
    seen = set()
    for rule in (PAPER, MEDIAN):
        logits = task.stop_logit_fn(policy)(batch, states, steps, T, summaries).T
        stop = stop_index(logits, rule=rule)
        pred, stop_step = predict_early_exit(task, net, policy, batch, candidates, rule=rule)
        _check(torch.equal(stop_step.cpu(), (stop + 1).cpu()),
               f"early exit ({rule.name} rule) must stop where the all-steps path does: "
               f"{stop_step.tolist()} vs {(stop + 1).tolist()}")
        expected = states[stop, torch.arange(B)]  # states at the candidates
        _check(torch.allclose(pred, expected, atol=1e-5), f"early exit ({rule.name} rule) must predict the state at its stop")
        seen.update(stop_step.tolist())
    _check(len(seen) > 1, f"the early-exit check needs examples stopping at different steps, got only {sorted(seen)} "
                          f"(use a batch of several examples)")
    return sorted(seen)


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(prog="python -m l2o.tasks.contract", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a config file with the task's section (small)")
    parser.add_argument("--task", required=True)
    args = parser.parse_args(argv)
    section = (yaml.safe_load(args.config.read_text()) or {}).get(args.task, {})
    with tempfile.TemporaryDirectory() as tmp:
        facts = check_task(args.task, section, Path(tmp))
    print(f"task {args.task!r} passes the contract: {facts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
