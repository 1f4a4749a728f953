"""Paired differences with intervals over examples (l2o.paired)."""

from __future__ import annotations

import numpy as np
import pytest

from l2o.paired import jackknife_ci, paired_by_condition, paired_difference


class MeanTask:
    metric = "score"

    def summarise(self, comps, weights=None):
        return {"score": float(np.mean(comps["score"]))}

    def influence(self, comps):
        return np.asarray(comps["score"], dtype=float)


class RatioTask(MeanTask):
    """A metric that is not a mean of a component (no influence): the jackknife steps in."""

    metric = "ratio"

    def summarise(self, comps, weights=None):
        return {"ratio": float(np.sum(comps["a"]) / np.sum(comps["b"]))}

    def influence(self, comps):
        return None


def test_paired_difference_equals_the_normal_interval_of_per_example_differences(rng):
    a = np.random.default_rng(0).normal(size=400)
    b = a - 0.1 + np.random.default_rng(1).normal(scale=0.05, size=400)  # strongly paired
    diff, ci = paired_difference(MeanTask(), {"score": a}, {"score": b})
    d = a - b
    assert diff == pytest.approx(d.mean())
    assert ci == pytest.approx(1.959964 * d.std(ddof=1) / np.sqrt(400), rel=1e-5)
    # pairing is what makes it resolve: the unpaired spread is 20 times larger
    assert abs(diff) > ci and ci < 0.1 * 1.96 * a.std() / np.sqrt(400) * np.sqrt(2)


def test_per_condition_and_the_jackknife_fallback():
    rng = np.random.default_rng(2)
    comps_a = {"a": rng.uniform(1, 2, 300), "b": rng.uniform(1, 2, 300)}
    comps_b = {"a": comps_a["a"] * 0.9, "b": comps_a["b"]}
    conds = np.array(["x", "y"] * 150)
    out = paired_by_condition(RatioTask(), comps_a, comps_b, conds)
    assert list(out) == ["mixed", "x", "y"]
    diff, ci = out["mixed"]
    assert diff == pytest.approx(0.1 * comps_a["a"].sum() / comps_a["b"].sum())
    assert np.isfinite(ci) and 0 < ci < diff
    assert ci == pytest.approx(jackknife_ci(RatioTask(), comps_a, comps_b))
