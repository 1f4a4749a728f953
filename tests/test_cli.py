"""The command line: help for every stage, errors that name the bad argument or file."""

from __future__ import annotations

import pytest
import yaml

from l2o.cli import build_parser, main

COMMANDS = ["data", "classical", "baseline", "matched", "stage1", "stage2", "finetune", "aevb", "evaluate", "predict",
            "report", "mlflow-server", "runs", "fetch-data"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_every_command_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.fixture
def tiny_config(tmp_path):
    cfg = {"tasks": ["sparse_recovery"], "sparse_recovery": {
        "data": {"m": 10, "n": 20, "n_val_per_snr": 10, "n_test_per_snr": 10},
        "model": {"T": 3},
        "policy": {"hidden": [8]},
        "baseline": {"iterations": 4, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "stage1": {"iterations": 4, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "stage2": {"iterations": 4, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "finetune": {"iterations": 2, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "aevb": {"iterations": 2, "batch_size": 8, "lr": 0.001, "val_every": 2},
        "classical": {"budgets": [3], "L_grid": [4.0, 8.0], "rho_grid": [0.1], "paper_settings": {}},
    }}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_sequence_from_data_to_prediction(tmp_path, tiny_config, capsys):
    d = tmp_path / "data/problem.npz"
    args = ["--config", str(tiny_config), "--no-progress"]
    assert main(["data", *args, "--out", str(d)]) == 0
    assert main(["classical", *args, "--data", str(d), "--out-dir", str(tmp_path / "cl")]) == 0
    assert main(["baseline", *args, "--data", str(d), "--out", str(tmp_path / "b.pt")]) == 0
    assert main(["stage1", *args, "--data", str(d), "--out", str(tmp_path / "s1.pt")]) == 0
    assert main(["matched", *args, "--data", str(d), "--out", str(tmp_path / "m.pt")]) == 0
    assert main(["stage2", *args, "--data", str(d), "--model", str(tmp_path / "s1.pt"), "--out", str(tmp_path / "s2.pt")]) == 0
    assert main(["finetune", *args, "--data", str(d), "--model", str(tmp_path / "s2.pt"), "--out", str(tmp_path / "s3.pt")]) == 0
    assert main(["evaluate", *args, "--data", str(d), "--baseline", str(tmp_path / "b.pt"), "--stop",
                 str(tmp_path / "s2.pt"), "--matched", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "ev")]) == 0
    import pandas as pd

    assert {"lista", "lista_matched", "lista_stop"} <= set(pd.read_csv(tmp_path / "ev/metrics.csv").method)
    assert main(["predict", *args, "--data", str(d), "--model", str(tmp_path / "s2.pt"), "--out", str(tmp_path / "p.npz")]) == 0
    assert (tmp_path / "p.npz").is_file()


def test_missing_data_file_is_named(tmp_path, tiny_config, capsys):
    code = main(["baseline", "--config", str(tiny_config), "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "b.pt")])
    assert code == 2
    assert "nope.npz" in capsys.readouterr().err
    assert not (tmp_path / "b.pt").exists()


def test_unknown_config_key_is_named(tmp_path, tiny_config, capsys):
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["sparse_recovery"]["data"]["sparsity_"] = 0.2
    tiny_config.write_text(yaml.safe_dump(cfg))
    assert main(["data", "--config", str(tiny_config), "--out", str(tmp_path / "d.npz")]) == 2
    assert "sparsity_" in capsys.readouterr().err


def test_missing_config_file_is_named(tmp_path, capsys):
    assert main(["data", "--config", str(tmp_path / "absent.yaml"), "--out", str(tmp_path / "d.npz")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_wrong_kind_of_checkpoint_is_named(tmp_path, tiny_config, capsys):
    d = tmp_path / "problem.npz"
    args = ["--config", str(tiny_config), "--no-progress"]
    main(["data", *args, "--out", str(d)])
    main(["baseline", *args, "--data", str(d), "--out", str(tmp_path / "b.pt")])
    code = main(["finetune", *args, "--data", str(d), "--model", str(tmp_path / "b.pt"), "--out", str(tmp_path / "f.pt")])
    assert code == 2
    assert "b.pt" in capsys.readouterr().err


def test_old_flat_config_is_explained(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"problem": {"m": 10}, "model": {"T": 3}}))
    assert main(["data", "--config", str(path), "--out", str(tmp_path / "d.npz")]) == 2
    assert "old flat layout" in capsys.readouterr().err


def test_several_tasks_need_task_flag(tmp_path, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["sparse_recovery", "denoising"], "sparse_recovery": {}, "denoising": {}}))
    assert main(["data", "--config", str(path), "--out", str(tmp_path / "d.npz")]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["data", "--config", str(path), "--task", "nope", "--out", str(tmp_path / "d.npz")]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
