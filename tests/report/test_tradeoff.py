"""Accuracy against compute in the report: the Pareto front, reading a curve at a cost, the cost
to reach a target, the headline numbers per seed, the points gathered from evaluation files,
the summary rows and the plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from l2o.report.results import TaskResults
from l2o.report.tradeoff import findings, gather_points, headline_table, summary_rows, tradeoff_section
from l2o.report.tradeoff_points import (
    POINT_COLUMNS,
    classical_points,
    cost_to_reach,
    headline_per_seed,
    interpolate,
    mean_points,
    pareto_mask,
)
from l2o.tasks.sparse_recovery import SPEC

T = 4


def test_pareto_mask_keeps_the_undominated_points_for_either_direction():
    steps = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    values = np.array([-5.0, -7.0, -6.0, -7.0, -9.0])  # NMSE: lower is better
    assert pareto_mask(steps, values, higher_is_better=False).tolist() == [True, True, False, False, True]
    assert pareto_mask(steps, -values, higher_is_better=True).tolist() == [True, True, False, False, True]
    assert pareto_mask(np.array([1.0, np.nan]), np.array([1.0, 9.0]), True).tolist() == [True, False]


def test_interpolate_is_linear_inside_and_nan_outside():
    s, v = np.array([3.0, 1.0]), np.array([2.0, 0.0])  # unsorted on purpose
    assert interpolate(s, v, 1.5) == 0.5
    assert math.isnan(interpolate(s, v, 0.5)) and math.isnan(interpolate(s, v, 3.5))


def test_cost_to_reach_interpolates_on_the_front_and_is_nan_when_never_reached():
    steps, values = np.array([1.0, 2.0, 4.0]), np.array([50.0, 70.0, 90.0])  # accuracy
    assert cost_to_reach(steps, values, 80.0, True) == 3.0
    assert cost_to_reach(steps, values, 40.0, True) == 1.0
    assert math.isnan(cost_to_reach(steps, values, 95.0, True))
    # lower is better: -10 dB reached halfway between -8 (step 2) and -12 (step 4)
    assert cost_to_reach(np.array([2.0, 4.0]), np.array([-8.0, -12.0]), -10.0, False) == 3.0


def points_for_seed(seed: int, stop_value: float, stop_steps: float, depth_values: list[float],
                    lam_points=()) -> list[dict]:
    base = {"condition": "mixed", "seed": seed, "seconds_measured": True}
    rows = [{**base, "curve": "fixed depth", "method": "m_stop", "setting": f"depth {d}", "value": v,
             "steps": float(d), "seconds": 0.01 * d} for d, v in enumerate(depth_values, start=1)]
    rows.append({**base, "curve": "learned stop", "method": "m_stop", "setting": "λ=0 (main)", "value": stop_value,
                 "steps": stop_steps, "seconds": 0.005 * stop_steps})
    rows += [{**base, "curve": "learned stop", "method": "m_stop", "setting": f"λ={lam:g} (v)", "value": v,
              "steps": s, "seconds": 0.005 * s} for lam, s, v in lam_points]
    rows += [{**base, "curve": "non-learned rule", "method": "m_stop", "setting": f"eps {e}", "value": v,
              "steps": s, "seconds": 0.01 * s, "seconds_measured": False}
             for e, s, v in ((0.1, 1.5, 60.0), (0.01, 3.0, 80.0))]
    return rows


def test_headline_numbers_on_a_hand_computed_case():
    # accuracy of the same network at depths 1..4; the learned stop reaches step T's 90 at 2.5 steps
    rows = points_for_seed(0, stop_value=90.0, stop_steps=2.5, depth_values=[50.0, 70.0, 85.0, 90.0],
                           lam_points=[(1.0, 1.5, 80.0)])
    h = headline_per_seed(pd.DataFrame(rows, columns=POINT_COLUMNS), "m_stop", T, higher_is_better=True)
    r = h.iloc[0]
    assert r.full_depth == 90.0 and r.stop == 90.0
    assert r.saved_learned == pytest.approx(T - 2.5)
    assert r.saved_fixed == pytest.approx(0.0)  # the fixed depths reach 90 only at T
    assert r.gain_vs_fixed == pytest.approx(90.0 - 77.5)  # depth curve read at 2.5: halfway 70..85
    assert r.gain_vs_rule == pytest.approx(90.0 - (60.0 + (2.5 - 1.5) / 1.5 * 20.0))


def test_gains_compare_with_the_best_a_curve_does_within_the_cost():
    # depth 3 is worse than depth 2 (a late step that over-fits), so it is off the front: within 2.5
    # mean steps the fixed depths do best mixing depths 2 and 4 (85 + 0.25 * 5 = 86.25), not the 80
    # halfway to depth 3; past the rule's last point its best stays
    rows = points_for_seed(0, stop_value=90.0, stop_steps=2.5, depth_values=[50.0, 85.0, 75.0, 90.0])
    rows = [r for r in rows if not (r["curve"] == "non-learned rule" and r["steps"] > 2)]
    h = headline_per_seed(pd.DataFrame(rows, columns=POINT_COLUMNS), "m_stop", T, higher_is_better=True).iloc[0]
    assert h.gain_vs_fixed == pytest.approx(90.0 - 86.25)
    assert h.gain_vs_rule == pytest.approx(30.0)  # the rule's only point: 60 at 1.5 steps


def test_headline_says_not_reached_and_signs_a_loss_for_lower_is_better():
    rows = points_for_seed(0, stop_value=-7.0, stop_steps=2.0, depth_values=[-5.0, -8.0, -10.0, -12.0])
    for r in rows:  # rule values in dB too
        if r["curve"] == "non-learned rule":
            r["value"] = -6.0 if r["steps"] < 2 else -9.5
    h = headline_per_seed(pd.DataFrame(rows, columns=POINT_COLUMNS), "m_stop", T, higher_is_better=False)
    r = h.iloc[0]
    assert math.isnan(r.saved_learned)
    assert r.gain_vs_fixed == pytest.approx(-1.0)  # -7 dB against -8 dB at depth 2: 1 dB worse
    assert r.gain_vs_rule == pytest.approx(-((-7.0) - (-6.0 - (2.0 - 1.5) / 1.5 * 3.5)))


def fake_results(tmp_path: Path, n_seeds: int = 2) -> TaskResults:
    """A sparse-recovery-shaped TaskResults with hand-made evaluation files (T = 4)."""
    tables, curves = [], []
    for seed in range(n_seeds):
        rows = []
        for cond, shift in (("mixed", 0.0), ("snr20", 2.0)):
            for metric, value in (("nmse_db", -11.0 + shift + 0.1 * seed), ("nmse_db_sampled", -10.5 + shift),
                                  ("nmse_db_oracle", -13.0 + shift), ("nmse_db_last", -12.0 + shift),
                                  ("mean_stop", 2.0)):
                rows.append({"task": "sparse_recovery", "method": "lista_stop", "condition": cond,
                             "metric": metric, "value": value, "seed": seed})
        tables.append(pd.DataFrame(rows))
        per_step = {"mixed": [-5.0, -9.0, -11.0, -12.0], "snr20": [-3.0, -7.0, -9.0, -10.0]}
        curves.append({
            "metric": "nmse_db", "higher_is_better": False, "conditions": {"test": ["mixed", "snr20"]},
            "lista_stop": {"per_step_by_condition": per_step, "depth_seconds": [1e-4, 2e-4, 3e-4, 4e-4],
                           "stop_seconds": 2.5e-4, "stop_seconds_sampled": 2.6e-4,
                           "sampled_mean_stop_by_condition": {"mixed": 2.2, "snr20": 2.2},
                           "oracle_steps_by_condition": {"mixed": 3.1, "snr20": 3.0}, "oracle_seconds": 3e-4,
                           "rule_curve": [{"eps": 0.01, "steps": {"mixed": 1.5, "snr20": 1.5},
                                           "metric": {"mixed": -8.0, "snr20": -6.0}, "seconds": 1.5e-4}],
                           "prior": {"lambda": 0.0, "cost": "steps"}, "stop_histogram": [0, 4, 0, 0]},
            "lista": {"per_step_by_condition": per_step, "depth_seconds": [1e-4, 2e-4, 3e-4, 4e-4]},
        })
    variant_table = [t.assign(value=np.where(t.metric == "mean_stop", 1.5, t.value - 0.5)) for t in tables]
    classical = pd.DataFrame([
        {"task": "sparse_recovery", "method": m, "condition": c, "metric": k, "value": v}
        for m, steps in (("ista_t2", 2), ("ista_t4", 4), ("ista_t4_paper", 4))
        for c in ("mixed", "snr20")
        for k, v in (("nmse_db", -2.0 * steps), ("seconds_per_example", 1e-5 * steps))])
    return TaskResults(SPEC, {"baseline": {"gamma": 1.0}, "stage1": {"beta": 0.28}}, tables, curves,
                       pd.DataFrame(), {}, None, [], {},
                       {"lam1": {"tables": variant_table, "curves": curves, "overrides": {"stage2": {"prior_lambda": 1.0}}},
                        "beta": {"tables": tables, "curves": curves, "overrides": {"stage1": {"beta": 1.0}}}},
                       tmp_path, tmp_path, classical)


def test_gather_points_reads_every_curve(tmp_path):
    points = gather_points(fake_results(tmp_path))
    assert set(points.curve) == {"learned stop", "learned stop (sampled)", "fixed depth", "plain model, fixed depth",
                                 "non-learned rule", "oracle", "classical"}
    learned = points[(points.curve == "learned stop") & (points.condition == "mixed") & (points.seed == 0)]
    assert sorted(learned.setting) == ["λ=0 (main)", "λ=1 (lam1)"]  # the beta variant is no λ point
    assert sorted(points[points.curve == "classical"].method.unique()) == ["ista"]  # *_paper left out
    ista = points[(points.curve == "classical") & (points.condition == "mixed")].sort_values("steps")
    assert ista.steps.tolist() == [2.0, 4.0] and ista.value.tolist() == [-4.0, -8.0]
    assert (points[points.curve == "non-learned rule"].seconds_measured == False).all()  # noqa: E712
    plain = points[(points.curve == "plain model, fixed depth") & (points.condition == "mixed") & (points.seed == 0)]
    assert plain.steps.tolist() == [1.0, 2.0, 3.0, 4.0]  # LISTA's iterates are meaningful at any depth


def test_summary_rows_average_seeds_and_carry_both_compute_measures(tmp_path):
    res = fake_results(tmp_path)
    rows = summary_rows(res, gather_points(res))
    main = rows[(rows.curve == "learned stop") & (rows.setting == "λ=0 (main)") & (rows.condition == "mixed")].iloc[0]
    assert main.value == pytest.approx(-10.95) and main.n_seeds == 2 and main.ci95 > 0
    assert main.mean_steps == 2.0 and main.seconds_per_example == 2.5e-4
    assert {"task", "method", "condition", "metric", "value", "ci95", "n_seeds"} <= set(rows.columns)
    assert rows.method.str.startswith("tradeoff/").all()  # never mixed with a method's own rows


def test_tradeoff_section_writes_both_plots_and_a_finding(tmp_path):
    res = fake_results(tmp_path)
    title, body = tradeoff_section(res)
    assert (tmp_path / "sparse_recovery_accuracy_vs_steps.png").stat().st_size > 0
    assert (tmp_path / "sparse_recovery_accuracy_vs_seconds.png").stat().st_size > 0
    table, raw = headline_table(res, gather_points(res))
    assert list(table.condition) == ["mixed", "snr20"]
    # the learned stop (-10.95 dB at 2 steps) never reaches step T's -12 dB: no saving, said plainly
    assert "not reached" in table.iloc[0].to_string()
    lines = findings(res, raw)
    assert lines[0].startswith("No saving")
    assert any("better than the best fixed depth" in s for s in lines)  # -10.95 vs -9 dB at depth 2


def test_classical_points_keep_single_methods_with_seconds():
    df = pd.DataFrame([{"task": "denoising", "method": "bm3d", "condition": "mixed", "metric": m, "value": v}
                       for m, v in (("psnr", 28.0), ("seconds_per_image", 2.0))])
    pts = classical_points(df, "psnr")
    assert len(pts) == 1 and math.isnan(pts[0]["steps"]) and pts[0]["seconds"] == 2.0


def test_mean_points_of_one_seed_have_no_ci():
    rows = points_for_seed(0, 90.0, 2.0, [50.0, 70.0, 85.0, 90.0])
    mp = mean_points(pd.DataFrame(rows, columns=POINT_COLUMNS))
    assert mp.n_seeds.eq(1).all() and mp.ci95.isna().all()
