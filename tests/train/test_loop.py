"""The shared training loop: best-on-validation, resumable checkpoints, failure modes."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from l2o.train.loop import OptimConfig, fit, make_adam, split_optim, take_fields

W_TRUE = torch.tensor([1.0, -2.0, 0.5])
STAGE = "toy-stage"


class Killed(Exception):
    """Stands in for the process being killed."""


def sample_batch(g: torch.Generator) -> dict:
    x = torch.randn(16, 3, generator=g)
    return {"x": x, "y": x @ W_TRUE + 0.1 * torch.randn(16, generator=g)}


VAL = sample_batch(torch.Generator().manual_seed(999))


def make_model(init_seed: int = 0) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Linear(3, 1)


def run_fit(model, work_dir, *, iterations=20, val_every=5, fingerprint="fp-a", kill_at=None,
            nan_at=None, nan_grad_at=None, calls=None, **kw):
    """fit() on the toy regression; ``kill_at``: raise Killed inside loss_fn at that iteration."""
    counter = {"it": 0}

    def loss_fn(batch):
        counter["it"] += 1
        if calls is not None:
            calls.append(counter["it"])
        if kill_at is not None and counter["it"] == kill_at:
            raise Killed
        loss = (model(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        if nan_at is not None and counter["it"] == nan_at:
            return loss * float("nan")
        if nan_grad_at is not None and counter["it"] == nan_grad_at:  # finite value, NaN gradient
            return loss + _nan_grad(model.weight)
        return loss

    def validate():
        with torch.no_grad():
            return {"val_mse": (model(VAL["x"]).squeeze(-1) - VAL["y"]).pow(2).mean().item()}

    return fit(
        stage=STAGE,
        modules={"model": model},
        optim=OptimConfig(iterations=iterations, batch_size=16, lr=0.05, val_every=val_every),
        loss_fn=loss_fn,
        sample_batch=sample_batch,
        validate=kw.pop("validate", validate),
        score_key="val_mse",
        work_dir=work_dir,
        fingerprint=fingerprint,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        **kw,
    )


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_trains_and_keeps_the_best(tmp_path):
    model = make_model()
    result = run_fit(model, tmp_path / "w", validate_at_start=True)
    its = [row["iteration"] for row in result.history]
    assert its == [0, 5, 10, 15, 20]
    assert result.history[0]["train_loss"] is None  # the untrained start
    scores = [row["val_mse"] for row in result.history]
    assert result.best_score == min(scores) < scores[0]
    assert result.best_iteration == its[scores.index(min(scores))]
    assert (tmp_path / "w" / "last.pt").is_file()
    assert not model.training  # left in eval mode


def test_fit_skips_the_untrained_start_unless_asked(tmp_path):
    result = run_fit(make_model(), tmp_path / "w")
    assert [row["iteration"] for row in result.history] == [5, 10, 15, 20]


def test_modules_hold_the_best_state_not_the_last(tmp_path):
    model = make_model()
    scores = iter([5.0, 3.0, 1.0, 2.0, 4.0])  # best at the 3rd validation = iteration 10
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_mse": next(scores)}

    result = run_fit(model, tmp_path / "w", validate=validate, validate_at_start=True)
    assert result.best_iteration == 10 and result.best_score == 1.0
    assert all(torch.equal(model.state_dict()[k], snapshots[2][k]) for k in snapshots[2])
    assert not all(torch.equal(model.state_dict()[k], snapshots[-1][k]) for k in snapshots[-1])


def test_a_start_that_is_no_candidate_is_a_reference_only(tmp_path):
    """Stage II's untrained policy: validated (in the history) but never the selected state, even
    when it scores best."""
    model = make_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scores = iter([0.5, 3.0, 1.0, 2.0, 4.0])  # the start is best; among the trained, iteration 10

    result = run_fit(model, tmp_path / "w", validate=lambda: {"val_mse": next(scores)}, validate_at_start=True,
                     start_is_candidate=False)
    assert [r["iteration"] for r in result.history] == [0, 5, 10, 15, 20]
    assert result.best_iteration == 10 and result.best_score == 1.0
    assert not all(torch.equal(model.state_dict()[k], start[k]) for k in start)


@pytest.mark.parametrize("kill_at", [13, 11, 20])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, kill_at):
    reference = make_model()
    ref = run_fit(reference, tmp_path / "ref")

    work = tmp_path / "killed"
    interrupted = make_model()
    with pytest.raises(Killed):
        run_fit(interrupted, work, kill_at=kill_at)
    saved = torch.load(work / "last.pt", weights_only=False)
    assert saved["iteration"] == (kill_at - 1) // 5 * 5  # the last checkpoint before the kill

    calls = []
    resumed = make_model(init_seed=123)  # a new process: fresh initialisation, loaded from disk
    res = run_fit(resumed, work, calls=calls)
    assert calls == list(range(1, 20 - saved["iteration"] + 1))  # only the remaining iterations
    assert state_equal(resumed, reference)
    assert res.history == ref.history
    assert (res.best_score, res.best_iteration) == (ref.best_score, ref.best_iteration)


def test_resume_with_the_same_model_object(tmp_path):
    reference = make_model()
    run_fit(reference, tmp_path / "ref")
    model = make_model()
    with pytest.raises(Killed):
        run_fit(model, tmp_path / "w", kill_at=8)  # model has moved past the checkpoint at 5
    run_fit(model, tmp_path / "w")
    assert state_equal(model, reference)


def test_completed_run_is_not_retrained(tmp_path):
    model = make_model()
    first = run_fit(model, tmp_path / "w")
    calls = []
    again = make_model(init_seed=5)
    second = run_fit(again, tmp_path / "w", calls=calls)
    assert calls == []
    assert state_equal(again, model) and second.history == first.history


def test_checkpoint_with_another_fingerprint_is_ignored(tmp_path, caplog):
    run_fit(make_model(), tmp_path / "w", fingerprint="fp-a", iterations=10)
    fresh_ref = make_model()
    ref = run_fit(fresh_ref, tmp_path / "clean", fingerprint="fp-b")

    other = make_model()
    calls = []
    with caplog.at_level(logging.WARNING, logger="l2o"):
        res = run_fit(other, tmp_path / "w", fingerprint="fp-b", calls=calls)
    assert any("ignoring checkpoint" in r.getMessage() for r in caplog.records)
    assert calls == list(range(1, 21))  # started over
    assert res.history == ref.history
    assert state_equal(other, fresh_ref)
    assert torch.load(tmp_path / "w" / "last.pt", weights_only=False)["fingerprint"] == "fp-b"


@pytest.mark.parametrize("nan_at", [1, 7])
def test_nan_loss_raises_naming_the_stage(tmp_path, nan_at):
    with pytest.raises(FloatingPointError, match=rf"{STAGE}.*iteration {nan_at}"):
        run_fit(make_model(), tmp_path / "w", nan_at=nan_at)


def _nan_grad(w: torch.Tensor) -> torch.Tensor:
    """0 in value, NaN in gradient (sqrt at 0 has an infinite slope, times 0)."""
    return (w * 0.0).abs().sqrt().sum() * 0.0


def test_nan_gradient_raises_before_the_update_naming_the_parameter(tmp_path):
    model = make_model()
    with pytest.raises(FloatingPointError, match=rf"{STAGE}: the gradient of model.weight .*iteration 7"):
        run_fit(model, tmp_path / "w", nan_grad_at=7)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    last = torch.load(tmp_path / "w" / "last.pt", weights_only=False)  # the checkpoint of iteration 5
    assert last["iteration"] == 5


def test_nan_validation_raises_naming_the_stage(tmp_path):
    with pytest.raises(FloatingPointError, match=STAGE):
        run_fit(make_model(), tmp_path / "w", validate=lambda: {"val_mse": float("nan")})


def test_nothing_to_train_raises(tmp_path):
    model = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match=f"{STAGE}: nothing to train"):
        run_fit(model, tmp_path / "w")


def test_frozen_modules_are_not_changed(tmp_path):
    frozen = make_model(7).requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model = make_model()
    fit(stage=STAGE, modules={"model": model, "frozen": frozen},
        optim=OptimConfig(iterations=3, batch_size=16, lr=0.1, val_every=3),
        loss_fn=lambda b: (model(b["x"]).squeeze(-1) + frozen(b["x"]).squeeze(-1) - b["y"]).pow(2).mean(),
        sample_batch=sample_batch, validate=lambda: {"s": 0.0}, score_key="s",
        work_dir=tmp_path / "w", fingerprint="f", generator=torch.Generator().manual_seed(0),
        progress=False)
    assert all(torch.equal(frozen.state_dict()[k], before[k]) for k in before)


def test_tracker_receives_metrics(tmp_path):
    class Recorder:
        run_id = None

        def __init__(self):
            self.rows = []

        def log_metrics(self, metrics, step=None):
            self.rows.append((step, metrics))

    rec = Recorder()
    run_fit(make_model(), tmp_path / "w", tracker=rec, validate_at_start=True)
    assert [s for s, _ in rec.rows] == [0, 5, 10, 15, 20]
    assert "train_loss" not in rec.rows[0][1]  # None values are not logged
    assert set(rec.rows[1][1]) == {"train_loss", "val_mse"}


@pytest.mark.parametrize("section, match", [
    ({"iterations": 0, "batch_size": 1, "lr": 1.0}, "iterations"),
    ({"iterations": 1, "batch_size": 0, "lr": 1.0}, "batch_size"),
    ({"iterations": 1, "batch_size": 1, "lr": 0.0}, "lr"),
    ({"iterations": 1, "batch_size": 1, "lr": 1.0, "weight_decay": -1.0}, "weight_decay"),
    ({"iterations": 1, "batch_size": 1, "lr": 1.0, "val_every": 0}, "val_every"),
])
def test_optim_config_validation(section, match):
    with pytest.raises(ValueError, match=match):
        take_fields(OptimConfig, section, "config section 'x'")


def test_take_fields_unknown_key_names_it():
    with pytest.raises(ValueError, match=r"'learning_rate'.*section 'x'"):
        take_fields(OptimConfig, {"iterations": 1, "batch_size": 1, "lr": 1.0, "learning_rate": 2},
                    "config section 'x'")
    with pytest.raises(ValueError, match="section 'x'"):  # missing required key
        take_fields(OptimConfig, {"iterations": 1}, "config section 'x'")


def test_split_optim():
    optim, rest = split_optim({"iterations": 2, "batch_size": 3, "lr": 0.1, "loss": "map"})
    assert optim == OptimConfig(iterations=2, batch_size=3, lr=0.1)
    assert rest == {"loss": "map"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_equals_uninterrupted_run(tmp_path):
    """Modules on the GPU, data generator on the CPU: the checkpoint is loaded with
    ``map_location=<cuda>``, which must not move the CPU generator's state off the CPU."""
    def on_cuda(init_seed=0):
        return make_model(init_seed).cuda()

    global VAL  # validate() reads the module-level validation set
    saved_val = VAL
    VAL = {k: v.cuda() for k, v in saved_val.items()}
    try:
        reference = on_cuda()
        ref = run_fit(reference, tmp_path / "ref")
        with pytest.raises(Killed):
            run_fit(on_cuda(), tmp_path / "w", kill_at=13)
        resumed = on_cuda(init_seed=5)
        res = run_fit(resumed, tmp_path / "w")
    finally:
        VAL = saved_val
    assert state_equal(resumed, reference)
    assert res.history == ref.history


def test_make_adam_is_fused_on_cpu_and_matches_the_loop_version():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(30, generator=gen)
    grads = [torch.randn(30, generator=gen) for _ in range(5)]
    fused_p, plain_p = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    fused = make_adam([fused_p], lr=1e-2, weight_decay=1e-4)
    plain = torch.optim.Adam([plain_p], lr=1e-2, weight_decay=1e-4)
    assert fused.param_groups[0]["fused"]
    for g in grads:
        for p, opt in ((fused_p, fused), (plain_p, plain)):
            p.grad = g.clone()
            opt.step()
    assert not torch.equal(fused_p, start)
    assert torch.allclose(fused_p, plain_p, rtol=1e-5, atol=1e-7)
