"""The compute-aware prior p(t) ∝ exp(-lambda c_t) through the stages on the tiny problem:
config keys, what each checkpoint records under ``prior``, and Stage II's lambda override."""

from __future__ import annotations

import json

import pytest
import torch

from l2o.checkpoints import load_checkpoint
from l2o.stopping import prior as prior_mod
from l2o.tasks.sparse_recovery.task import SparseRecoveryTask
from l2o.train import aevb, finetune, stage1, stage2

MODEL = {"T": 4}
OPT = {"iterations": 20, "batch_size": 32, "lr": 1e-3, "val_every": 10}
POLICY = {"hidden": [16], "candidate_threshold": None}
COMMON = {"progress": False, "device": "cpu"}
STEPS = [1.0, 2.0, 3.0, 4.0]


def run_stage1(data, out, **section):
    return stage1.run(data=data, out=out, model=MODEL, stage1={**OPT, "init": "scratch", "beta": 0.28, **section},
                      **COMMON)


def run_stage2(data, model_ckpt, out, policy=POLICY, **section):
    return stage2.run(data=data, model_ckpt=model_ckpt, out=out, policy=policy,
                      stage2={**OPT, "loss": "forward_kl", **section}, **COMMON)


def run_finetune(data, stop_ckpt, out):
    return finetune.run(data=data, stop_ckpt=stop_ckpt, out=out, finetune={**OPT, "enabled": True}, **COMMON)


def run_aevb(data, out, **section):
    return aevb.run(data=data, out=out, model=MODEL, policy=POLICY,
                    aevb={**OPT, "beta": 0.28, "enabled": True, **section}, **COMMON)


def mean_step(mass) -> float:
    return sum(t * m for t, m in enumerate(mass, start=1))


@pytest.fixture(scope="module")
def chain(tiny_problem, tmp_path_factory):
    """Stage I at lambda 0.5 (steps) and at lambda 0; Stage II on the first with its lambda and
    with an override; Stage III on the override."""
    d = tmp_path_factory.mktemp("prior_chain")
    data = tiny_problem.path
    p = {name: d / f"{name}.pt" for name in ("s1", "s1_zero", "s2", "s2_override", "s2_zero", "s2_zero_big", "ft")}
    run_stage1(data, p["s1"], prior_lambda=0.5)
    run_stage1(data, p["s1_zero"])
    run_stage2(data, p["s1"], p["s2"])
    run_stage2(data, p["s1"], p["s2_override"], prior_lambda=2.0)
    run_stage2(data, p["s1_zero"], p["s2_zero"])
    run_stage2(data, p["s1_zero"], p["s2_zero_big"], prior_lambda=5.0)
    run_finetune(data, p["s2_override"], p["ft"])
    return {"data": data, "paths": p, "ckpts": {k: load_checkpoint(v) for k, v in p.items()}}


def test_stage1_records_its_prior(chain):
    ck = chain["ckpts"]
    assert ck["s1"]["prior"] == {"lambda": 0.5, "cost": "steps", "costs": STEPS}
    assert ck["s1_zero"]["prior"] == {"lambda": 0.0, "cost": "steps", "costs": STEPS}


def test_stage2_uses_stage1_lambda_unless_overridden(chain):
    ck = chain["ckpts"]
    assert ck["s2"]["prior"] == {"lambda": 0.5, "cost": "steps", "costs": STEPS}
    assert ck["s2_override"]["prior"] == {"lambda": 2.0, "cost": "steps", "costs": STEPS}
    assert ck["s2_zero_big"]["prior"]["lambda"] == 5.0
    assert ck["s2_zero"]["prior"]["lambda"] == 0.0
    # the override re-uses Stage I: the same frozen model
    for k, v in ck["s1"]["model_state"].items():
        assert torch.equal(v, ck["s2_override"]["model_state"][k]), k


def test_stage3_uses_stage2_prior(chain, tmp_path):
    assert chain["ckpts"]["ft"]["prior"] == {"lambda": 2.0, "cost": "steps", "costs": STEPS}
    # the same Stage II checkpoint with lambda 0 fine-tunes to other weights: the prior entered the objective
    ckpt = torch.load(chain["paths"]["s2_override"], weights_only=False)
    ckpt["prior"] = {**ckpt["prior"], "lambda": 0.0}
    uniform = tmp_path / "s2_uniform.pt"
    torch.save(ckpt, uniform)
    run_finetune(chain["data"], uniform, tmp_path / "ft.pt")
    ft = load_checkpoint(tmp_path / "ft.pt")
    assert ft["prior"]["lambda"] == 0.0
    assert not torch.equal(ft["policy_state"]["net.0.weight"], chain["ckpts"]["ft"]["policy_state"]["net.0.weight"])


def test_stage2_oracle_mass_moves_earlier_with_lambda(chain):
    """Same Stage I model: the candidates' oracle mass (over all T steps, with the prior) moves
    to earlier steps as lambda grows, and the policy follows it."""
    ck = chain["ckpts"]
    zero, big = ck["s2_zero"], ck["s2_zero_big"]
    assert sum(big["oracle_mass"]) == pytest.approx(1.0, abs=1e-9)
    assert mean_step(big["oracle_mass"]) < mean_step(zero["oracle_mass"])
    # lambda 5 over c = (1, 2, 3, 4): each later step is e^5 ~ 150x less likely a priori
    assert big["oracle_mass"][-1] < 0.01
    assert big["history"][-1]["val_mean_stop"] < zero["history"][-1]["val_mean_stop"]


