"""The classical baselines' tuner: edge extensions, acceptable edges, refinement, cache, search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from l2o.algorithms.grid_search import ClassicalConfig, search, tune_2d, tuning_summary
from l2o.algorithms.ista import step_squared_errors


class Counting:
    """A batched objective ``f(L, rho)`` that counts its calls and evaluations."""

    def __init__(self, f):
        self.f, self.calls, self.evaluated = f, 0, []

    def __call__(self, settings):
        self.calls += 1
        self.evaluated += list(settings)
        return [self.f(L, rho) for L, rho in settings]


def bowl(L0, rho0, diverge_below=None):
    """Smooth, minimal at (L0, rho0) (log-scale in L), NaN for L < ``diverge_below``; batched."""
    def f(L, rho):
        if diverge_below is not None and L < diverge_below:
            return float("nan")
        return math.log(L / L0) ** 2 + ((rho - rho0) / 0.1) ** 2
    return Counting(f)


L_GRID = [2.0, 3.0, 4.0, 6.0]
RHO_GRID = [0.1, 0.2, 0.3]


def test_extends_past_the_edge_and_finds_the_optimum():
    obj = bowl(10.0, 0.45)  # largest L and largest rho lie beyond the grid
    (L, rho), rows = tune_2d(obj, L_GRID, RHO_GRID, name="m")
    assert L == pytest.approx(10.0, rel=0.05) and rho == pytest.approx(0.45, abs=0.02)
    phases = {r["phase"] for r in rows}
    assert phases == {"coarse", "extension", "refine"}
    ext = [r for r in rows if r["phase"] == "extension"]
    added_L = list(dict.fromkeys(r["L"] for r in ext if r["L"] not in L_GRID))
    assert added_L == [9.0, 13.5]  # steps of 1.5, the grid's ratio at that edge; 9 is then interior
    added_rho = list(dict.fromkeys(r["rho"] for r in ext if r["rho"] not in RHO_GRID))
    assert added_rho == [0.45, 0.675]  # ratio 1.5 upwards
    assert any("largest L" in r["direction"] for r in ext)
    assert [r["phase"] for r in rows] == sorted((r["phase"] for r in rows), key=["coarse", "extension",
                                                                                  "refine"].index)


def test_optimum_beyond_the_extensions_raises_naming_the_edge():
    with pytest.raises(ValueError, match=r"m_t5: the best setting L=.*lies on the grid's edge \(largest L\) "
                                         r"after 2 extensions; widen classical\.L_grid"):
        tune_2d(bowl(100.0, 0.2), L_GRID, RHO_GRID, max_extensions=2, name="m_t5",
                grid_keys=("classical.L_grid", "classical.rho_grid"))
    with pytest.raises(ValueError, match=r"\(largest rho\) after 0 extensions; widen rho_grid"):
        tune_2d(bowl(3.0, 0.5), L_GRID, RHO_GRID, max_extensions=0)


def test_edge_next_to_a_diverged_region_is_accepted():
    # the optimum (L = 1) lies in the unstable region L < 2.5: the best stable L is its boundary
    obj = bowl(1.0, 0.2, diverge_below=2.5)
    (L, rho), rows = tune_2d(obj, [3.0, 4.0, 5.0], RHO_GRID, max_extensions=1)
    assert 2.5 <= L < 3.0 and rho == pytest.approx(0.2)
    assert any(math.isnan(r["value"]) for r in rows if r["phase"] == "extension")  # L = 2.25 diverged


def test_rho_zero_is_the_domains_boundary():
    (L, rho), rows = tune_2d(bowl(3.0, -0.5), L_GRID, [0.05, 0.1, 0.2], max_extensions=3)
    assert rho == 0.0 and L == pytest.approx(3.0)
    assert min(r["rho"] for r in rows) == 0.0  # 0.05 - 0.05: a linear step, never below 0


def test_refinement_improves_on_the_coarse_best():
    obj = bowl(3.4, 0.17)  # between grid points
    f = obj.f
    (L, rho), rows = tune_2d(obj, L_GRID, RHO_GRID)
    coarse = min((r for r in rows if r["phase"] == "coarse"), key=lambda r: r["value"])
    assert (coarse["L"], coarse["rho"]) == (3.0, 0.2)
    assert f(L, rho) < coarse["value"]
    assert L == pytest.approx(3.4, rel=0.04) and rho == pytest.approx(0.17, abs=0.015)
    assert {r["round"] for r in rows if r["phase"] == "refine"} == {1, 2}
    (L0, rho0), rows0 = tune_2d(bowl(3.4, 0.17), L_GRID, RHO_GRID, refine_rounds=0)
    assert (L0, rho0) == (3.0, 0.2) and {r["phase"] for r in rows0} == {"coarse"}


def test_the_cache_prevents_reevaluation():
    obj = bowl(10.0, 0.45)
    _, rows = tune_2d(obj, L_GRID, RHO_GRID)
    assert len(obj.evaluated) == len(set(obj.evaluated)) == len(rows)
    assert obj.calls <= 1 + 2 * 4 + 2  # coarse, at most 4 extension rounds per direction, 2 refinements
    prefilled = {s: bowl(10.0, 0.45).f(*s) for s in itertools.product(L_GRID, RHO_GRID)}
    obj2 = bowl(10.0, 0.45)
    best2, rows2 = tune_2d(obj2, L_GRID, RHO_GRID, cache=prefilled)
    assert not set(obj2.evaluated) & set(itertools.product(L_GRID, RHO_GRID))
    assert len(rows2) == len(rows) and best2 == tune_2d(bowl(10.0, 0.45), L_GRID, RHO_GRID)[0]


def test_a_single_value_axis_is_held_fixed():
    (L, rho), rows = tune_2d(bowl(3.3, 0.5), [2.0, 3.0, 4.0], [0.1])
    assert rho == 0.1 and {r["rho"] for r in rows} == {0.1}
    assert L == pytest.approx(3.3, rel=0.04)


def test_everything_diverged_raises():
    with pytest.raises(RuntimeError, match="every"):
        tune_2d(lambda s: [float("nan")] * len(s), L_GRID, RHO_GRID)


@pytest.mark.parametrize("key, value", [("max_extensions", -1), ("refine_rounds", -1), ("refine_points", 4),
                                        ("refine_points", 1), ("settings_per_chunk", 0)])
def test_config_validation_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"classical.{key}"):
        ClassicalConfig(**{key: value})


@pytest.fixture(scope="module")
def tiny_sparse():
    g = torch.Generator().manual_seed(0)
    m, n, B = 20, 40, 64
    A = torch.randn(m, n, generator=g)
    A = A / A.norm(dim=0, keepdim=True)
    x = torch.randn(B, n, generator=g) * (torch.rand(B, n, generator=g) < 0.1)
    y = x @ A.T + 0.01 * torch.randn(B, m, generator=g)
    return A, {"x": x, "y": y, "snr": torch.full((B,), 40.0)}


def val_nmse(A, batch, algorithm, L, rho, budget):
    e = step_squared_errors(A, batch["y"], batch["x"], L, rho, budget, algorithm == "fista", [budget])[budget][0]
    return float(10 * torch.log10(e.double().mean() / batch["x"].pow(2).sum(-1).double().mean()))


def test_search_is_not_worse_than_the_coarse_grid(tiny_sparse):
    A, batch = tiny_sparse
    cfg = ClassicalConfig(budgets=[5, 20], L_grid=[3.0, 4.0, 6.0], rho_grid=[0.02, 0.05, 0.1], paper_settings={})
    chosen, rows = search(A, batch, cfg)
    assert list(chosen) == ["ista_t5", "ista_t20", "fista_t5", "fista_t20"]
    summary = tuning_summary(chosen, rows)
    for name, (L, rho) in chosen.items():
        algorithm, budget = name.split("_t")[0], int(name.split("_t")[1])
        mine = [r for r in rows if r["method"] == name]
        coarse = [r for r in mine if r["phase"] == "coarse"]
        assert len(coarse) == 9 and len({(r["L"], r["rho"]) for r in mine}) == len(mine)
        best_coarse = min(r["val_nmse_db"] for r in coarse if r["diverged"] == 0)
        tuned = val_nmse(A, batch, algorithm, L, rho, budget)
        assert tuned <= best_coarse + 1e-4
        assert summary[name]["tuned"]["val_nmse_db"] == pytest.approx(tuned, abs=1e-3)
        assert summary[name]["coarse"]["val_nmse_db"] == pytest.approx(best_coarse)
        # the row of the tuned setting: no diverged validation example
        row = next(r for r in mine if (r["L"], r["rho"]) == (L, rho))
        assert row["diverged"] == 0 and {r["phase"] for r in mine} >= {"coarse", "refine"}
        # extension and refinement rows were evaluated at this budget
        for r in mine[9:]:
            if r["diverged"] == 0:
                assert r["val_nmse_db"] == pytest.approx(val_nmse(A, batch, algorithm, r["L"], r["rho"], budget),
                                                         abs=1e-3)


def test_stable_L_keeps_each_algorithm_where_its_iteration_is_stable(tiny_sparse):
    A, batch = tiny_sparse
    lam_max = float(torch.linalg.matrix_norm(A.double(), ord=2) ** 2)
    grid = [0.3 * lam_max, 0.6 * lam_max, 0.9 * lam_max, 1.2 * lam_max, 1.5 * lam_max]
    cfg = ClassicalConfig(budgets=[10], L_grid=grid, rho_grid=[0.02, 0.05, 0.1], paper_settings={})
    chosen, rows = search(A, batch, cfg)
    assert chosen["ista_t10"][0] >= 0.5 * lam_max and chosen["fista_t10"][0] >= 0.75 * lam_max
    for r in rows:
        least = (0.5 if r["method"].startswith("ista") else 0.75) * lam_max
        assert (r["diverged"] == -1) == (r["L"] < least)  # below the bound: rejected unrun
    free, _ = search(A, batch, ClassicalConfig(budgets=[10], L_grid=grid, rho_grid=[0.02, 0.05, 0.1],
                                               paper_settings={}, stable_L=False))
    assert free["fista_t10"][0] <= chosen["fista_t10"][0]  # without the bound the guard alone decides
