"""Honest classical baselines: (L, rho) of ISTA/FISTA tuned on the validation set
for each iteration budget, guarded against divergence, then evaluated on test.

A setting is *diverged* on an example when its error is non-finite or
exceeds ``10^(divergence_db/10)`` times the mean signal energy (default +10 dB:
ten times worse than the all-zero estimate on an average example). A setting that diverges on any validation example is rejected,
so a step size beyond the stable range can never be picked.

With ``stable_L`` (default) L is also kept where the iteration's linear part is not
expansive: ISTA (gradient step 1/L) needs ``L > lambda_max(A^T A) / 2``; FISTA's
Nesterov momentum tends to 1, and on a quadratic that is stable only for
``L > 3/4 lambda_max(A^T A)`` (its convergence proof asks ``L >= lambda_max``).
Settings outside are rejected without being run. A finite
validation set cannot see rare blow-ups: on the default problem an ISTA step past
the bound (L = 2.74 < lambda_max / 2 = 3.22) passed the guard on 1,500 validation
examples and lost 1.2 dB on test to a few exploding examples.

The search (:func:`tune_2d`, generic in the objective) evaluates the coarse grid,
extends it past any edge the best setting lies on (a diverged neighbour beyond it,
or ``rho = 0``, is an acceptable edge; any other edge left after
``max_extensions`` extensions raises), then refines around the best setting on
local grids. A classical baseline is thus tuned as hard as the learned method,
and an edge setting is never reported as tuned.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from l2o.algorithms.ista import step_squared_errors

log = logging.getLogger("l2o")

ALGORITHMS = {"ista": False, "fista": True}  # name -> fast
#: The least L, in units of lambda_max(A^T A), at which each algorithm's linear part is stable
#: (ISTA: gradient step 1/L < 2/lambda_max; FISTA: momentum -> 1 needs 1/L < 4/(3 lambda_max)).
STABLE_L_FACTOR = {"ista": 0.5, "fista": 0.75}
PHASES = ("coarse", "extension", "refine")
# the four directions a grid can be extended in: (axis index, side)
DIRECTIONS = {"smallest L": (0, -1), "largest L": (0, 1), "smallest rho": (1, -1), "largest rho": (1, 1)}

Setting = tuple[float, float]


@dataclass
class ClassicalConfig:
    """Config section ``classical``."""

    budgets: list[int] = field(default_factory=lambda: [20, 100])
    L_grid: list[float] = field(default_factory=lambda: [2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0])
    rho_grid: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
    divergence_db: float = 10.0
    paper_settings: dict = field(
        default_factory=lambda: {
            "ista_t20": [2.7, 0.2],
            "ista_t100": [3.0, 0.11],
            "fista_t20": [4.0, 0.21],
            "fista_t100": [4.5, 0.05],
        }
    )
    settings_per_chunk: int = 8
    max_extensions: int = 4
    refine_rounds: int = 2
    refine_points: int = 5
    stable_L: bool = True

    def __post_init__(self):
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"classical.budgets must be positive step counts, got {self.budgets}")
        if not self.L_grid or not self.rho_grid:
            raise ValueError("classical.L_grid and classical.rho_grid must not be empty")
        if min(self.L_grid) <= 0 or min(self.rho_grid) < 0:
            raise ValueError("classical.L_grid must be > 0 and classical.rho_grid >= 0")
        if not isinstance(self.stable_L, bool):
            raise TypeError(f"classical.stable_L must be true or false, got {self.stable_L!r}")
        for key in ("settings_per_chunk", "max_extensions", "refine_rounds", "refine_points"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"classical.{key} must be an integer, got {value!r}")
        if self.settings_per_chunk < 1:
            raise ValueError(f"classical.settings_per_chunk must be >= 1, got {self.settings_per_chunk}")
        if self.max_extensions < 0:
            raise ValueError(f"classical.max_extensions must be >= 0, got {self.max_extensions}")
        if self.refine_rounds < 0:
            raise ValueError(f"classical.refine_rounds must be >= 0, got {self.refine_rounds}")
        if self.refine_points < 3 or self.refine_points % 2 == 0:
            raise ValueError(f"classical.refine_points must be odd and >= 3, got {self.refine_points}")


def method_name(algorithm: str, budget: int) -> str:
    return f"{algorithm}_t{budget}"


# -- the generic tuner ----------------------------------------------------------------------

def _round(v: float) -> float:
    """New grid values keep 4 significant digits (readable settings, no near-duplicates)."""
    return float(f"{v:.4g}")


def _extend(axis: list[float], axis_index: int, side: int) -> float:
    """The value beyond ``axis``'s edge on ``side``: a geometric step equal to the grid's ratio at
    that edge (L, and rho upwards); rho downwards a linear step equal to the edge's gap, never below 0."""
    a, b = (axis[0], axis[1]) if side < 0 else (axis[-1], axis[-2])
    if axis_index == 1 and side < 0:
        new = a - (b - a)
        return 0.0 if new <= 0 or _round(new) <= 0 else _round(new)
    if axis_index == 1 and b == 0:  # rho grid {0, a}: no ratio, step linearly
        return _round(2 * a)
    return _round(a * (a / b))


