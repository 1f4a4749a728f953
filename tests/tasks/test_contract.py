"""The task contract (l2o.tasks.contract) for every registered task, on its tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from l2o.tasks.contract import check_task, main
from l2o.tasks.registry import TASKS, VARIANTS

TINY = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/tiny.yaml").read_text())


@pytest.mark.parametrize("name", sorted(set(TASKS) - set(VARIANTS)))  # variants: tests/tasks/test_variants.py
def test_every_registered_task_passes_the_contract(name, tmp_path):
    assert name in TINY, f"configs/tiny.yaml needs a section for task {name!r} (the tests and the tiny workflow use it)"
    facts = check_task(name, TINY[name], tmp_path)
    assert facts["T"] >= 2 and facts["conditions"]


def test_contract_catches_a_broken_early_exit(tmp_path, monkeypatch):
    """A contract that cannot fail proves nothing: break the step-wise readout and it must."""
    from l2o.models.lista import LISTA

    monkeypatch.setattr(LISTA, "readout", lambda self, t, x, y: x * 0.5)
    with pytest.raises(AssertionError, match="step-wise protocol"):
        check_task("sparse_recovery", TINY["sparse_recovery"], tmp_path)


def test_contract_command_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"sparse_recovery": TINY["sparse_recovery"]}))
    assert main(["--config", str(path), "--task", "sparse_recovery"]) == 0
    assert "passes the contract" in capsys.readouterr().out
