"""Stop rules, oracles and fixed-step baselines (l2o.stopping.rules) on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2o.stopping.distribution import stop_distribution
from l2o.stopping.rules import (
    MEDIAN,
    PAPER,
    StopRule,
    apply_condition_steps,
    best_fixed_step,
    check_rule,
    check_tau,
    cross_fitted_index,
    oracle_index,
    per_condition_steps,
    rule_named,
    stop_index,
    tune_threshold,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_each_rule_on_hand_made_logits():
    pi = [[0.3, 0.3, 0.6, 0.2],   # paper: first pi > 0.5 at 2; survival 0.7, 0.49 -> median 1; tau 0.25 -> 0
          [0.1, 0.45, 0.45, 0.9],  # paper: never -> 3 (the last); survival 0.9, 0.495 -> median 1
          [0.9, 0.1, 0.1, 0.1],    # everyone at 0
          [0.05, 0.05, 0.05, 0.05]]  # survival 0.95, 0.90, 0.86: median never -> 3
    logits = torch.tensor([[logit(p) for p in row] for row in pi])
    assert stop_index(logits, rule=PAPER).tolist() == [2, 3, 0, 3]
    assert stop_index(logits, rule=MEDIAN).tolist() == [1, 1, 0, 3]
    assert stop_index(logits, rule=StopRule("threshold", 0.25, "tuned")).tolist() == [0, 1, 0, 3]
    assert stop_index(logits, rule=StopRule("threshold", 0.95, "tuned")).tolist() == [3, 3, 3, 3]


def test_median_is_the_first_step_where_the_survival_drops_to_one_half(rng):
    logits = torch.randn(500, 7, generator=rng, dtype=torch.float64) * 2
    q = stop_distribution(logits)  # (N, K), sums to one
    cdf = torch.cumsum(q, dim=1)
    expected = (cdf >= 0.5 - 1e-12).to(torch.uint8).argmax(dim=1)  # the median of q_phi
    assert torch.equal(stop_index(logits, rule=MEDIAN), expected)
    survival = torch.cumprod(1 - torch.sigmoid(logits), dim=1)
    assert ((survival[torch.arange(500), expected] <= 0.5) | (expected == 6)).all()


def test_tau_one_half_is_the_papers_rule(rng):
    logits = torch.randn(200, 5, generator=rng)
    assert torch.equal(stop_index(logits, rule=StopRule("threshold", 0.5, "tuned")), stop_index(logits, rule=PAPER))


def test_the_tuned_threshold_is_the_validation_optimum_on_a_toy_case():
    """Four examples whose best step is known; pi rises with the step for all. A threshold between the
    right logits stops each example at its best step: the tuning finds the global optimum over every
    threshold, which an exhaustive search confirms."""
    pis = np.array([[0.2, 0.4, 0.6, 0.8], [0.2, 0.4, 0.6, 0.8], [0.1, 0.3, 0.7, 0.9], [0.1, 0.3, 0.7, 0.9]])
    logits = torch.tensor(np.log(pis / (1 - pis)))
    losses = np.array([[3.0, 1.0, 2.0, 4.0], [3.0, 1.0, 2.0, 4.0], [3.0, 2.0, 1.0, 4.0], [3.0, 2.0, 1.0, 4.0]])
    value_of = lambda idx: float(losses[np.arange(4), idx].mean())  # noqa: E731
    tau, value, steps = tune_threshold(logits, value_of, higher_is_better=False)
    exhaustive = min(value_of(stop_index(logits, rule=StopRule("threshold", t, "tuned")).numpy())
                     for t in np.linspace(0.01, 0.99, 197))
    assert value == pytest.approx(exhaustive)
    assert value_of(stop_index(logits, rule=StopRule("threshold", tau, "tuned")).numpy()) == pytest.approx(value)
    # with a cap on the mean stop step the optimum is the best threshold that respects it
    tau_c, value_c, steps_c = tune_threshold(logits, value_of, False, max_mean_stop=1.0)
    assert steps_c <= 1.0 and value_c == pytest.approx(3.0)


def test_oracles_optimistic_and_cross_fitted():
    """The honest oracle never sees its scoring half: a planted noisy point that makes step 0 look best
    on half b must not choose half b's step."""
    half_a = np.array([[1.0, 0.5, 0.9]])   # half a says step 1
    half_b = np.array([[0.0, 2.0, 2.0]])   # half b's noisy point says step 0 (where b itself is scored)
    idx_a, idx_b = cross_fitted_index(half_a, half_b)
    assert idx_a.tolist() == [0] and idx_b.tolist() == [1]  # a is scored where b chose, b where a chose
    honest = half_a[0, idx_a[0]] + half_b[0, idx_b[0]]
    optimistic = (half_a + half_b)[0].min()
    assert honest == pytest.approx(3.0) and optimistic == pytest.approx(1.0)
    assert oracle_index(half_a + half_b).tolist() == [0]


def test_fixed_step_and_per_condition_baselines_on_a_toy_table():
    losses = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [2.0, 1.5, 0.5]])
    conds = np.array(["shots1", "shots1", "shots5", "shots5"])
    assert best_fixed_step(lambda k: losses[:, k].mean(), 3, higher_is_better=False) == 0  # means 1, 1.125, 1.125
    per = per_condition_steps(conds, lambda k, rows: float(losses[rows, k].mean()), 3, False)
    assert per == {"shots1": 0, "shots5": 2}
    # a condition not seen on validation takes the nearest seen condition's step
    assert apply_condition_steps(np.array(["shots1", "shots4", "other"]), per, default=1).tolist() == [0, 2, 1]


def test_rule_names_and_bad_values():
    assert rule_named("paper") is PAPER and rule_named("median") is MEDIAN
    assert rule_named("tuned", 0.3).tau == 0.3
    with pytest.raises(ValueError, match="stage2.rule must be one of"):
        check_rule("mode")
    for bad in (0.0, 1.0, -0.1, "x", True):
        with pytest.raises(ValueError, match="tau must be a number in"):
            check_tau(bad)
    with pytest.raises(ValueError, match="needs its tau"):
        rule_named("tuned")