def _local_axis(axis: list[float], best: float, points: int, geometric: bool) -> list[float]:
    """``best`` and ``(points - 1) / 2`` evenly spaced values (geometric or linear) towards each of
    its neighbours on ``axis`` (the neighbours themselves included)."""
    i = axis.index(best)
    steps = (points - 1) // 2
    out = {best}
    for j in (i - 1, i + 1):
        if not 0 <= j < len(axis):
            continue
        nb = axis[j]
        for k in range(1, steps):
            f = k / steps
            out.add(_round(best * (nb / best) ** f if geometric else best + (nb - best) * f))
        out.add(nb)
    return sorted(out)


def tune_2d(
    objective: Callable[[list[Setting]], Sequence[float]],
    L_grid: Sequence[float],
    rho_grid: Sequence[float],
    *,
    max_extensions: int = 4,
    refine_rounds: int = 2,
    refine_points: int = 5,
    name: str = "tune_2d",
    cache: dict[Setting, float] | None = None,
    grid_keys: tuple[str, str] = ("L_grid", "rho_grid"),
) -> tuple[Setting, list[dict]]:
    """Minimise ``objective`` over (L, rho): coarse grid, edge extensions, local refinement.

    :param objective: ``objective([(L, rho), ...]) -> [value, ...]``, lower is better, NaN (or any
        non-finite value) for a diverged setting. Called in batches, never twice for a setting.
    :param L_grid: coarse values of L (> 0). :param rho_grid: coarse values of rho (>= 0). An axis
        with a single value is held fixed: neither extended nor refined.
    :param max_extensions: grid values added at most beyond each of the four edges. The best
        setting must not lie on an edge of the (extended) grid, unless its neighbour beyond that
        edge diverged (a stability boundary) or it has rho = 0 (the domain's boundary).
    :param refine_rounds: rounds of local refinement after the edge check; each evaluates the
        product of ``refine_points`` values per axis spanning the best setting's neighbours
        (geometric in L, linear in rho), the next round between the new neighbours.
    :param name: names the tuned method in log lines and errors.
    :param cache: values already known (prefilled by the caller, e.g. from a shared pass); new
        evaluations are added to it.
    :param grid_keys: how errors name the L and rho grids (``classical.L_grid``).
    :return: ``((L, rho), rows)``: the best non-diverged setting, and one row per setting visited,
        in order: ``L, rho, value, phase`` (``coarse``, ``extension``, ``refine``), with
        ``direction`` (extension rows) or ``round`` (refine rows).
    :raises ValueError: if the best setting is still on a grid edge after the extensions.
    :raises RuntimeError: if every coarse (and extended) setting diverged.
    """
    values: dict[Setting, float] = {} if cache is None else cache
    rows: list[dict] = []
    visited: set[Setting] = set()

    def evaluate(labelled: list[tuple[Setting, dict]], phase: str) -> None:
        todo = list(dict.fromkeys(s for s, _ in labelled if s not in values))
        if todo:
            out = [float(v) for v in objective(todo)]
            if len(out) != len(todo):
                raise ValueError(f"{name}: the objective returned {len(out)} values for {len(todo)} settings")
            values.update((s, v if math.isfinite(v) else float("nan")) for s, v in zip(todo, out))
        for s, extra in labelled:
            if s not in visited:
                visited.add(s)
                rows.append({"L": s[0], "rho": s[1], "value": values[s], "phase": phase, **extra})

    def best_of(settings) -> Setting | None:
        ok = [s for s in settings if not math.isnan(values[s])]
        return min(ok, key=values.__getitem__) if ok else None

    axes = [sorted({float(v) for v in L_grid}), sorted({float(v) for v in rho_grid})]
    if not axes[0] or not axes[1] or axes[0][0] <= 0 or axes[1][0] < 0:
        raise ValueError(f"{name}: {grid_keys[0]} must hold values > 0 and {grid_keys[1]} values >= 0")
    tuned_axes = [len(a) > 1 for a in axes]
    evaluate([(s, {}) for s in itertools.product(*axes)], "coarse")

    extensions = dict.fromkeys(DIRECTIONS, 0)
    while True:
        best = best_of(itertools.product(*axes))
        if best is None:
            raise RuntimeError(f"{name}: every (L, rho) setting diverged on validation; widen {grid_keys[0]} "
                               "towards larger L")
        edges = []
        for direction, (a, side) in DIRECTIONS.items():
            axis = axes[a]
            if not tuned_axes[a] or best[a] != (axis[0] if side < 0 else axis[-1]):
                continue  # fixed axis, or a neighbour beyond (finite and worse, or diverged)
            if a == 1 and side < 0 and best[a] == 0:
                continue  # rho = 0: the domain's boundary
            edges.append(direction)
        if not edges:
            break
        extendable = [d for d in edges if extensions[d] < max_extensions]
        if not extendable:
            d = edges[0]
            raise ValueError(
                f"{name}: the best setting L={best[0]:g}, rho={best[1]:g} lies on the grid's edge ({d}) after "
                f"{extensions[d]} extensions; widen {grid_keys[DIRECTIONS[d][0]]}")
        added: dict[int, dict[float, str]] = {0: {}, 1: {}}
        for d in extendable:
            a, side = DIRECTIONS[d]
            new = _extend(axes[a], a, side)
            extensions[d] += 1
            added[a][new] = d
            axes[a] = sorted(set(axes[a]) | {new})
        new_settings = [s for s in itertools.product(*axes) if s not in visited]
        evaluate([(s, {"direction": ", ".join(added[a][s[a]] for a in (0, 1) if s[a] in added[a])})
                  for s in new_settings], "extension")
        log.info("%s: best L=%g rho=%g on the edge (%s): extended the grid", name, *best, ", ".join(extendable))

    local = [list(axes[0]), list(axes[1])]
    for r in range(1, refine_rounds + 1):
        local = [_local_axis(local[a], best[a], refine_points, geometric=(a == 0)) if tuned_axes[a] else [best[a]]
                 for a in (0, 1)]
        evaluate([(s, {"round": r}) for s in itertools.product(*local)], "refine")
        best = best_of(visited)
    return best, rows


