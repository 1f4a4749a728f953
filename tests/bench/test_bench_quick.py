"""The benchmark suite at tiny sizes: every measurement runs and the JSON/Markdown have
the expected structure. No timing is asserted (the values are noise at these sizes)."""

from __future__ import annotations

import json
import sys

import pytest

from bench import run
from bench.config import Options, Sizes
from bench.flops import lista_forward_flops, training_flops
from bench.load import CpuLoad, LoadGuard, LoadRefused
from bench.report import evaluate_targets, write_results
from bench.training import build_training_step, run_training_worker

TINY = Sizes(
    m=8, n=16, T=4, hidden=(8, 4), batch_baseline=16, batch_stage1=16, batch_stage2=8,
    test_per_snr=10, val_per_snr=10, infer_batch=10, matmul_n=32, matmul_repeats=2,
    warmup=1, repeats=2, fista_max_steps=20, fista_val_examples=15,
    fista_L_grid=(3.0, 5.0), fista_rho_grid=(0.05, 0.1), snakemake_repeats=2,
)
FAKE_SNAKEMAKE = {"prepare": lambda dest: {"first_run_s": 0.0},
                  "command": [sys.executable, "-c", "print('Nothing to be done (all requested files are present)')"]}


class FakeLoad(CpuLoad):
    """Other processes' CPU use as scripted: one value per probe, the last repeated."""

    def __init__(self, *cores):
        self.cores = list(cores)

    def start(self):
        return None

    def stop(self, mark):
        value = self.cores.pop(0) if len(self.cores) > 1 else self.cores[0]
        return {"other_cores": value, "loadavg_1min": 0.0, "seconds": 0.0, "method": "fake"}

    def sample(self, interval):
        return self.stop(None)


@pytest.fixture(scope="module")
def results():
    opts = Options(in_process=True, load_interval=0.0, quick=True)
    return run.run_suite(TINY, opts, probe=FakeLoad(0.0), snakemake_kwargs=FAKE_SNAKEMAKE)


def test_every_measurement_ran(results):
    assert results["errors"] == {}
    assert {"machine", "sizes", "options", "load_checks", "matmul", "training", "inference",
            "time_to_accuracy", "snakemake", "targets"} <= set(results)
    assert results["loaded"] is False
    assert {"cpu_model", "cores_usable", "torch", "torch_threads", "date", "host"} <= set(results["machine"])
    before = [c["before"] for c in results["load_checks"] if "before" in c]
    during = [c["during"] for c in results["load_checks"] if "during" in c]
    assert before == during  # every measurement checked before and over its run
    assert before[0] == "matmul" and "training:stage1" in before and "snakemake" in before


def timing_ok(t, repeats=TINY.repeats):
    return (t["repeats"] == repeats and len(t["samples"]) == repeats
            and t["min"] <= t["q1"] <= t["median"] <= t["q3"] <= t["max"])


def test_training_structure(results):
    tr = results["training"]
    for kind in ("baseline", "stage1", "stage2", "stage2_autograd"):
        r = tr[kind]
        assert timing_ok(r["timing"])
        assert r["flops"]["total"] == sum(v for k, v in r["flops"].items() if k != "total")
        assert r["bound_s"] > 0 and r["ratio_to_bound"] > 0 and r["peak_rss_mib"] > 0
        assert set(r["phases_median_s"]) == {"sample", "forward", "backward", "optimizer"}
    assert tr["stage1"]["batch"] == TINY.batch_stage1
    assert tr["stage2_autograd"]["flops"]["total"] > tr["stage2"]["flops"]["total"]
    assert tr["stage2_speedup"]["median"] > 0


def test_inference_and_time_to_accuracy(results):
    inf = results["inference"]
    for name in ("lista", "lista_stop_all_steps", "lista_stop_early_exit"):
        assert timing_ok(inf[name]["timing"]) and inf[name]["examples_per_s"] > 0
    assert inf["examples"] == 3 * TINY.test_per_snr
    assert inf["paths_agree"]  # early exit and compute-everything stop at the same steps
    assert abs(inf["mean_stop_step"] - TINY.T / 2) < 0.5  # the controlled policy hits its mean
    assert inf["ideal_speedup"] == pytest.approx(TINY.T / inf["mean_stop_step"])
    tta = results["time_to_accuracy"]
    assert timing_ok(tta["fista"]["timing"]) and timing_ok(tta["lista_stop"]["timing"])
    assert 1 <= tta["fista"]["steps"] <= TINY.fista_max_steps
    if tta["fista"]["reached"]:
        assert tta["fista"]["nmse_db"] <= tta["lista_stop"]["nmse_db"] + 1e-9
    else:  # FISTA ran out of steps short of LISTA-stop's NMSE
        assert tta["fista"]["steps"] == TINY.fista_max_steps
        assert tta["fista"]["nmse_db"] > tta["lista_stop"]["nmse_db"]
    assert len(tta["grid"]) == len(TINY.fista_L_grid) * len(TINY.fista_rho_grid)


def test_snakemake_structure(results):
    sm = results["snakemake"]
    assert timing_ok(sm["timing"], TINY.snakemake_repeats) and sm["nothing_to_be_done"]


def test_snakemake_that_has_work_to_do_is_not_reported_as_idle():
    """The idle check reads snakemake's own words: a run that printed anything else is not idle."""
    busy = {"prepare": lambda dest: {"first_run_s": 0.0},
            "command": [sys.executable, "-c", "print('Job stats: 1 job to run')"]}
    opts = Options(in_process=True, load_interval=0.0, quick=True,
                   skip=("matmul", "training", "inference", "time_to_accuracy"))
    out = run.run_suite(TINY, opts, probe=FakeLoad(0.0), snakemake_kwargs=busy)
    assert out["snakemake"]["nothing_to_be_done"] is False


