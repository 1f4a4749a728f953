"""The report's answer table: paired gains, their intervals and the verdict (l2o.report.answer)."""

from __future__ import annotations

import pandas as pd
import pytest

from l2o.report.answer import answer_row, gain, resolved, verdict
from l2o.report.results import TaskResults
from l2o.tasks.spec import TaskSpec

SPEC = TaskSpec("toy", "Toy task (a test)", "net")


def results(diffs: dict[str, tuple[float, float]], higher: bool = False, seeds: int = 1, floor: float = 0.5):
    """A TaskResults whose summary holds the stop model's paired differences ``{metric: (value, ci)}``."""
    rows = [{"task": "toy", "method": "net_stop", "condition": "mixed", "metric": m, "value": v, "ci95": float("nan"),
             "n_seeds": seeds} for m, (v, _) in diffs.items()]
    rows += [{"task": "toy", "method": "net_stop", "condition": "mixed", "metric": f"{m}_ci95", "value": ci,
              "ci95": float("nan"), "n_seeds": seeds} for m, (_, ci) in diffs.items()]
    rows += [{"task": "toy", "method": "net_stop", "condition": "mixed", "metric": m, "value": v, "ci95": float("nan"),
              "n_seeds": seeds} for m, v in (("score", 1.0), ("mean_stop", 4.0))]
    curves = [{"metric": "score", "higher_is_better": higher, "gain_floor": floor,
               "net_stop": {"rule": {"name": "tuned"}, "stop_histogram": [0] * 8, "plain_seconds": 2.0,
                            "stop_seconds": 1.0}}]
    return TaskResults(SPEC, {}, [pd.DataFrame()] * seeds, curves, pd.DataFrame(rows), {}, None, [], {}, {},
                       None, None)


def test_gains_are_signed_so_that_positive_is_better():
    lower = results({"diff_vs_best_depth": (-0.3, 0.1)}, higher=False)
    assert gain(lower, "diff_vs_best_depth") == (0.3, 0.1)
    higher = results({"diff_vs_best_depth": (-0.3, 0.1)}, higher=True)
    assert gain(higher, "diff_vs_best_depth") == (-0.3, 0.1)
    assert resolved(0.3, 0.1) and not resolved(0.05, 0.1)


@pytest.mark.parametrize("diffs, word", [
    ({"diff_vs_best_depth": (0.4, 0.1), "diff_vs_condition_depth": (0.2, 0.1)}, "pays"),
    ({"diff_vs_best_depth": (0.4, 0.1), "diff_vs_condition_depth": (0.05, 0.1)}, "not resolved"),
    ({"diff_vs_best_depth": (0.4, 0.1), "diff_vs_condition_depth": (-0.3, 0.1)}, "does not pay"),
    ({"diff_vs_best_depth": (0.0, 0.02), "honest_gain": (0.05, 0.03)}, "does not pay"),  # nothing to capture
    ({"diff_vs_best_depth": (0.1, 0.3), "honest_gain": (0.9, 0.2)}, "not resolved"),
    # a real gain (0.9 ± 0.2) of which the interval allows at most 0.3 + 0.1 = 44% to be captured
    ({"diff_vs_best_depth": (0.1, 0.3), "honest_gain": (0.9, 0.2), "diff_vs_last": (0.3, 0.1)}, "does not pay"),
    ({"diff_vs_best_depth": (0.1, 0.3), "honest_gain": (0.9, 0.2), "diff_vs_last": (0.3, 0.3)}, "not resolved"),
])
def test_verdict(diffs, word):
    res = results(diffs, higher=True)
    assert verdict(res)[0] == word


def test_answer_row_reads_the_wall_time_against_the_plain_model():
    row = answer_row(results({"diff_vs_last": (0.2, 0.1), "diff_vs_best_depth": (0.4, 0.1),
                              "diff_vs_condition_depth": (0.2, 0.1), "honest_gain": (0.8, 0.1)}, higher=True))
    assert row["wall time vs plain model"] == "2.00× as fast"
    assert row["share of it captured"] == "25%"  # 0.2 of an honest 0.8
    assert row["verdict"].startswith("pays")
    assert row["vs best fixed depth"] == "+0.40 ± 0.10"
