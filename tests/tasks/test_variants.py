"""Task variants (l2o.tasks.registry.VARIANTS): a registered task under another name, with a config
section, data, models and rows of its own (the non-blind denoisers of the standard table)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from l2o.tasks.contract import check_task
from l2o.tasks.registry import VARIANTS, base_task, load_task, task_class, task_classical, task_spec

REPO = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_is_its_base_under_its_own_name(name):
    base = base_task(name)
    cls = task_class(name)
    assert issubclass(cls, task_class(base)) and cls.name == name and task_class(name) is cls
    spec, base_spec = task_spec(name), task_spec(base)
    assert spec.name == name and spec.title != base_spec.title
    assert (spec.sources, spec.report, spec.model_label) == (base_spec.sources, base_spec.report, base_spec.model_label)
    schema = REPO / "workflow/schemas/tasks" / f"{name}.schema.yaml"
    assert schema.resolve() == (REPO / "workflow/schemas/tasks" / f"{base}.schema.yaml").resolve()


def test_a_variant_passes_the_contract_and_labels_its_rows(tmp_path):
    """denoising_sigma25 on the tiny denoising section, trained and tested at sigma 25 alone."""
    section = {**TINY["denoising"]}
    section["data"] = {**section["data"], "train_sigmas": [25], "val_sigmas": [25], "test_sigmas": [25]}
    facts = check_task("denoising_sigma25", section, tmp_path)
    assert "sigma25" in facts["conditions"]
    task = load_task("denoising_sigma25", tmp_path / "a" / "data.npz", "cpu")
    assert task.name == "denoising_sigma25"
    table = task_classical("denoising_sigma25")(
        data=tmp_path / "a" / "data.npz", out_table=tmp_path / "c.csv", out_json=tmp_path / "c.json",
        classical={"bm3d": False, "nlm_h_factors": [0.8]})
    assert set(table.task) == {"denoising_sigma25"}
    assert set(pd.read_csv(tmp_path / "c.csv").condition) == {"mixed", "sigma25"}