def test_targets(results):
    rows = results["targets"]
    assert len(rows) == 5
    for row in rows:
        assert isinstance(row["value"], float | int) and isinstance(row["met"], bool)
        assert row["status"] == ("met" if row["met"] else "NOT met")


def test_targets_compare_the_value_with_the_threshold():
    """Each target is met exactly when its value passes its threshold, and "not measured" without one."""
    sizes = {"batch_stage1": 8}
    results = {"sizes": sizes, "training": {"stage1": {"ratio_to_bound": 1.3, "peak_rss_mib": 100.0},
                                            "stage2_speedup": {"median": 3.0}},
               "inference": {"efficiency": 0.79}, "snakemake": {"timing": {"median": 2.9}}}
    assert [r["status"] for r in evaluate_targets(results)] == ["NOT met", "met", "NOT met", "met", "met"]
    del results["inference"]
    assert evaluate_targets(results)[2]["status"] == "not measured"


def test_written_json_and_markdown(results, tmp_path):
    json_path, md_path = write_results(results, tmp_path)
    assert md_path.name == "latest.md" and json_path.suffix == ".json" and "quick" in json_path.name
    assert json.loads(json_path.read_text())["targets"] == json.loads(json.dumps(results["targets"]))
    md = md_path.read_text()
    assert "QUICK RUN" in md and "LOADED" not in md
    assert "| Target | Measured (median) | Target | Status |" in md
    for row in results["targets"]:
        assert row["target"] in md
    for label in ("Stage I (full loss)", "early exit", "FISTA", "snakemake", "matmul"):
        assert label in md


def test_refuses_on_a_loaded_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "CpuLoad", lambda: FakeLoad(1.9))
    out = tmp_path / "res"
    assert run.main(["--quick", "--out", str(out)]) == run.EXIT_REFUSED
    assert not out.exists()


def test_allow_loaded_marks_results(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "CpuLoad", lambda: FakeLoad(1.9))
    out = tmp_path / "res"
    skip = ["--skip", "training", "inference", "time_to_accuracy", "snakemake"]
    assert run.main(["--quick", "--allow-loaded", "--out", str(out), *skip]) == 0
    (json_file,) = out.glob("*.json")
    data = json.loads(json_file.read_text())
    assert data["loaded"] is True and data["loaded_measurements"] == ["matmul"]
    assert data["load_checks"][0]["loaded"] is True
    assert [r["status"] for r in data["targets"]] == ["not measured"] * 5
    assert "LOADED MACHINE" in (out / "latest.md").read_text()


def test_training_worker_in_a_fresh_process():
    spec = {"kind": "stage1", "m": 8, "n": 16, "T": 3, "hidden": [4, 4], "batch": 8, "device": "cpu",
            "seed": 0, "warmup": 1, "repeats": 2, "threads": 1}
    r = run_training_worker(spec)
    assert r["fresh_process"] and r["threads"] == 1 and r["peak_rss_mib"] >= r["rss_start_mib"] > 0
    assert timing_ok(r["timing"], 2)


def test_flop_counts():
    # one step of a 1x1 LISTA, batch 1: y W1 only (x_0 = 0)
    assert lista_forward_flops(1, 1, 1, 1) == 2
    f = training_flops("stage1", 4, 3, 5, 2, ())
    assert f["model_forward"] == 2 * 4 * (2 * 15 + 25)
    assert f["model_backward"] == 2 * 4 * (2 * 15 + 2 * 25)
    assert training_flops("baseline", 4, 3, 5, 2, ()) == f


@pytest.mark.parametrize("kind", ["baseline", "stage1", "stage2", "stage2_autograd"])
def test_flop_model_counts_the_matmuls_the_step_runs(kind):
    """training_flops must equal the matmul FLOPs torch's counter sees in one real iteration."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    B, m, n, T, hidden = 8, 6, 10, 4, [7, 5]
    step = build_training_step(kind, {"device": "cpu", "batch": B, "T": T, "m": m, "n": n,
                                            "seed": 0, "hidden": hidden})
    step()
    # the counter knows addmm but not its in-place form, which LISTA's forward uses
    inplace_addmm = {torch.ops.aten.addmm_: lambda c, a, b, out_shape=None, **kw: 2 * a[0] * a[1] * b[1]}
    with FlopCounterMode(display=False, custom_mapping=inplace_addmm) as counter:
        step()
    assert counter.get_total_flops() == training_flops(kind, B, m, n, T, hidden)["total"]


def test_guard_repeats_a_disturbed_measurement():
    calls = []
    # before: idle; during: busy; before: idle; during: idle
    guard = LoadGuard(Options(wait_idle=5.0, load_interval=0.0), FakeLoad(0.0, 1.5, 0.0, 0.0))
    assert guard.run("x", lambda: calls.append(1) or len(calls)) == 2
    assert [c.get("during") for c in guard.log if "during" in c] == ["x", "x"] and guard.loaded == []


def test_guard_refuses_when_disturbed_and_out_of_time():
    guard = LoadGuard(Options(wait_idle=0.0, load_interval=0.0), FakeLoad(0.0, 1.5))
    with pytest.raises(LoadRefused, match="during x"):
        guard.run("x", lambda: None)


def test_cpu_load_sample():
    s = CpuLoad().sample(0.05)
    assert s["other_cores"] >= 0 and "loadavg_1min" in s
