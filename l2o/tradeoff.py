"""Accuracy against compute: the points of every curve, from one seed's evaluation, and the
timings behind them.

Compute is measured two ways: the mean number of steps an example runs (the
model's unit of work), and wall-clock seconds per example on a timing subset of
the test set (the first ``timing_examples`` examples, in the test set's fixed
order and batches). One definition everywhere (the report, the curves, ``bench/``):

* a fixed depth ``d`` costs what computing that step's output alone costs: ``d`` model steps
  and the read-out of step ``d`` (:func:`depth_seconds`, all depths from one instrumented pass);
  depth ``T`` is *the plain model run to T*, the baseline every speed-up is quoted against;
* the learned stop's seconds come from real early exit
  (:func:`l2o.stopping.inference.predict_early_exit`), the policy's cost included
  (:func:`early_exit_seconds`);
* the non-learned rule has no early-exit implementation of its own, so its seconds are the
  fixed-depth seconds at each example's stop, averaged (marked as such in the report).

Each timing is the median of ``repeats`` passes after a warm-up pass. Functions here return
plain lists and dicts (JSON for ``curves.json``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from l2o.metrics import by_condition, ordered_conditions
from l2o.stopping.inference import predict_early_exit
from l2o.stopping.rules import first_below
from l2o.tasks.base import batch_size_of

#: Thresholds of the non-learned rule swept for its curve (relative change of the state).
RULE_GRID = tuple(float(e) for e in np.logspace(-5, 0, 26))


def metric_by_condition(task, components: dict[str, np.ndarray], conditions: np.ndarray) -> dict[str, float]:
    """The task's headline metric over all examples (``mixed``) and per condition.

    :param components: ``{name: (N,)}`` metric components at one step per example.
    """
    return {c: v[task.metric] for c, v in by_condition(task.summarise, components, conditions, True).items()}


def mean_by_condition(values: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Mean of ``values`` (N,) over all examples (``mixed``) and per condition.

    >>> mean_by_condition(np.array([1.0, 3.0, 5.0]), np.array(["a", "a", "b"]))
    {'mixed': 3.0, 'a': 2.0, 'b': 5.0}
    """
    out = {"mixed": float(np.mean(values))}
    for cond in ordered_conditions(conditions):
        out[cond] = float(np.mean(values[conditions == cond]))
    return out


def per_step_by_condition(task, out) -> dict[str, list[float]]:
    """The model truncated at each fixed depth: ``{condition: [metric at step 1..T]}``.

    :param out: :class:`l2o.train.common.SetOutputs` with every step's components (N, T).
    """
    T = out.losses.shape[1]
    per_t = [metric_by_condition(task, {k: v[:, t] for k, v in out.components.items()}, out.conditions)
             for t in range(T)]
    return {c: [p[c] for p in per_t] for c in per_t[0]}


def rule_curve(task, out, candidates: list[int], depth_seconds: list[float] | None,
               grid=RULE_GRID) -> list[dict]:
    """The non-learned rule "stop at the first candidate step whose state changed by less than
    eps", swept over ``grid``: one point per distinct stopping pattern, each
    ``{"eps", "steps": {cond: mean stop step}, "metric": {cond: value}, "seconds": per example}``.

    :param out: SetOutputs with ``change`` (N, T) and every step's components.
    :param depth_seconds: (T,) seconds per example to reach each depth (None: not timed).
    """
    cols = np.asarray([t - 1 for t in candidates])
    points, seen = [], set()
    for eps in grid:
        idx = cols[first_below(out.change[:, cols], eps)]
        key = idx.tobytes()
        if key in seen:
            continue
        seen.add(key)
        points.append({
            "eps": float(eps),
            "steps": mean_by_condition(idx + 1.0, out.conditions),
            "metric": metric_by_condition(task, out.at(idx), out.conditions),
            "seconds": seconds_at_stops(depth_seconds, idx + 1),
        })
    return points


def seconds_at_stops(depth_seconds: list[float] | None, stops: np.ndarray) -> float:
    """Mean over examples of the fixed-depth seconds at each example's (1-based) stop step.

    >>> seconds_at_stops([1.0, 2.0, 3.0], np.array([1, 3]))
    2.0
    """
    if depth_seconds is None:
        return float("nan")
    return float(np.asarray(depth_seconds)[np.asarray(stops) - 1].mean())