def test_stage2_candidates_follow_the_prior(chain, tmp_path):
    """With a threshold, a large lambda drops the costly steps from the candidates (all but the
    first and, always kept, the last)."""
    cands = {}
    for lam in (0.0, 50.0):
        out = tmp_path / f"s2_{lam}.pt"
        run_stage2(chain["data"], chain["paths"]["s1_zero"], out, policy={**POLICY, "candidate_threshold": 0.01},
                   prior_lambda=lam, iterations=2, val_every=1)
        ck = load_checkpoint(out)
        assert ck["prior"]["lambda"] == lam
        cands[lam] = ck["candidate_steps"]
    assert cands[50.0] == [1, 4]
    assert len(cands[0.0]) > 2


def test_aevb_records_its_prior(tiny_problem, tmp_path):
    out = tmp_path / "aevb.pt"
    run_aevb(tiny_problem.path, out, prior_lambda=1.0, iterations=2, val_every=1)
    assert load_checkpoint(out)["prior"] == {"lambda": 1.0, "cost": "steps", "costs": STEPS}


def test_lambda_zero_is_the_default_run_bit_for_bit(chain, tmp_path):
    """An explicit lambda 0 (and any cost kind name for steps) trains exactly the default run."""
    out = tmp_path / "s1.pt"
    run_stage1(chain["data"], out, prior_lambda=0.0, prior_cost="steps")
    a, b = load_checkpoint(out), chain["ckpts"]["s1_zero"]
    assert a["history"] == b["history"]
    for k, v in b["model_state"].items():
        assert torch.equal(v, a["model_state"][k]), k


def test_old_stage1_checkpoint_without_prior_is_lambda_zero(chain, tmp_path):
    ckpt = torch.load(chain["paths"]["s1_zero"], weights_only=False)
    del ckpt["prior"]
    old = tmp_path / "old_stage1.pt"
    torch.save(ckpt, old)
    out = tmp_path / "s2.pt"
    run_stage2(chain["data"], old, out, iterations=2, val_every=1)
    assert load_checkpoint(out)["prior"] == {"lambda": 0.0, "cost": "steps", "costs": STEPS}
    run_stage2(chain["data"], old, out, iterations=2, val_every=1, prior_lambda=1.5)
    assert load_checkpoint(out)["prior"] == {"lambda": 1.5, "cost": "steps", "costs": STEPS}


def test_stage1_seconds_costs(chain, tmp_path, monkeypatch, interrupt_training):
    """Cost kind seconds: measured once, rescaled to c_T = T, and kept for a resumed run."""
    measured = []

    def fake_seconds(task, net, batch, repeats=3):
        measured.append(len(batch["y"]))
        return [0.5, 1.0, 1.5, 4.0]

    monkeypatch.setattr(prior_mod, "measure_step_seconds", fake_seconds)
    real = interrupt_training(15)
    out = tmp_path / "s1.pt"
    with pytest.raises(KeyboardInterrupt):
        run_stage1(chain["data"], out, prior_lambda=0.5, prior_cost="seconds")
    saved = json.loads((tmp_path / ".s1.pt.work" / "prior_costs.json").read_text())
    assert saved["costs"] == [0.5, 1.0, 1.5, 4.0]
    assert len(measured) == 1

    def no_measuring(*args, **kwargs):
        raise AssertionError("a resumed run must re-use the costs it started with")

    monkeypatch.setattr(SparseRecoveryTask, "sample_batch", real)
    monkeypatch.setattr(prior_mod, "measure_step_seconds", no_measuring)
    run_stage1(chain["data"], out, prior_lambda=0.5, prior_cost="seconds")
    ck = load_checkpoint(out)
    assert ck["prior"] == {"lambda": 0.5, "cost": "seconds", "costs": [0.5, 1.0, 1.5, 4.0]}
    assert not (tmp_path / ".s1.pt.work").exists()
    # Stage II takes Stage I's (measured) costs
    s2 = tmp_path / "s2.pt"
    run_stage2(chain["data"], out, s2, iterations=2, val_every=1, prior_lambda=1.0)
    assert load_checkpoint(s2)["prior"] == {"lambda": 1.0, "cost": "seconds", "costs": [0.5, 1.0, 1.5, 4.0]}


def test_stage1_measures_real_seconds(chain, tmp_path):
    out = tmp_path / "s1.pt"
    run_stage1(chain["data"], out, prior_lambda=0.0, prior_cost="seconds", iterations=2, val_every=1)
    costs = load_checkpoint(out)["prior"]["costs"]
    assert len(costs) == 4 and costs[-1] == pytest.approx(4.0, abs=1e-12)
    assert all(c > 0 for c in costs) and costs == sorted(costs)


@pytest.mark.parametrize("runner, key", [
    (lambda d, t: run_stage1(d, t / "o.pt", prior_lambda=-1.0), "prior_lambda"),
    (lambda d, t: run_stage1(d, t / "o.pt", prior_lambda=float("nan")), "prior_lambda"),
    (lambda d, t: run_stage1(d, t / "o.pt", prior_cost="flops"), "prior_cost"),
    (lambda d, t: run_stage2(d, t / "in.pt", t / "o.pt", prior_lambda=-0.5), "prior_lambda"),
    (lambda d, t: run_stage2(d, t / "in.pt", t / "o.pt", prior_lambda=float("inf")), "prior_lambda"),
    (lambda d, t: run_aevb(d, t / "o.pt", prior_lambda=-2.0), "prior_lambda"),
    (lambda d, t: run_aevb(d, t / "o.pt", prior_cost="joules"), "prior_cost"),
], ids=["stage1-negative", "stage1-nan", "stage1-cost", "stage2-negative", "stage2-inf", "aevb-negative",
        "aevb-cost"])
def test_bad_prior_settings_raise_naming_the_key(tiny_problem, tmp_path, runner, key):
    with pytest.raises(ValueError, match=key):
        runner(tiny_problem.path, tmp_path)
    assert not (tmp_path / "o.pt").exists()
