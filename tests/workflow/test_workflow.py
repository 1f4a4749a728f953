"""End-to-end: the tiny config (every task) through Snakemake, MLflow runs, rerun behaviour, schema errors."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from workflow_helpers import copy_workflow, planned_job_counts, planned_jobs, planned_task_jobs, run_snakemake

pytestmark = pytest.mark.workflow

SR, DN = "sparse_recovery", "denoising"
FC, FR = "few_shot_classification", "few_shot_regression"
TASKS = (SR, DN, FC, FR)
# rule -> jobs of the tiny run: every task runs data, baseline, Stages I and II, evaluation; the
# classical baselines exist for sparse recovery and denoising; Stage III is off for few-shot
# classification, the matched control for both few-shot tasks, AEVB for all but sparse recovery
JOBS_PER_RULE = {**{r: 4 for r in ("data", "baseline", "stage1", "stage2", "evaluate")},
                 "classical": 2, "matched": 2, "finetune": 3, "aevb": 1, "report": 1,
                 "ablation_stage1": 1, "ablation_stage2": 3, "ablation_evaluate": 3}  # + the tiny prior_sweep


def test_lint_is_clean(tmp_path):
    work = copy_workflow(tmp_path)
    proc = run_snakemake(work, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("config", ["config.yaml", "configs/tiny.yaml", "configs/paper.yaml", "configs/paper-cpu.yaml"])
def test_dry_run_of_each_config(tmp_path, config):
    work = copy_workflow(tmp_path, config)
    jobs = planned_task_jobs(work)
    for task in yaml.safe_load((work / "config.yaml").read_text())["tasks"]:
        assert {(r, task) for r in ("data", "baseline", "stage1", "stage2", "evaluate")} <= set(jobs)
        assert (("classical", task) in jobs) == (task in (SR, DN))
    assert ("report", "-") in jobs


def test_ablation_overlay_on_the_default_config(tmp_path):
    work = copy_workflow(tmp_path, "config.yaml")
    overlay = yaml.safe_load((work / "configs/ablations.yaml").read_text())
    jobs = planned_task_jobs(work, "--configfile", "config.yaml", "configs/ablations.yaml")
    section = overlay[SR]
    seeds = len(section["seeds"])
    reaching_stage1 = sum("stage1" in v for v in section["ablations"].values())
    assert jobs[("ablation_stage1", SR)] == seeds * reaching_stage1
    assert jobs[("ablation_stage2", SR)] == jobs[("ablation_evaluate", SR)] == seeds * len(section["ablations"])
    assert not any(task == DN for _, task in jobs)  # the overlay runs sparse recovery only


#: what each overlay of config.yaml adds to the default run's plan: {(rule, task): jobs}
OVERLAY_ADDS = {
    "configs/table3.yaml": {("finetune", SR): 1, ("aevb", SR): 1, ("finetune", DN): 1},
    "configs/lambda-sweep.yaml": {**{("ablation_stage2", t): 2 for t in TASKS},
                                  **{("ablation_evaluate", t): 2 for t in TASKS}},
    "configs/classical-curve.yaml": {},  # the same jobs, other params (more budgets)
    "configs/paper-policies.yaml": {**{("ablation_stage2", t): 1 for t in TASKS},
                                    **{("ablation_evaluate", t): 1 for t in TASKS}},
}


def test_overlays_compose_with_the_default(tmp_path):
    """Each overlay, and all of them together (make run-full's and more), plans the default's jobs plus
    its own, and nothing else."""
    work = copy_workflow(tmp_path, "config.yaml")
    default = planned_task_jobs(work)
    assert not any(r in ("finetune", "aevb") or r.startswith("ablation") for r, _ in default)
    total = dict(default)
    for overlay, adds in OVERLAY_ADDS.items():
        jobs = planned_task_jobs(work, "--configfile", "config.yaml", overlay)
        assert jobs == {**default, **adds}, overlay
        for key, n in adds.items():
            total[key] = total.get(key, 0) + n
    every = planned_task_jobs(work, "--configfile", "config.yaml", *OVERLAY_ADDS)
    assert every == total


def test_a_thread_count_above_the_cores_fails_before_any_job(tmp_path):
    work = copy_workflow(tmp_path, extra={"threads": {"stage1": 3}})
    proc = run_snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "threads.stage1 = 3" in proc.stdout + proc.stderr and "--cores 2" in proc.stdout + proc.stderr
    assert not (work / "results").exists()


def test_summary_rows(tiny_run):
    summary = pd.read_csv(tiny_run / "results/summary.csv")
    assert list(summary.columns) == ["task", "method", "condition", "metric", "value", "ci95", "n_seeds", "curve",
                                     "setting", "mean_steps", "seconds_per_example", "seconds_measured"]
    assert set(summary.task) == set(TASKS)
    curves = summary[summary.curve.notna()]
    for task in TASKS:  # every task has its accuracy-vs-compute points, with both compute measures
        mine = curves[(curves.task == task) & (curves.condition == "mixed")]
        assert {"learned stop", "fixed depth", "non-learned rule", "oracle"} <= set(mine.curve), task
        assert mine[mine.curve == "fixed depth"].seconds_per_example.gt(0).all(), task
    regression = curves[(curves.task == "few_shot_regression") & (curves.curve == "learned stop")]
    assert regression.setting.str.contains("lambda_1").any()  # the tiny config's prior_sweep
    sr = summary[summary.task == SR]
    methods = set(sr.method)
    assert {"ista_t6", "fista_t6", "ista_t20", "fista_t20", "lista", "lista_stop", "lista_stop_ft", "aevb",
            "lista_fixed_depth", "lista_matched", "ablation/stage2_map", "ablation/beta_2"} <= methods
    assert {"mixed", "snr20", "snr30", "snr40"} <= set(sr.condition)
    stop = sr[(sr.method == "lista_stop") & (sr.condition == "mixed")]
    assert {"nmse_db", "nmse_db_sampled", "nmse_db_expected", "nmse_db_oracle", "mean_stop"} <= set(stop.metric)
    nmse = stop.set_index("metric").value
    assert nmse["nmse_db_oracle"] <= nmse["nmse_db"] + 1e-9  # the oracle is an upper bound
    assert 1 <= nmse["mean_stop"] <= 6
    dn = summary[summary.task == DN]
    assert {"dncnn", "dncnn_stop", "dncnn_stop_ft", "dncnn_matched", "dncnn_fixed_depth", "bm3d", "nlm",
            "noisy"} <= set(dn.method)
    assert {"mixed", "sigma35", "sigma55", "sigma75"} <= set(dn.condition)
    stop = dn[(dn.method == "dncnn_stop") & (dn.condition == "mixed")].set_index("metric").value
    assert stop["psnr_oracle"] >= stop["psnr"] - 1e-9 and 0 < stop["ssim"] <= 1
    fc = summary[summary.task == FC]
    assert {"maml", "maml_stop", "maml_best_depth", "maml_fixed_depth"} <= set(fc.method)
    assert {"mixed", "shots1", "shots2", "shots3"} <= set(fc.condition)
    acc = fc[(fc.method == "maml_stop") & (fc.condition == "mixed")].set_index("metric").value
    assert 0 <= acc["accuracy"] <= 100 and acc["accuracy_ci95"] > 0 and acc["accuracy_oracle"] >= acc["accuracy"]
    fr = summary[summary.task == FR]
    assert {"maml", "maml_stop", "maml_stop_ft"} <= set(fr.method) and "mse" in set(fr.metric)


def test_report_files(tiny_run):
    html = (tiny_run / "results/report.html").read_text()
    assert "Table 2" in html and "Table 6" in html and "Omniglot 20-way 1–5 shot (Table 5)" in html and "data:image/png;base64," in html
    assert 'src="http' not in html  # self-contained
    md = (tiny_run / "results/report.md").read_text()
    assert md.count("Is learning to stop worth it?") == 4  # one per task
    assert "### Ablations" in md and "| stage2_map | stage2.loss=map |" in md and "| beta_2 | stage1.beta=2.0 |" in md
    for plot in ("sparse_recovery_stop_histogram", "denoising_stop_by_condition", "denoising_pictures"):
        assert (tiny_run / f"results/plots/{plot}.png").stat().st_size > 0


def test_mlflow_parent_and_child_runs(tiny_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("l2o")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert {r.data.tags["rule"] for r in children} == set(JOBS_PER_RULE)
    assert len(children) == sum(JOBS_PER_RULE.values())
    assert parents[0].data.tags["l2o.pid"] and parents[0].data.tags["l2o.workdir"] == str(tiny_run.resolve())
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.params, r.data.tags["rule"]
        # every job of every task says who runs it, so a later invocation can tell whether it died
        assert r.data.tags["l2o.job"] == r.info.run_name and r.data.tags["l2o.host"] and r.data.tags["l2o.pid"]
        assert float(r.data.tags["l2o.deadline"]) > r.info.start_time / 1000
        assert "config_hash" in r.data.tags
        if r.data.tags["rule"] != "report":  # every task job names its task and logs the task's section
            assert r.data.tags["task"] in TASKS
            assert any(k.startswith("config.model.") for k in r.data.params), r.data.tags["rule"]
    dn_stage1 = next(r for r in children if r.data.tags["rule"] == "stage1" and r.data.tags["task"] == DN)
    assert dn_stage1.data.params["config.model.layers"] == "5" and "val_psnr_best_step" in dn_stage1.data.metrics
    stage2 = next(r for r in children if r.data.tags["rule"] == "stage2" and r.data.tags["task"] == SR)
    assert "val_nmse_db_expected" in stage2.data.metrics
    assert stage2.data.tags["upstream.stage1"] == next(
        r.info.run_id for r in children if r.data.tags["rule"] == "stage1" and r.data.tags["task"] == SR)
    # a Stage-II-only variant is trained on the main run's Stage I model
    variant = next(r for r in children if r.data.tags["rule"] == "ablation_stage2"
                   and r.data.tags["wildcard.variant"] == "stage2_map")
    assert variant.data.tags["upstream.stage1"] == stage2.data.tags["upstream.stage1"]
    assert (variant.data.params["stage2.loss"], stage2.data.params["stage2.loss"]) == ("map", "forward_kl")
    history = client.get_metric_history(stage2.info.run_id, "val_nmse_db_expected")
    assert len(history) >= 2  # by step
    evaluate = next(r for r in children if r.data.tags["rule"] == "evaluate" and r.data.tags["task"] == SR)
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


def edit_config(work, task, section, **values):
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg[task][section].update(values)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_reordering_config_keys_runs_nothing(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
    assert planned_jobs(rerun_dir) == set()


def test_stage2_setting_reruns_stage2_and_downstream(rerun_dir):
    edit_config(rerun_dir, SR, "stage2", lr=0.002)
    # the variants are the main config plus their overrides: their Stage II re-trains too
    assert planned_task_jobs(rerun_dir) == {("stage2", SR): 1, ("finetune", SR): 1, ("evaluate", SR): 1,
                                            ("report", "-"): 1, ("ablation_stage2", SR): 2,
                                            ("ablation_evaluate", SR): 2}


def test_denoising_section_change_reruns_only_denoising_jobs(rerun_dir):
    edit_config(rerun_dir, DN, "stage2", lr=0.002)
    jobs = planned_task_jobs(rerun_dir)
    assert jobs == {("stage2", DN): 1, ("finetune", DN): 1, ("evaluate", DN): 1, ("report", "-"): 1}
    edit_config(rerun_dir, DN, "data", patch_size=20)
    jobs = planned_task_jobs(rerun_dir)
    assert {task for _, task in jobs} == {DN, "-"}
    assert {r for r, _ in jobs} == {"data", "classical", "baseline", "stage1", "stage2", "finetune", "matched",
                                    "evaluate", "report"}


@pytest.mark.parametrize("path, tasks", [("l2o/models/dncnn.py", {DN}), ("l2o/models/maml.py", {FC, FR})])
def test_a_model_source_edit_reruns_only_its_tasks_training(rerun_dir, path, tasks):
    with open(rerun_dir / path, "a") as fh:
        fh.write("\n# an edit\n")
    jobs = planned_task_jobs(rerun_dir)
    assert {task for _, task in jobs} == tasks | {"-"}
    for task in tasks:
        assert ("data", task) not in jobs and ("classical", task) not in jobs
        assert ("stage1", task) in jobs and ("evaluate", task) in jobs


def test_variant_override_change_reruns_only_that_variant(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg[SR]["ablations"]["stage2_map"]["stage2"]["loss"] = "reverse_kl"
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_job_counts(rerun_dir) == {"ablation_stage2": 1, "ablation_evaluate": 1, "report": 1}


def test_new_variant_trains_only_what_it_overrides(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg[SR]["ablations"]["sampled"] = {"stage1": {"loss": "sampled"}}
    cfg[SR]["ablations"]["wide"] = {"policy": {"hidden": [32]}}
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_job_counts(rerun_dir) == {"ablation_stage1": 1, "ablation_stage2": 2, "ablation_evaluate": 2,
                                             "report": 1}


def test_stage1_beta_leaves_the_matched_control_alone(rerun_dir):
    edit_config(rerun_dir, SR, "stage1", beta=0.5)
    jobs = planned_task_jobs(rerun_dir)
    assert ("matched", SR) not in jobs and ("baseline", SR) not in jobs
    # beta_2 overrides beta: its Stages I and II stay; stage2_map sits on the main Stage I: re-trained
    assert jobs[("stage1", SR)] == 1 and ("ablation_stage1", SR) not in jobs and jobs[("ablation_stage2", SR)] == 1


def test_stage2_source_edit_reruns_stage2_and_downstream(rerun_dir):
    with open(rerun_dir / "l2o/train/stage2.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert planned_jobs(rerun_dir) == {"stage2", "finetune", "evaluate", "report", "ablation_stage2",
                                       "ablation_evaluate"}


def test_evaluation_code_edit_leaves_the_classical_baselines_alone(rerun_dir):
    with open(rerun_dir / "l2o/evaluate.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert planned_jobs(rerun_dir) == {"evaluate", "ablation_evaluate", "report"}


def test_report_code_edit_reruns_only_report(rerun_dir):
    for path in ("l2o/report/build.py", "l2o/tasks/denoising/report.py"):
        with open(rerun_dir / path, "a") as fh:
            fh.write("\n# an edit\n")
        assert planned_jobs(rerun_dir) == {"report"}


def test_disabling_finetune_drops_it(rerun_dir):
    edit_config(rerun_dir, SR, "finetune", enabled=False)
    jobs = planned_task_jobs(rerun_dir)
    assert ("finetune", SR) not in jobs and ("stage2", SR) not in jobs and ("evaluate", SR) in jobs


def test_leaving_out_a_task_runs_nothing_new(rerun_dir):
    cfg = yaml.safe_load((rerun_dir / "config.yaml").read_text())
    cfg["tasks"] = [SR]
    (rerun_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_task_jobs(rerun_dir) == {("report", "-"): 1}


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({SR: {"stage2": {"lrr": 0.1}}}, "lrr"),  # unknown key
        ({SR: {"model": {"T": "twenty"}}}, "twenty"),  # wrong type
        ({SR: {"model": {"T": 1}}}, "T"),  # out of range
        ({SR: {"stage1": {"beta": 0.0}}}, "beta"),  # beta <= 0
        ({SR: {"stage2": {"loss": "kl"}}}, "loss"),  # unknown loss
        ({"seeds": []}, "seeds"),
        ({"tasks": ["sparse_recovery", "denosing"]}, "unknown task 'denosing'"),
        ({"denosing": {"model": {}}}, "unknown config section(s) ['denosing']"),
        ({DN: {"data": {"train_sigmas": []}}}, "config section 'denoising' is invalid"),
        ({DN: {"model": {"layers": 2}}}, "layers"),
        ({DN: {"model": {"head": "conv3"}}}, "conv3"),
        ({SR: {"ablations": {"x": {"stage2": {"los": "map"}}}}},
         "sparse_recovery.ablations.x.stage2: unknown key(s) ['los']"),
        ({SR: {"ablations": {"x": {"stage1": {"beta": 0.28}}}}}, "sparse_recovery.ablations.x changes nothing"),
        ({SR: {"ablations": {"x": {"stage1": {"beta": -1.0}}}}},
         "sparse_recovery.ablations.x: the overridden config is invalid"),
        ({SR: {"ablations": {"x": {"model": {"T": 5}}}}}, "'model' was unexpected"),
        ({SR: {"ablations": {"a/b": {"stage2": {"loss": "map"}}}}}, "'a/b' does not match"),
    ],
)
def test_schema_rejects_bad_config(tmp_path, patch, needle):
    from workflow_helpers import merge

    work = copy_workflow(tmp_path)
    cfg = merge(yaml.safe_load((work / "config.yaml").read_text()), patch)
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
