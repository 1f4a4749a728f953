"""The few-shot report's statements that are computed from the summary alone."""

import math

from l2o.tasks.few_shot.report import divergence_finding, shots_of


def reader(cells: dict):
    return lambda method, metric: cells.get((method, metric), math.nan)


def test_no_divergence_is_said_plainly():
    cells = {("maml", "diverged_pct"): 0.0, ("maml_stop", "diverged_pct_last"): 0.0,
             ("maml_stop", "diverged_pct"): 0.0}
    assert divergence_finding(reader(cells)) == "No test task's inner loop blew up."
    assert divergence_finding(reader({})) == "Whether an inner loop blew up was not recorded in this evaluation."


def test_divergence_names_each_reading_with_its_share():
    cells = {("maml", "diverged_pct"): 0.0, ("maml_stop", "diverged_pct_last"): 2.5,
             ("maml_stop", "diverged_pct"): 0.5}
    text = divergence_finding(reader(cells))
    assert "MAML, by step T 0.0%" in text and "MAML-stop's network, by step T 2.5%" in text
    assert "by its stop 0.5%" in text and "rejected" in text


def test_shots_of_condition():
    assert shots_of("shots10") == 10
