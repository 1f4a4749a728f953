"""Report arithmetic: seed aggregation, paired differences, the gain rows, the ablation table,
the matched-control findings and the sparse-recovery classical findings."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from l2o.report.ablations import ablation_findings, ablation_stats, ablation_table
from l2o.report.results import TaskResults, ablation_rows
from l2o.report.stats import MIN_POSSIBLE_GAIN, aggregate, gain_rows, mean_ci, paired_difference, seed_values
from l2o.tasks.sparse_recovery import SPEC

CONFIG = {"stage1": {"loss": "full", "beta": 0.28}, "stage2": {"loss": "forward_kl"}}


def seed_table(seed: int, method: str, mixed: float, *, last: float = -10.0, oracle: float = -11.0,
               stop: float = 15.0) -> pd.DataFrame:
    rows = [("mixed", "nmse_db", mixed), ("mixed", "nmse_db_last", last), ("mixed", "nmse_db_oracle", oracle),
            ("mixed", "mean_stop", stop)]
    rows += [(c, "nmse_db", mixed + d) for c, d in (("snr20", 1.0), ("snr30", 0.0), ("snr40", -1.0))]
    return pd.DataFrame([{"task": "sparse_recovery", "method": method, "condition": c, "metric": m,
                          "value": v, "seed": seed} for c, m, v in rows])


def test_mean_ci_matches_the_t_interval():
    mean, ci = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert ci == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t_{0.975, 2} * sd / sqrt(n)
    assert math.isnan(mean_ci([5.0])[1])


def test_aggregate_agrees_with_mean_ci():
    tables = [seed_table(s, "lista_stop", v) for s, v in enumerate([-20.0, -21.0, -23.0])]
    agg = aggregate(tables)
    row = agg[(agg.condition == "mixed") & (agg.metric == "nmse_db")].iloc[0]
    assert (row.value, row.ci95) == pytest.approx(mean_ci([-20.0, -21.0, -23.0]))
    assert row.n_seeds == 3


def test_paired_difference_uses_common_seeds_only():
    mean, ci, n = paired_difference({0: -10.0, 1: -12.0, 2: -14.0}, {0: -9.0, 1: -11.0, 5: 0.0})
    assert (mean, n) == (-1.0, 2)
    assert ci == 0.0  # the same difference on both seeds


def test_ablation_rows_keep_only_the_stopping_model_renamed():
    t = pd.concat([seed_table(0, "lista_stop", -20.0), seed_table(0, "lista_fixed_depth", -18.0)])
    rows = ablation_rows("beta_1", t, "lista_stop")
    assert set(rows.method) == {"ablation/beta_1"}
    assert len(rows) == len(seed_table(0, "lista_stop", -20.0))


def test_ablation_stats_pairs_variants_with_the_main_model():
    main = [pd.concat([seed_table(s, "lista_stop", v), seed_table(s, "lista_stop_ft", v - 0.5)])
            for s, v in enumerate([-20.0, -21.0, -22.0])]
    better = [seed_table(s, "lista_stop", v - 1.0 - 0.1 * s) for s, v in enumerate([-20.0, -21.0, -22.0])]
    noisy = [seed_table(s, "lista_stop", v + d) for s, (v, d) in enumerate(zip([-20.0, -21.0, -22.0], [2, -2, 0.3]))]
    ablations = {"stage2_map": {"tables": better, "overrides": {"stage2": {"loss": "map"}}},
                 "beta_1": {"tables": noisy, "overrides": {"stage1": {"beta": 1.0}}}}
    stats = ablation_stats(main, ablations, CONFIG)
    by = {r["variant"]: r for r in stats}
    assert list(by) == ["main: Stages I+II", "main + Stage III", "beta_1", "stage2_map"]  # no AEVB tables
    assert by["main: Stages I+II"]["mixed"] == pytest.approx(-21.0)
    assert by["main + Stage III"]["delta"] == pytest.approx(-0.5)
    assert by["stage2_map"]["delta"] == pytest.approx(-1.1)
    assert by["stage2_map"]["settings"] == "stage2.loss=map"
    assert by["stage2_map"]["snr20"] == pytest.approx(-22.1 + 1.0)
    assert by["beta_1"]["delta"] == pytest.approx(0.1)
    table = ablation_table(stats)
    assert table.loc[0, "Δ vs main (paired)"] == "–"
    assert table.loc[3, "Δ vs main (paired)"].startswith("-1.10 ± ")
    findings = ablation_findings(stats)
    assert any(f.startswith("stage2_map") and "better" in f for f in findings)
    assert any(f.startswith("beta_1") and "not distinguishable" in f for f in findings)
    assert seed_values(better, "lista_stop") == pytest.approx({0: -21.0, 1: -22.1, 2: -23.2})


def test_single_seed_findings_say_there_is_no_ci():
    main = [seed_table(0, "lista_stop", -20.0)]
    stats = ablation_stats(main, {"x": {"tables": [seed_table(0, "lista_stop", -20.5)],
                                        "overrides": {"stage2": {"loss": "map"}}}}, CONFIG)
    assert ablation_findings(stats) == ["x (stage2.loss=map): -0.50 dB vs the main model (one seed: no CI)."]


def test_classical_findings_name_the_stronger_setting():
    from l2o.tasks.sparse_recovery.report import classical_findings

    summary = pd.DataFrame([
        {"method": m, "condition": "mixed", "metric": "nmse_db", "value": v, "ci95": float("nan")}
        for m, v in [("fista_t20", -10.75), ("fista_t20_paper", -10.79), ("ista_t20", -8.66),
                     ("ista_t20_paper", -5.47)]])
    found = classical_findings(summary)
    assert found == [
        "FISTA (T=20) with (L, ρ) tuned on validation is WEAKER than at the paper's (L, ρ): "
        "-10.75 vs -10.79 dB (+0.04 dB, mixed test).",
        "ISTA (T=20) with (L, ρ) tuned on validation is stronger than at the paper's (L, ρ): "
        "-8.66 vs -5.47 dB (-3.19 dB, mixed test).",
    ]


def results_of(tables: list[pd.DataFrame]) -> TaskResults:
    curves = [{"metric": "nmse_db", "higher_is_better": False}]
    return TaskResults(SPEC, CONFIG, tables, curves, aggregate(tables), {}, None, [], {}, {}, None, None)


def test_matched_findings_are_paired_over_seeds():
    from l2o.report.skeptic import matched_findings

    tables = [pd.concat([seed_table(s, "lista_stop", v, last=v + 0.5),
                         seed_table(s, "lista_matched", v + 1.0 + 0.1 * s)])
              for s, v in enumerate([-20.0, -21.0, -22.0])]
    last, stop = matched_findings(results_of(tables))
    assert "at its last step vs the matched LISTA: -0.60 dB" in last and last.endswith(": better.")
    assert "with its learned stop vs the matched LISTA: -1.10 dB" in stop
    assert matched_findings(results_of([seed_table(0, "lista_stop", -20.0)])) == []


def test_gain_rows_give_no_share_of_a_gain_below_the_floor():
    """-2578 % from a 0.11 dB oracle gain was printed once; a share needs a real denominator."""
    small = seed_table(0, "lista_stop", -10.0, last=-10.0 - 0.0, oracle=-10.11)
    small.loc[small.metric == "nmse_db", "value"] = -7.2  # the policy loses 2.8 dB
    rows = gain_rows(small, ["lista_stop"], "nmse_db", higher_is_better=False).set_index(["condition", "metric"])
    assert rows.loc[("mixed", "gain_possible"), "value"] == pytest.approx(0.11)
    assert rows.loc[("mixed", "gain_captured"), "value"] == pytest.approx(-2.8)
    assert math.isnan(rows.loc[("mixed", "gain_captured_pct"), "value"])
    big = seed_table(0, "lista_stop", -10.5, last=-10.0, oracle=-11.0)
    rows = gain_rows(big, ["lista_stop"], "nmse_db", higher_is_better=False).set_index(["condition", "metric"])
    assert rows.loc[("mixed", "gain_possible"), "value"] == pytest.approx(1.0)
    assert MIN_POSSIBLE_GAIN <= 1.0
    assert rows.loc[("mixed", "gain_captured_pct"), "value"] == pytest.approx(50.0)


def test_gain_rows_follow_the_metric_direction():
    """For PSNR (higher is better) a gain is an increase."""
    t = pd.DataFrame([{"task": "denoising", "method": "dncnn_stop", "condition": "mixed", "metric": m, "value": v,
                       "seed": 0} for m, v in [("psnr", 27.0), ("psnr_last", 26.0), ("psnr_oracle", 28.0)]])
    rows = gain_rows(t, ["dncnn_stop"], "psnr", higher_is_better=True).set_index("metric")
    assert rows.loc["gain_possible", "value"] == 2.0 and rows.loc["gain_captured_pct", "value"] == 50.0
