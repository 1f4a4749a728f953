"""The evaluation side of accuracy against compute: per-step metrics by condition, the
non-learned rule's sweep, timing subsets, and the timings' shapes on the tiny sparse problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2o.tradeoff import mean_by_condition, per_step_by_condition, rule_curve, seconds_at_stops, timing_batches
from l2o.train.common import SetOutputs


class MeanTask:
    """The least of a task the functions need: a metric that is the mean of component ``err``."""

    metric = "err"

    @staticmethod
    def summarise(components, weights=None):
        return {"err": float(np.average(components["err"], weights=weights))}


def outputs() -> SetOutputs:
    err = np.array([[4.0, 2.0, 1.0], [8.0, 4.0, 3.0], [6.0, 6.0, 6.0], [5.0, 1.0, 0.5]])
    change = np.array([[1.0, 0.5, 0.1], [1.0, 0.2, 0.1], [1.0, 0.0, 0.0], [1.0, 0.5, 0.01]])
    return SetOutputs(losses=torch.tensor(err), components={"err": err},
                      conditions=np.array(["a", "a", "b", "b"]), change=change)


def test_per_step_by_condition_is_the_metric_of_each_depth():
    got = per_step_by_condition(MeanTask(), outputs())
    assert got == {"mixed": [5.75, 3.25, 2.625], "a": [6.0, 3.0, 2.0], "b": [5.5, 3.5, 3.25]}


def test_rule_curve_has_one_point_per_stopping_pattern_with_hand_computed_values():
    pts = rule_curve(MeanTask(), outputs(), [1, 2, 3], depth_seconds=[1.0, 2.0, 3.0], grid=(0.05, 0.15, 0.3, 0.6))
    # eps 0.05: stops at steps 3, 3, 2, 3; eps 0.15: 3, 3, 2, 3 (same pattern: dropped); 0.3: 3, 2, 2, 3; 0.6: 2, 2, 2, 2
    assert [p["eps"] for p in pts] == [0.05, 0.3, 0.6]
    assert pts[0]["steps"] == {"mixed": 2.75, "a": 3.0, "b": 2.5}
    assert pts[0]["metric"]["mixed"] == pytest.approx((1.0 + 3.0 + 6.0 + 0.5) / 4)
    assert pts[2]["metric"]["mixed"] == pytest.approx((2.0 + 4.0 + 6.0 + 1.0) / 4)
    assert pts[1]["seconds"] == pytest.approx(2.5)  # fixed-depth seconds at each stop, averaged


def test_rule_curve_never_stops_past_the_last_step():
    pts = rule_curve(MeanTask(), outputs(), [1, 2, 3], depth_seconds=None, grid=(1e-9,))
    assert pts[0]["steps"]["mixed"] == pytest.approx((3 + 3 + 2 + 3) / 4)  # row 3 changes by 0.0 < 1e-9 at step 2
    assert np.isnan(pts[0]["seconds"])


def test_helpers():
    assert mean_by_condition(np.array([1.0, 2.0]), np.array(["x", "y"])) == {"mixed": 1.5, "x": 1.0, "y": 2.0}
    assert seconds_at_stops([0.5, 1.5], np.array([2, 2, 1])) == pytest.approx(3.5 / 3)


def test_timing_batches_cut_the_fixed_set_to_the_asked_size(tiny_problem_path):
    from l2o.tasks.registry import load_task

    task = load_task("sparse_recovery", tiny_problem_path, "cpu")
    batches = timing_batches(task, "test", 7)
    assert sum(len(b["x"]) for b in batches) == 7
    first = next(iter(task.eval_batches("test")))
    assert torch.equal(batches[0]["x"], first["x"][:7])
    with pytest.raises(ValueError, match="timing_examples"):
        timing_batches(task, "test", 0)
