"""End-to-end: the tiny config through Snakemake, MLflow runs, rerun behaviour, schema errors."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from workflow_helpers import copy_workflow, planned_job_counts, planned_jobs, run_snakemake

pytestmark = pytest.mark.workflow

TRAINING_JOBS = {"data", "classical", "baseline", "stage1", "stage2", "finetune", "aevb", "evaluate", "report"}


def test_lint_is_clean(tmp_path):
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("config", ["config.yaml", "configs/tiny.yaml", "configs/paper.yaml", "configs/paper-cpu.yaml"])
def test_dry_run_of_each_config(tmp_path, config):
    work = copy_workflow(tmp_path, config)
    jobs = planned_jobs(work)
    assert {"data", "classical", "baseline", "stage1", "stage2", "evaluate", "report"} <= jobs


def test_ablation_overlay_on_the_default_config(tmp_path):
    work = copy_workflow(tmp_path, "config.yaml")
    overlay = yaml.safe_load((work / "configs/ablations.yaml").read_text())
    jobs = planned_job_counts(work, "--configfile", "config.yaml", "configs/ablations.yaml")
    seeds = len(overlay["seeds"])
    reaching_stage1 = sum("stage1" in v for v in overlay["ablations"].values())
    assert jobs["ablation_stage1"] == seeds * reaching_stage1
    assert jobs["ablation_stage2"] == jobs["ablation_evaluate"] == seeds * len(overlay["ablations"])


def test_summary_rows(tiny_run):
    summary = pd.read_csv(tiny_run / "results/summary.csv")
    assert list(summary.columns[:5]) == ["task", "method", "condition", "metric", "value"]
    assert set(summary.task) == {"sparse_recovery"}
    methods = set(summary.method)
    assert {"ista_t6", "fista_t6", "ista_t20", "fista_t20", "lista", "lista_stop", "lista_stop_ft", "aevb",
            "lista_fixed_depth", "lista_matched", "ablation/stage2_map", "ablation/beta_2"} <= methods
    assert {"mixed", "snr20", "snr30", "snr40"} <= set(summary.condition)
    stop = summary[(summary.method == "lista_stop") & (summary.condition == "mixed")]
    assert {"nmse_db", "nmse_db_sampled", "nmse_db_expected", "nmse_db_oracle", "mean_stop"} <= set(stop.metric)
    nmse = stop.set_index("metric").value
    assert nmse["nmse_db_oracle"] <= nmse["nmse_db"] + 1e-9  # the oracle is an upper bound
    assert 1 <= nmse["mean_stop"] <= 6


def test_report_files(tiny_run):
    html = (tiny_run / "results/report.html").read_text()
    assert "Table 2" in html and "data:image/png;base64," in html
    assert 'src="http' not in html  # self-contained
    md = (tiny_run / "results/report.md").read_text()
    assert "Is learning to stop worth it?" in md
    assert "## Ablations" in md and "| stage2_map | stage2.loss=map |" in md and "| beta_2 | stage1.beta=2.0 |" in md
    assert (tiny_run / "results/plots/stop_histogram.png").stat().st_size > 0


def test_mlflow_parent_and_child_runs(tiny_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("l2o")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    jobs_per_rule = {r: 1 for r in TRAINING_JOBS | {"lista_matched"}}
    jobs_per_rule.update(ablation_stage1=1, ablation_stage2=2, ablation_evaluate=2)  # beta_2: I+II; stage2_map: II
    assert {r.data.tags["rule"] for r in children} == set(jobs_per_rule)
    assert len(children) == sum(jobs_per_rule.values())
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.params, r.data.tags["rule"]
        assert "config_hash" in r.data.tags
    stage2 = next(r for r in children if r.data.tags["rule"] == "stage2")
    assert "val_nmse_db_expected" in stage2.data.metrics
    assert stage2.data.tags["upstream.stage1"] == next(
        r.info.run_id for r in children if r.data.tags["rule"] == "stage1")
    # a Stage-II-only variant is trained on the main run's Stage I model
    variant = next(r for r in children if r.data.tags["rule"] == "ablation_stage2"
                   and r.data.tags["wildcard.variant"] == "stage2_map")
    assert variant.data.tags["upstream.stage1"] == stage2.data.tags["upstream.stage1"]
    assert (variant.data.params["stage2.loss"], stage2.data.params["stage2.loss"]) == ("map", "forward_kl")
    history = client.get_metric_history(stage2.info.run_id, "val_nmse_db_expected")
    assert len(history) >= 2  # by step
    evaluate = next(r for r in children if r.data.tags["rule"] == "evaluate")
    steps = client.get_metric_history(evaluate.info.run_id, "nmse_db_per_step.lista")
    assert sorted(m.step for m in steps) == list(range(1, 7))


@pytest.fixture
def rerun_dir(tiny_run, tmp_path):
    """A copy of the finished tiny run (results and Snakemake metadata) to modify."""
    work = tmp_path / "rerun"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


def test_nothing_changed_runs_nothing(rerun_dir):
    assert planned_jobs(rerun_dir) == set()


def test_reordering_config_keys_runs_nothing(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
    assert planned_jobs(rerun_dir) == set()


def test_stage2_setting_reruns_stage2_and_downstream(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["stage2"]["lr"] = 0.002
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    # the variants are the main config plus their overrides: their Stage II re-trains too
    assert planned_job_counts(rerun_dir) == {"stage2": 1, "finetune": 1, "evaluate": 1, "report": 1,
                                             "ablation_stage2": 2, "ablation_evaluate": 2}


def test_variant_override_change_reruns_only_that_variant(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["ablations"]["stage2_map"]["stage2"]["loss"] = "reverse_kl"
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_job_counts(rerun_dir) == {"ablation_stage2": 1, "ablation_evaluate": 1, "report": 1}


def test_new_variant_trains_only_what_it_overrides(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["ablations"]["sampled"] = {"stage1": {"loss": "sampled"}}
    cfg["ablations"]["wide"] = {"policy": {"hidden": [32]}}
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_job_counts(rerun_dir) == {"ablation_stage1": 1, "ablation_stage2": 2, "ablation_evaluate": 2,
                                             "report": 1}


def test_stage1_beta_leaves_the_matched_control_alone(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["stage1"]["beta"] = 0.5
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_job_counts(rerun_dir)
    assert "lista_matched" not in jobs and "baseline" not in jobs
    # beta_2 overrides beta: its Stages I and II stay; stage2_map sits on the main Stage I: re-trained
    assert jobs["stage1"] == 1 and "ablation_stage1" not in jobs and jobs["ablation_stage2"] == 1


def test_stage2_source_edit_reruns_stage2_and_downstream(rerun_dir):
    with open(rerun_dir / "l2o/train/stage2.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert planned_jobs(rerun_dir) == {"stage2", "finetune", "evaluate", "report", "ablation_stage2",
                                       "ablation_evaluate"}


def test_evaluation_code_edit_leaves_the_classical_grid_alone(rerun_dir):
    with open(rerun_dir / "l2o/evaluate.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert planned_jobs(rerun_dir) == {"evaluate", "ablation_evaluate", "report"}


def test_report_code_edit_reruns_only_report(rerun_dir):
    with open(rerun_dir / "l2o/report.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert planned_jobs(rerun_dir) == {"report"}


def test_disabling_finetune_drops_it(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["finetune"]["enabled"] = False
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(rerun_dir)
    assert "finetune" not in jobs and "stage2" not in jobs and "evaluate" in jobs


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"stage2": {"lrr": 0.1}}, "lrr"),  # unknown key
        ({"model": {"T": "twenty"}}, "twenty"),  # wrong type
        ({"model": {"T": 1}}, "T"),  # out of range
        ({"stage1": {"beta": 0.0}}, "beta"),  # beta <= 0
        ({"stage2": {"loss": "kl"}}, "loss"),  # unknown loss
        ({"seeds": []}, "seeds"),
        ({"ablations": {"x": {"stage2": {"los": "map"}}}}, "ablations.x.stage2: unknown key(s) ['los']"),
        ({"ablations": {"x": {"stage1": {"beta": 0.28}}}}, "ablations.x changes nothing"),
        ({"ablations": {"x": {"stage1": {"beta": -1.0}}}}, "ablations.x: the overridden config is invalid"),
        ({"ablations": {"x": {"model": {"T": 5}}}}, "'model' was unexpected"),
        ({"ablations": {"a/b": {"stage2": {"loss": "map"}}}}, "'a/b' does not match"),
    ],
)
def test_schema_rejects_bad_config(tmp_path, patch, needle):
    work = copy_workflow(tmp_path)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    for section, values in patch.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert needle in out, out[-3000:]
    assert not (work / "results").exists()


def test_unreachable_tracking_server_fails_at_start(tmp_path):
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, check=False, timeout=120)
    assert proc.returncode != 0
    assert "cannot be reached" in proc.stdout + proc.stderr
    assert not (work / "results").exists()


def test_snakemake_report_with_captions(tiny_run, tmp_path):
    out = tmp_path / "snakemake-report.html"
    run_snakemake(tiny_run, "--report", str(out))
    assert out.stat().st_size > 10_000


def test_slurm_profile_sizes_every_compute_rule(tmp_path):
    """A rule missing from the SLURM profile would get the small default allocation (or, for a
    training rule, a GPU request without CPUs/memory): every rule but the light ones is listed."""
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "--list-rules")
    rules = {line.strip() for line in proc.stdout.splitlines() if line.strip() and " " not in line.strip()}
    profile = yaml.safe_load((work / "profiles/slurm/config.yaml").read_text())
    light = {"all", "data", "report"}
    assert rules - light, proc.stdout
    assert rules - light <= set(profile["set-resources"]), sorted(rules - light - set(profile["set-resources"]))
    assert rules - light <= set(profile["set-threads"])
