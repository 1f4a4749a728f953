"""docs/add-a-task.md is run: its files are written out, the task registered, checked against the
contract, trained through Stages I and II, evaluated and reported; and (workflow marker) run by
Snakemake from a config, registered through L2O_TASKS."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "add-a-task.md"


def doc_files() -> dict[str, str]:
    """``{file name: content}`` of the doc's code blocks whose first line is ``# file: <name>``."""
    blocks = re.findall(r"```[a-z]*\n(# file: (\S+)\n.*?)```", DOC.read_text(), flags=re.S)
    return {name: body for body, name in blocks}


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    files = doc_files()
    assert {"toy_gd_task.py", "toy_gd.schema.yaml", "config.yaml"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    from l2o.tasks import registry

    monkeypatch.setitem(registry.TASKS, "toy_gd", "toy_gd_task:GDTask")
    yield tmp_path
    sys.modules.pop("toy_gd_task", None)


def test_the_example_passes_the_contract(toy_task):
    from l2o.tasks.contract import check_task

    section = yaml.safe_load((toy_task / "config.yaml").read_text())["toy_gd"]
    facts = check_task("toy_gd", section, toy_task / "contract")
    assert facts["T"] == 8 and facts["metric"] == "mse_db"


def test_the_example_trains_evaluates_and_reports(toy_task):
    from l2o.evaluate import run_models
    from l2o.report.build import build_report
    from l2o.report.results import TaskInputs
    from l2o.tasks.registry import task_class
    from l2o.train import baseline, stage1, stage2

    d = toy_task / "run"
    cfg = yaml.safe_load((toy_task / "config.yaml").read_text())["toy_gd"]
    task_class("toy_gd").prepare_data(cfg["data"], d / "data.npz")
    opt = dict(iterations=150, batch_size=64, lr=0.01, val_every=50)
    kw = dict(task="toy_gd", data=d / "data.npz", progress=False)
    baseline.run(out=d / "b.pt", model=cfg["model"], baseline=opt, **kw)
    stage1.run(out=d / "s1.pt", model=cfg["model"], stage1={**opt, "beta": 1.0}, **kw)
    stage2.run(model_ckpt=d / "s1.pt", out=d / "s2.pt", policy={"hidden": 16, "candidate_threshold": 0.0},
               stage2=opt, **kw)
    df = run_models(task="toy_gd", data=d / "data.npz", checkpoints={"baseline": d / "b.pt", "stop": d / "s2.pt"},
                    out_table=d / "ev/metrics.csv", out_json=d / "ev/curves.json", out_showcase=d / "ev/show.npz")
    stops = df[(df.method == "gd_stop") & (df.metric == "mean_stop")].set_index("condition").value
    assert set(stops.index) == {"mixed", "noise0.05", "noise0.5"}
    build_report(tasks={"toy_gd": TaskInputs(tables=[d / "ev/metrics.csv"], curves=[d / "ev/curves.json"],
                                             data_meta=d / "data.json", showcase=[d / "ev/show.npz"])},
                 config={"toy_gd": cfg}, out_summary=d / "r/summary.csv", out_markdown=d / "r/report.md",
                 out_html=d / "r/report.html", out_plots=d / "r/plots")
    md = (d / "r/report.md").read_text()
    assert "## Toy: unrolled gradient descent" in md and "GD-stop" in md
    assert "What does stopping buy? Accuracy against compute" in md
    assert (d / "r/plots/toy_gd_accuracy_vs_steps.png").is_file()
    summary = pd.read_csv(d / "r/summary.csv")
    assert set(summary.task) == {"toy_gd"}
    depth = summary[(summary.curve == "fixed depth") & (summary.condition == "mixed") & (summary.method == "tradeoff/gd_stop")]
    assert sorted(depth.mean_steps) == list(range(1, 9)) and (depth.seconds_per_example > 0).all()


@pytest.mark.workflow
def test_the_example_runs_in_the_workflow(toy_task, tmp_path):
    from workflow_helpers import copy_workflow, run_snakemake

    work = copy_workflow(tmp_path / "wf")
    (work / "workflow/schemas/tasks/toy_gd.schema.yaml").write_text((toy_task / "toy_gd.schema.yaml").read_text())
    (work / "config.yaml").write_text((toy_task / "config.yaml").read_text())
    env = {"L2O_TASKS": "toy_gd=toy_gd_task:GDTask",
           "PYTHONPATH": os.pathsep.join([str(toy_task), os.environ.get("PYTHONPATH", "")])}
    run_snakemake(work, env=env)
    summary = pd.read_csv(work / "results/summary.csv")
    assert set(summary.task) == {"toy_gd"} and "gd_stop" in set(summary.method)
    assert (work / "results/toy_gd/seed0/matched/model.pt").is_file()
