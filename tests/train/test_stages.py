"""The training stages end to end on the tiny problem, and their config/checkpoint checks.

A module-scoped pipeline runs baseline -> stage1 (init: baseline) -> stage2 -> finetune,
and aevb, with a few dozen iterations each (seconds in total on a CPU).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from l2o.checkpoints import build_model, build_policy, load_checkpoint
from l2o.stopping.inference import predict_early_exit
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask
from l2o.train import aevb, baseline, finetune, stage1, stage2
from l2o.tasks.registry import load_task

MODEL = {"T": 4}
OPT = {"iterations": 30, "batch_size": 32, "lr": 1e-3, "val_every": 10}
POLICY = {"hidden": [16], "candidate_threshold": None}
COMMON = {"progress": False, "device": "cpu"}

SCORE = {
    "baseline": "val_nmse_db_last",
    "stage1": "val_nmse_db_best_step",
    "stage2": "val_nmse_db_rule",
    "finetune": "val_nmse_db_expected",
    "aevb": "val_nmse_db_expected",
}


def run_baseline(data, out, **kw):
    return baseline.run(data=data, out=out, model=kw.pop("model", MODEL),
                        baseline=kw.pop("section", OPT), **COMMON, **kw)


def run_stage1(data, out, init, **kw):
    return stage1.run(data=data, out=out, model=kw.pop("model", MODEL),
                      stage1=kw.pop("section", {**OPT, "init": "baseline", "beta": 0.28}),
                      init=init, **COMMON, **kw)


def run_stage2(data, model_ckpt, out, **kw):
    return stage2.run(data=data, model_ckpt=model_ckpt, out=out, policy=kw.pop("policy", POLICY),
                      stage2=kw.pop("section", {**OPT, "loss": "forward_kl"}), **COMMON, **kw)


def run_finetune(data, stop_ckpt, out, **kw):
    return finetune.run(data=data, stop_ckpt=stop_ckpt, out=out,
                        finetune=kw.pop("section", {**OPT, "enabled": True}), **COMMON, **kw)


def run_aevb(data, out, **kw):
    return aevb.run(data=data, out=out, model=kw.pop("model", MODEL), policy=kw.pop("policy", POLICY),
                    aevb=kw.pop("section", {**OPT, "beta": 0.28, "enabled": True}), **COMMON, **kw)


@pytest.fixture(scope="module")
def pipeline(tiny_problem, tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    data = tiny_problem.path
    paths = {name: d / f"{name}.pt" for name in SCORE}
    summaries = {
        "baseline": run_baseline(data, paths["baseline"]),
        "stage1": run_stage1(data, paths["stage1"], paths["baseline"]),
    }
    summaries["stage2"] = run_stage2(data, paths["stage1"], paths["stage2"])
    summaries["finetune"] = run_finetune(data, paths["stage2"], paths["finetune"])
    summaries["aevb"] = run_aevb(data, paths["aevb"])
    ckpts = {name: load_checkpoint(p) for name, p in paths.items()}
    return {"dir": d, "data": data, "paths": paths, "summaries": summaries, "ckpts": ckpts}


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".work")]


# -- the pipeline ---------------------------------------------------------------------


#: stages that start from a trained model validate it too (iteration 0); from scratch they do not
WARM = {"baseline": False, "stage1": True, "stage2": True, "finetune": True, "aevb": True}


def untrained_score(data, name: str) -> float:
    """The validation score of the model a from-scratch stage starts from (LISTA at its ISTA init)."""
    from l2o.train.common import collect, predictive_val_metrics

    task = load_task("sparse_recovery", data, "cpu")
    torch.manual_seed(0)
    net = task.build_model(task.model_args(MODEL)).eval()
    return predictive_val_metrics(task, collect(task, net, "val"))["val_nmse_db_last"]


@pytest.mark.parametrize("name", list(SCORE))
def test_each_stage_improves_over_its_start(pipeline, name):
    ckpt = pipeline["ckpts"][name]
    key = SCORE[name]
    history = ckpt["history"]
    assert [row["iteration"] for row in history] == ([0] if WARM[name] else []) + [10, 20, 30]
    best = min(row[key] for row in history)
    start = history[0][key] if WARM[name] else untrained_score(pipeline["data"], name)
    assert best < start
    assert ckpt["best_iteration"] == next(r["iteration"] for r in history if r[key] == best)
    assert ckpt["stage"] == name


def test_outputs_and_no_leftovers(pipeline):
    d = pipeline["dir"]
    assert sorted(p.name for p in d.iterdir()) == sorted(f"{n}.pt" for n in SCORE)
    assert no_temporary_files(d)


def test_checkpoint_contents(pipeline, tiny_problem):
    ck = pipeline["ckpts"]
    assert {n: c["kind"] for n, c in ck.items()} == {
        "baseline": "predictive", "stage1": "predictive",
        "stage2": "stopping", "finetune": "stopping", "aevb": "stopping"}
    assert all(c["data_hash"] == tiny_problem.data_hash for c in ck.values())
    assert all(c["model_args"]["T"] == 4 for c in ck.values())
    assert ck["stage1"]["beta"] == ck["stage2"]["beta"] == ck["finetune"]["beta"] == 0.28
    assert ck["stage2"]["candidate_steps"] == [1, 2, 3, 4]  # threshold None keeps every step
    assert ck["aevb"]["candidate_steps"] == [1, 2, 3, 4]
    assert len(ck["stage2"]["oracle_mass"]) == 4
    assert sum(ck["stage2"]["oracle_mass"]) == pytest.approx(1.0, abs=1e-9)


def test_stages_chain_their_states(pipeline):
    ck = pipeline["ckpts"]
    # stage1 starts from the trained baseline: its untrained-start score is the baseline's best
    assert ck["stage1"]["history"][0]["val_nmse_db_last"] == pytest.approx(
        pipeline["summaries"]["baseline"]["best_val_nmse_db_last"], abs=1e-9)
    # stage2 freezes the model: the stopping checkpoint holds stage1's weights unchanged
    for k, v in ck["stage1"]["model_state"].items():
        assert torch.equal(v, ck["stage2"]["model_state"][k]), k
    # finetune starts from stage2's result and changes both model and policy
    stage2_best = next(r for r in ck["stage2"]["history"] if r["iteration"] == ck["stage2"]["best_iteration"])
    assert ck["finetune"]["history"][0]["val_nmse_db_expected"] == pytest.approx(
        stage2_best["val_nmse_db_expected"], abs=1e-9)
    assert not torch.equal(ck["finetune"]["model_state"]["W2"], ck["stage2"]["model_state"]["W2"])
    assert not torch.equal(ck["finetune"]["policy_state"]["net.0.weight"],
                           ck["stage2"]["policy_state"]["net.0.weight"])


def test_stopping_checkpoint_rebuilds_and_predicts(pipeline, tiny_problem):
    task = load_task("sparse_recovery", tiny_problem.path, "cpu")
    path = pipeline["paths"]["finetune"]
    ckpt = load_checkpoint(path, "stopping", task)
    net, pol = build_model(task, ckpt, path), build_policy(task, ckpt, path)
    test = task.split("test")
    pred, step = predict_early_exit(task, net, pol, test, ckpt["candidate_steps"])
    assert pred.shape == test["x"].shape
    assert ((step >= 1) & (step <= 4)).all()


def test_baseline_resumes_after_kill(pipeline, tiny_problem, tmp_path, monkeypatch, interrupt_training):
    """Kill the baseline at iteration 15 (after the checkpoint at 10), rerun: same output."""
    out = tmp_path / "baseline.pt"
    interrupt_training(15)
    with pytest.raises(KeyboardInterrupt):
        run_baseline(tiny_problem.path, out)
    assert not out.exists()
    work = tmp_path / ".baseline.pt.work"
    assert torch.load(work / "last.pt", weights_only=False)["iteration"] == 10
    monkeypatch.undo()

    run_baseline(tiny_problem.path, out)
    assert not work.exists()
    resumed, reference = load_checkpoint(out), pipeline["ckpts"]["baseline"]
    assert resumed["history"] == reference["history"]
    for k, v in reference["model_state"].items():
        assert torch.equal(v, resumed["model_state"][k]), k


# -- checkpoints that do not fit ---------------------------------------------------------


def _altered_copy(src: Path, dst: Path, **changes) -> Path:
    ckpt = torch.load(src, weights_only=False)
    for key, value in changes.items():
        if isinstance(value, dict):
            ckpt[key] = {**ckpt[key], **value}
        else:
            ckpt[key] = value
    torch.save(ckpt, dst)
    return dst


def test_stage2_rejects_checkpoint_with_mismatched_T(pipeline, tmp_path):
    bad = _altered_copy(pipeline["paths"]["stage1"], tmp_path / "stage1_T3.pt", model_args={"T": 3})
    with pytest.raises(ValueError, match="stage1_T3.pt"):
        run_stage2(pipeline["data"], bad, tmp_path / "s2.pt")
    assert not (tmp_path / "s2.pt").exists()


def test_stage2_rejects_checkpoint_from_other_data(pipeline, tmp_path):
    bad = _altered_copy(pipeline["paths"]["stage1"], tmp_path / "other_data.pt", data_hash="0" * 64)
    with pytest.raises(ValueError, match="other_data.pt"):
        run_stage2(pipeline["data"], bad, tmp_path / "s2.pt")


def test_stage2_rejects_wrong_kind_and_garbage(pipeline, tmp_path):
    with pytest.raises(ValueError, match=r"aevb\.pt.*'stopping'"):
        run_stage2(pipeline["data"], pipeline["paths"]["aevb"], tmp_path / "s2.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        run_stage2(pipeline["data"], garbage, tmp_path / "s2.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        run_stage2(pipeline["data"], tmp_path / "missing.pt", tmp_path / "s2.pt")


def test_finetune_rejects_predictive_checkpoint(pipeline, tmp_path):
    with pytest.raises(ValueError, match="stage1.pt"):
        run_finetune(pipeline["data"], pipeline["paths"]["stage1"], tmp_path / "ft.pt")


def test_stage1_rejects_baseline_checkpoint_with_other_T(pipeline, tmp_path):
    """The model section says T=6 but the baseline checkpoint holds T=4: that must not be
    trained silently as T=4 (the output would record model T=6 and hold a T=4 model)."""
    out = tmp_path / "s1.pt"
    with pytest.raises(ValueError, match="baseline.pt"):
        run_stage1(pipeline["data"], out, pipeline["paths"]["baseline"], model={"T": 6})
    assert not out.exists()


def test_stage1_baseline_init_needs_a_checkpoint(pipeline, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        run_stage1(pipeline["data"], tmp_path / "s1.pt", None)


# -- config checks ----------------------------------------------------------------------


BAD_KEY = "no_such_key"


@pytest.mark.parametrize("runner", [
    lambda d, t: run_baseline(d, t / "o.pt", section={**OPT, BAD_KEY: 1}),
    lambda d, t: run_baseline(d, t / "o.pt", model={**MODEL, BAD_KEY: 1}),
    lambda d, t: run_stage1(d, t / "o.pt", None, section={**OPT, BAD_KEY: 1}),
    lambda d, t: run_stage1(d, t / "o.pt", None, model={**MODEL, BAD_KEY: 1},
                            section={**OPT, "init": "scratch"}),
    lambda d, t: run_stage2(d, t / "in.pt", t / "o.pt", section={**OPT, BAD_KEY: 1}),
    lambda d, t: run_stage2(d, t / "in.pt", t / "o.pt", policy={**POLICY, BAD_KEY: 1}),
    lambda d, t: run_finetune(d, t / "in.pt", t / "o.pt", section={**OPT, BAD_KEY: 1}),
    lambda d, t: run_aevb(d, t / "o.pt", section={**OPT, BAD_KEY: 1}),
    lambda d, t: run_aevb(d, t / "o.pt", policy={**POLICY, BAD_KEY: 1}),
    lambda d, t: run_aevb(d, t / "o.pt", model={**MODEL, BAD_KEY: 1}),
], ids=["baseline", "baseline-model", "stage1", "stage1-model", "stage2", "stage2-policy",
        "finetune", "aevb", "aevb-policy", "aevb-model"])
def test_unknown_config_key_raises_naming_it(tiny_problem, tmp_path, runner):
    with pytest.raises(ValueError, match=BAD_KEY):
        runner(tiny_problem.path, tmp_path)
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("beta", [-0.28, 0.0])
def test_bad_beta_raises(tiny_problem, tmp_path, beta):
    with pytest.raises(ValueError, match="beta"):
        run_stage1(tiny_problem.path, tmp_path / "o.pt", None,
                   section={**OPT, "init": "scratch", "beta": beta})
    with pytest.raises(ValueError, match="beta"):
        run_aevb(tiny_problem.path, tmp_path / "o.pt", section={**OPT, "beta": beta})


@pytest.mark.parametrize("runner", [
    lambda d, t: run_baseline(d, t / "o.pt", model={"T": 1}),
    lambda d, t: run_stage1(d, t / "o.pt", None, model={"T": 1}, section={**OPT, "init": "scratch"}),
    lambda d, t: run_aevb(d, t / "o.pt", model={"T": 1}),
], ids=["baseline", "stage1", "aevb"])
def test_T_below_2_raises(tiny_problem, tmp_path, runner):
    with pytest.raises(ValueError, match="T must be >= 2"):
        runner(tiny_problem.path, tmp_path)


@pytest.mark.parametrize("section, match", [
    ({**OPT, "loss": "bogus"}, "bogus"),
    ({**OPT, "init": "warm"}, "warm"),
    ({**OPT, "lr": -1.0}, "lr"),
])
def test_stage1_bad_values(tiny_problem, tmp_path, section, match):
    with pytest.raises(ValueError, match=match):
        run_stage1(tiny_problem.path, tmp_path / "o.pt", None, section=section)


def test_stage2_bad_values(pipeline, tmp_path):
    with pytest.raises(ValueError, match="'kl'"):
        run_stage2(pipeline["data"], pipeline["paths"]["stage1"], tmp_path / "o.pt",
                   section={**OPT, "loss": "kl"})
    with pytest.raises(ValueError, match="candidate_threshold"):
        run_stage2(pipeline["data"], pipeline["paths"]["stage1"], tmp_path / "o.pt",
                   policy={"hidden": [4], "candidate_threshold": 1.5})


def test_baseline_bad_gamma(tiny_problem, tmp_path):
    with pytest.raises(ValueError, match="gamma"):
        run_baseline(tiny_problem.path, tmp_path / "o.pt", section={**OPT, "gamma": 1.5})


def test_step_weights():
    w = baseline.step_weights(3, 0.5)
    assert torch.allclose(w, torch.tensor([0.25, 0.5, 1.0]) / 1.75)


# -- atomic outputs ---------------------------------------------------------------------


def test_failed_training_leaves_no_output(tiny_problem, tmp_path, monkeypatch):
    real = SparseRecoveryTask.sample_batch
    calls = {"n": 0}

    def nan_batch(self, batch_size, generator):
        calls["n"] += 1
        batch = real(self, batch_size, generator)
        if calls["n"] == 3:
            batch["y"] = batch["y"] * float("nan")
        return batch

    monkeypatch.setattr(SparseRecoveryTask, "sample_batch", nan_batch)
    out = tmp_path / "o.pt"
    with pytest.raises(FloatingPointError, match="baseline"):
        run_baseline(tiny_problem.path, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_previous_output_intact(tiny_problem, tmp_path, monkeypatch):
    out = tmp_path / "o.pt"
    out.write_bytes(b"previous output")
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if Path(f.name).name.startswith(".o.pt."):  # the final output's temporary file (an open file)
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left on device") as info:
        run_baseline(tiny_problem.path, out, section={**OPT, "iterations": 2, "val_every": 1})
    assert info.value.filename == str(out)  # the file the job meant to write, not its temporary name
    assert out.read_bytes() == b"previous output"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