def timing_batches(task, split: str, n_examples: int) -> list[dict]:
    """The first ``n_examples`` examples of a fixed set, as the set's own batches (the last cut)."""
    if n_examples < 1:
        raise ValueError(f"evaluate.timing_examples must be >= 1, got {n_examples}")
    batches, have = [], 0
    for batch in task.eval_batches(split):
        b = batch_size_of(batch)
        if have + b > n_examples:
            keep = torch.zeros(b, dtype=torch.bool, device=next(iter(batch.values())).device)
            keep[: n_examples - have] = True
            batch = task.select(batch, keep)
            b = n_examples - have
        batches.append(batch)
        have += b
        if have >= n_examples:
            break
    return batches


def _sync_for(batch) -> callable:
    tensor = next(iter(batch.values())) if isinstance(batch, dict) else batch
    return torch.cuda.synchronize if getattr(tensor, "is_cuda", False) else (lambda: None)


def timed_pass(fn, batches: list, repeats: int = 1) -> float:
    """Seconds for ``fn(batch)`` over every batch (the median of ``repeats`` passes), after ``fn`` ran
    once on the first (a warm-up: the first call of a shape pays for kernel selection and
    allocation); no autograd, and a CUDA batch is waited for before each clock reading."""
    sync = _sync_for(batches[0])
    times = []
    with torch.no_grad():
        fn(batches[0])
        for _ in range(max(int(repeats), 1)):
            sync()
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            sync()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _examples(batches: list[dict]) -> int:
    return sum(batch_size_of(b) for b in batches)


@torch.no_grad()
def depth_seconds(task, net, batches: list[dict], repeats: int = 3, also=None) -> list[float]:
    """Seconds per example to compute the output at each fixed depth 1..T alone, (T,), from one
    instrumented step-wise pass per repeat: the time of steps 1..d plus the read-out at d (the
    read-outs of other depths not counted). Depth T is the plain model run to T. The median of
    ``repeats`` passes, after a warm-up pass.

    ``also``: ``{name: fn(batch)}`` timed in the same rounds, each pass of each right after the
    depth pass (the passes alternate, so that a neighbour's load on a shared machine falls on both
    alike); their medians in seconds per example are stored in ``also_seconds`` on the returned list."""
    T = net.num_steps
    sync = _sync_for(batches[0])
    also = also or {}

    def time_fn(fn) -> float:
        sync()
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        sync()
        return (time.perf_counter() - t0) / _examples(batches)

    def one_pass() -> np.ndarray:
        step, read = np.zeros(T), np.zeros(T)
        for b in batches:
            inputs = task.model_inputs(b)
            sync()
            t_prev = time.perf_counter()
            carry = net.init_state(inputs)
            for t in range(1, T + 1):
                carry = net.step(t, carry, inputs)
                sync()
                t1 = time.perf_counter()
                net.readout(t, carry, inputs)
                sync()
                t2 = time.perf_counter()
                step[t - 1] += t1 - t_prev
                read[t - 1] += t2 - t1
                t_prev = t2
        return (np.cumsum(step) + read) / _examples(batches)

    one_pass()  # warm-up
    for fn in also.values():
        fn(batches[0])
    passes, others = [], {name: [] for name in also}
    for _ in range(max(int(repeats), 1)):
        passes.append(one_pass())
        for name, fn in also.items():
            others[name].append(time_fn(fn))
    out = DepthSeconds(float(v) for v in np.median(passes, axis=0))
    out.also_seconds = {name: float(np.median(v)) for name, v in others.items()}
    return out


class DepthSeconds(list):
    """The seconds per example of each depth (a list), with the seconds of what was timed beside it."""

    also_seconds: dict


def early_exit_seconds(task, net, policy, batches: list[dict], candidates: list[int], rule=None,
                       sample_seed: int | None = None, repeats: int = 3, decide=None) -> float:
    """Seconds per example of early-exit inference (the median of ``repeats`` passes): with ``rule``
    (default the paper's), sampled with ``sample_seed``, or stopping where ``decide`` says."""
    from l2o.stopping.rules import PAPER

    def run(b):
        uniforms = None
        if sample_seed is not None:
            gen = torch.Generator().manual_seed(sample_seed)
            uniforms = torch.rand((batch_size_of(b), len(candidates)), generator=gen).to(
                next(iter(b.values())).device)
        predict_early_exit(task, net, policy, b, candidates, uniforms, rule or PAPER, decide)

    return timed_pass(run, batches, repeats) / _examples(batches)