# -- ISTA/FISTA on a validation batch ----------------------------------------------------------

def search(A: Tensor, batch: dict[str, Tensor], cfg: ClassicalConfig) -> tuple[dict, list[dict]]:
    """Tune (L, rho) per algorithm and budget on ``batch`` (validation) with :func:`tune_2d`.

    The coarse grid runs once per algorithm for all budgets; extension and refinement settings of a
    budget run to that budget only (recording the smaller budgets on the way, which later reuse them).
    Returns ``({method: (L, rho)}, rows)``, rows ``method, L, rho, val_nmse_db`` (NaN: diverged),
    ``diverged`` (validation examples; -1: not run, L outside the stable range), ``phase`` (coarse, extension, refine) and ``direction``/``round``.
    """
    y, x = batch["y"], batch["x"]
    energy = x.pow(2).sum(-1)  # (B,)
    mean_energy = energy.double().mean()
    limit = energy.mean() * 10.0 ** (cfg.divergence_db / 10.0)
    budgets = sorted(set(cfg.budgets))
    rows: list[dict] = []
    chosen: dict[str, Setting] = {}
    lam_max = float(torch.linalg.matrix_norm(A.double(), ord=2) ** 2)
    for algorithm, fast in ALGORITHMS.items():
        nmse: dict[int, dict[Setting, float]] = {b: {} for b in budgets}
        diverged: dict[int, dict[Setting, int]] = {b: {} for b in budgets}
        least_L = STABLE_L_FACTOR[algorithm] * lam_max if cfg.stable_L else 0.0
        if cfg.stable_L:
            log.info("%s: L >= %.4g (%.2f x lambda_max(A^T A) = %.4g), where its iteration is stable", algorithm,
                     least_L, STABLE_L_FACTOR[algorithm], lam_max)

        def run(settings: list[Setting], steps: list[int], fast=fast, nmse=nmse, diverged=diverged,
                least_L=least_L) -> None:
            for b in steps:  # outside the stable range: rejected unrun
                for s in settings:
                    if s[0] < least_L:
                        nmse[b][s], diverged[b][s] = float("nan"), -1
            settings = [s for s in settings if s[0] >= least_L]
            for i in range(0, len(settings), cfg.settings_per_chunk):
                chunk = settings[i: i + cfg.settings_per_chunk]
                L = torch.tensor([s[0] for s in chunk])
                rho = torch.tensor([s[1] for s in chunk])
                errs = step_squared_errors(A, y, x, L, rho, max(steps), fast, steps)
                for b in steps:
                    e = errs[b]  # (S, B)
                    bad = (~torch.isfinite(e) | (e > limit)).sum(dim=1)
                    mean = torch.where(torch.isfinite(e), e, torch.zeros_like(e)).double().mean(dim=1)
                    for s, setting in enumerate(chunk):
                        diverged[b][setting] = int(bad[s])
                        nmse[b][setting] = (float(10 * torch.log10(mean[s] / mean_energy)) if bad[s] == 0
                                            else float("nan"))

        coarse = list(itertools.product(sorted(set(map(float, cfg.L_grid))), sorted(set(map(float, cfg.rho_grid)))))
        run(coarse, budgets)
        for budget in reversed(budgets):  # a larger budget's runs record the smaller budgets too
            name = method_name(algorithm, budget)

            def objective(settings, budget=budget, nmse=nmse, run=run):
                run(list(settings), [b for b in budgets if b <= budget])
                return [nmse[budget][s] for s in settings]

            best, tuned_rows = tune_2d(objective, cfg.L_grid, cfg.rho_grid, max_extensions=cfg.max_extensions,
                                       refine_rounds=cfg.refine_rounds, refine_points=cfg.refine_points, name=name,
                                       cache=nmse[budget], grid_keys=("classical.L_grid", "classical.rho_grid"))
            chosen[name] = best
            for r in tuned_rows:
                setting = (r["L"], r["rho"])
                rows.append({"method": name, "L": r["L"], "rho": r["rho"], "val_nmse_db": r["value"],
                             "diverged": diverged[budget][setting],
                             **{k: v for k, v in r.items() if k not in ("L", "rho", "value")}})
            summary = tuning_summary({name: best}, rows)[name]
            log.info("%s: coarse best L=%g rho=%g (val NMSE %.3f dB); tuned L=%g rho=%g (val NMSE %.3f dB) "
                     "after %d extension(s), %d settings", name, summary["coarse"]["L"], summary["coarse"]["rho"],
                     summary["coarse"]["val_nmse_db"], *best, summary["tuned"]["val_nmse_db"],
                     summary["extensions"], len(tuned_rows))
    order = [method_name(a, b) for a in ALGORITHMS for b in cfg.budgets]
    return {k: chosen[k] for k in dict.fromkeys(order)}, rows


