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
    assert len(facts["stops"]) > 1  # the early-exit check saw examples stop at different steps


def test_contract_catches_an_early_exit_that_stops_elsewhere(tmp_path, monkeypatch):
    """Early exit that reads the logits of the wrong rows must fail the contract (every task's policy)."""
    import l2o.stopping.inference as inference

    real = inference.predict_early_exit

    def shifted(task, model, policy, batch, candidates, uniforms=None, rule=inference.PAPER, decide=None):
        pred, stop = real(task, model, policy, batch, candidates, uniforms, rule, decide)
        return pred, stop.roll(1)

    monkeypatch.setattr("l2o.tasks.contract.predict_early_exit", shifted)
    for name in ("sparse_recovery", "few_shot_regression"):
        with pytest.raises(AssertionError, match="must stop where the all-steps path does"):
            check_task(name, TINY[name], tmp_path / name)


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