def tuning_summary(chosen: dict[str, Setting], rows: list[dict]) -> dict[str, dict]:
    """Per method: the coarse grid's best and the tuned setting (``L, rho, val_nmse_db``) and the
    number of grid values the extensions added."""
    out = {}
    for name, (L, rho) in chosen.items():
        mine = [r for r in rows if r["method"] == name]
        coarse = [r for r in mine if r["phase"] == "coarse" and math.isfinite(r["val_nmse_db"])]
        c = min(coarse, key=lambda r: r["val_nmse_db"]) if coarse else None
        t = next(r for r in mine if (r["L"], r["rho"]) == (L, rho))
        grid_L = {r["L"] for r in mine if r["phase"] == "coarse"}
        grid_rho = {r["rho"] for r in mine if r["phase"] == "coarse"}
        ext = [r for r in mine if r["phase"] == "extension"]
        out[name] = {
            "coarse": {"L": c["L"], "rho": c["rho"], "val_nmse_db": c["val_nmse_db"]} if c else None,
            "tuned": {"L": L, "rho": rho, "val_nmse_db": t["val_nmse_db"]},
            "extensions": len({r["L"] for r in ext} - grid_L) + len({r["rho"] for r in ext} - grid_rho),
        }
    return out


def per_step_errors(A: Tensor, batch, algorithm: str, L: float, rho: float, num_steps: int) -> Tensor:
    """Squared error of one setting at every step 1..num_steps: (B, num_steps)."""
    steps = list(range(1, num_steps + 1))
    errs = step_squared_errors(A, batch["y"], batch["x"], L, rho, num_steps, ALGORITHMS[algorithm], steps)
    return torch.stack([errs[t][0] for t in steps], dim=1)
